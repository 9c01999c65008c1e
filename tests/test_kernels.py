"""Fused uint8 input kernels: agreement with the stock TF ops, the fallback, build errors, and
exports free of the kernel library (the pipeline on both paths: test_pipeline.py)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import augment, kernels, pipeline  # noqa: E402
from tfvid.data.sampling import TSNSampler  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available(), reason="no C++ compiler here")

SIZES = [  # (h, w, out_h, out_w, channels): TSN crops to 224, odd sizes, flow/RGB stacks
    (256, 192, 224, 224, 3), (168, 168, 224, 224, 3), (224, 256, 224, 224, 3),
    (256, 224, 224, 224, 10), (256, 340, 112, 112, 3), (100, 600, 64, 64, 3),
    (31, 17, 16, 16, 2), (5, 7, 9, 3, 1), (256, 256, 224, 224, 1)]


@pytest.mark.parametrize("h,w,oh,ow,c", SIZES)
@pytest.mark.parametrize("flip", [False, True])
def test_flip_resize_matches_tf_resize(h, w, oh, ow, c, flip):
    x = np.random.default_rng(h * w + c).integers(0, 256, (2, 3, h, w, c), dtype=np.uint8)
    out = kernels.flip_resize(x, [oh, ow], flip)
    assert out.dtype == tf.uint8 and out.shape == (2, 3, oh, ow, c)
    src = x[:, :, :, ::-1] if flip else x
    ref = tf.image.resize(src.reshape(-1, h, w, c), [oh, ow], antialias=False).numpy()
    diff = np.abs(out.numpy().astype(np.float64) - ref.reshape(out.shape))
    assert diff.max() < 0.6            # 11-bit fixed point, then rounding
    same = out.numpy() == np.round(ref.reshape(out.shape))
    assert same.mean() > 0.9           # off by one only next to rounding ties


@pytest.mark.parametrize("flip", [False, True])
def test_flip_resize_same_size_is_exact(flip):
    x = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    out = kernels.flip_resize(x, [224, 224], flip).numpy()
    np.testing.assert_array_equal(out, x[:, :, ::-1] if flip else x)


def test_flip_resize_static_shape_and_errors():
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    fn = tf.function(lambda x: kernels.flip_resize(x, [32, 40], True), input_signature=[spec])
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, 32, 40, 3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="size must be positive"):
        kernels.flip_resize(np.zeros((1, 4, 4, 3), np.uint8), [0, 4], False)


@pytest.mark.parametrize("backbone", ["bninception", "resnet50", "resnext50", "tiny"])
@pytest.mark.parametrize("modality,channels", [("rgb", 3), ("rgb", 9), ("flow", 10)])
def test_normalize_kernel_matches_stock_ops(backbone, modality, channels):
    x = np.random.default_rng(channels).integers(0, 256, (2, 3, 8, 8, channels), np.uint8)
    fused = augment.normalize(tf.constant(x), backbone, modality, kernels=True)
    stock = augment.normalize(tf.constant(x), backbone, modality, kernels=False)
    assert fused.dtype == tf.float32 and fused.shape == x.shape
    np.testing.assert_allclose(fused.numpy(), stock.numpy(), rtol=1e-5, atol=1e-4)


def test_flow_flip_inverts_x_on_kernel_path():
    """The kernel path's flow flip: mirrored, and x -> 255 - x on even channels only."""
    x = np.random.default_rng(1).integers(0, 256, (3, 16, 20, 4), dtype=np.uint8)
    coin = tf.constant(True)
    out = kernels.flip_resize(x, [16, 20], coin)
    out = augment.invert_flow_x(out).numpy().astype(int)
    ref = augment.flip(tf.constant(x), is_flow=True).numpy().astype(int)
    np.testing.assert_array_equal(out, ref)


def test_fallback_when_disabled(monkeypatch, tiny_records):
    saved = dict(kernels._state)
    kernels._state.clear()
    monkeypatch.setenv("TFVID_KERNELS", "0")
    try:
        assert kernels.load() is None and not kernels.available()
        with pytest.raises(RuntimeError, match="not available"):
            kernels.flip_resize(np.zeros((1, 4, 4, 3), np.uint8), [2, 2], False)
        batch = next(iter(pipeline.build_dataset(tiny_records, sampler=TSNSampler(2),
                                                 mode="train", batch_size=2, input_size=16,
                                                 backbone="tiny")))
        assert batch["clip"].shape == (2, 2, 16, 16, 3)
    finally:
        kernels._state.clear()
        kernels._state.update(saved)


def test_build_failure_names_the_source(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("TFVID_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="clip_ops.cc"):
        kernels.build()
    assert not any(p.suffix == ".so" for p in tmp_path.rglob("*"))   # nothing half-written


def test_build_is_cached_by_source_tensorflow_and_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("TFVID_CACHE", str(tmp_path))
    path = kernels.library_path()
    assert path.startswith(str(tmp_path)) and path.endswith("clip_ops.so")
    monkeypatch.setenv("CXX", "g++ -DTFVID_OTHER_FLAGS")
    assert kernels.library_path() != path          # other build command -> other library


def test_exported_preprocessing_has_no_kernel_ops():
    """preprocess_video (used by export signatures) must not need the kernel library."""
    frames = tf.zeros([12, 36, 48, 3], tf.uint8)
    fn = tf.function(lambda f: pipeline.preprocess_video(
        f, sampler=TSNSampler(3), mode="test", input_size=32, backbone="bninception"))
    ops = {n.op for n in fn.get_concrete_function(frames).graph.as_graph_def().node}
    assert not any(op.startswith("Tfvid") for op in ops)


SCALAR_CHECK = r"""
import sys, numpy as np, tensorflow as tf
module = tf.load_op_library(sys.argv[1])
rng = np.random.default_rng(0)
worst = 0.0
for h, w, oh, ow, c in [(256, 192, 224, 224, 3), (168, 168, 224, 224, 3), (256, 224, 224, 224, 10),
                        (31, 17, 16, 16, 2)]:
    x = rng.integers(0, 256, (2, h, w, c), dtype=np.uint8)
    for flip in (False, True):
        out = module.tfvid_flip_resize_u8(x, [oh, ow], flip).numpy().astype(np.float64)
        src = x[:, :, ::-1] if flip else x
        ref = tf.image.resize(src, [oh, ow], antialias=False).numpy()
        worst = max(worst, float(np.abs(out - ref).max()))
print(worst)
"""


def test_scalar_path_without_avx512(tmp_path):
    """The portable path (what a CPU without AVX-512 compiles) agrees with tf.image.resize."""
    import subprocess
    import sys
    lib = str(tmp_path / "clip_ops_scalar.so")
    cmd = kernels.build_command(lib) + ["-mno-avx512f"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    out = subprocess.run([sys.executable, "-c", SCALAR_CHECK, lib], check=True,
                         capture_output=True, text=True, timeout=600)
    assert float(out.stdout.strip().splitlines()[-1]) < 0.6
