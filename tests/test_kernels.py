"""Fused uint8 input kernels: agreement with the stock TF ops, the AVX-512 and scalar paths,
the fallback, the build (portable flags, remembered failures, hash-checked cache), and exports
free of the kernel library (the pipeline on both paths: test_pipeline.py).

Skipped only without a C++ compiler: with one, the kernels must build and load (a failed build
fails the tests, showing the compiler's log)."""
import hashlib
import os
import stat
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import augment, kernels, pipeline  # noqa: E402
from tfvid.data.sampling import TSNSampler  # noqa: E402

pytestmark = pytest.mark.skipif(kernels.compiler() is None,
                                reason=f"no C++ compiler ({os.environ.get('CXX') or 'g++'})")


@pytest.fixture(scope="module", autouse=True)
def built():
    """The kernels must load wherever a compiler exists; else fail with the compiler's log."""
    if kernels.load() is None:
        info = kernels.info()
        log = ""
        if info["log"] and os.path.exists(info["log"]):
            with open(info["log"], encoding="utf-8", errors="replace") as f:
                log = f.read()[-6000:]
        pytest.fail(f"{info['status']}\n{log}", pytrace=False)
    return kernels.info()

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
        assert kernels.status() == "fused input kernels: off: TFVID_KERNELS=0"
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


def test_build_is_cached_by_source_tensorflow_and_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("TFVID_CACHE", str(tmp_path))
    path = kernels.library_path()
    assert path.startswith(str(tmp_path)) and path.endswith("clip_ops.so")
    monkeypatch.setenv("CXX", "g++ -DTFVID_OTHER_FLAGS")
    assert kernels.library_path() != path          # other build command -> other library


def test_build_command_is_portable():
    """No -march=native (nor any AVX-512 flag): what -march=native turns on in TensorFlow's
    headers differs between CPUs (AVX512-FP16 breaks Eigen); AVX-512 is chosen at run time."""
    cmd = kernels.build_command("out.so")
    assert not any(a.startswith(("-march", "-mtune=native", "-mavx")) for a in cmd), cmd
    assert "-O3" in cmd


def test_loaded_library_is_hashed_and_private(built):
    lib = built["library"]
    with open(lib + ".sha256", encoding="ascii") as f:
        assert f.read().split()[0] == hashlib.sha256(open(lib, "rb").read()).hexdigest()
    for folder in (os.path.dirname(lib), os.path.dirname(os.path.dirname(lib))):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder


def test_status_names_the_path(built):
    assert built["on"] and kernels.status() == built["status"]
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    avx512 = all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))
    expected = "scalar" if os.environ.get("TFVID_KERNELS_SCALAR", "0") not in ("", "0") \
        else "AVX-512" if avx512 else "scalar"
    assert built["path"] == expected
    assert built["status"].startswith(f"fused input kernels: on ({expected} path")


@pytest.mark.parametrize("h,w,oh,ow,c", SIZES + [(256, 340, 224, 224, 3), (240, 320, 112, 112, 3)])
@pytest.mark.parametrize("flip", [False, True])
def test_avx512_and_scalar_paths_are_identical(h, w, oh, ow, c, flip):
    """Both paths do the same integer arithmetic: same bytes (on a CPU without AVX-512 both
    are the scalar path)."""
    x = np.random.default_rng(h + w + c).integers(0, 256, (4, h, w, c), dtype=np.uint8)
    fast = kernels.flip_resize(x, [oh, ow], flip, scalar=False).numpy()
    portable = kernels.flip_resize(x, [oh, ow], flip, scalar=True).numpy()
    np.testing.assert_array_equal(fast, portable)


def test_scalar_path_matches_tf_resize():
    """The portable path (what a CPU without AVX-512 runs) agrees with tf.image.resize."""
    rng = np.random.default_rng(0)
    for h, w, oh, ow, c in [(256, 192, 224, 224, 3), (168, 168, 224, 224, 3),
                            (256, 224, 224, 224, 10), (31, 17, 16, 16, 2)]:
        x = rng.integers(0, 256, (2, h, w, c), dtype=np.uint8)
        for flip in (False, True):
            out = kernels.flip_resize(x, [oh, ow], flip, scalar=True).numpy().astype(np.float64)
            ref = tf.image.resize(x[:, :, ::-1] if flip else x, [oh, ow], antialias=False)
            assert np.abs(out - ref.numpy()).max() < 0.6


# ----------------------------------------------------------- failures, the cache's safety
def _fake_compiler(tmp_path, rc=1):
    """A 'compiler' that counts its runs in tmp_path/runs and fails with a compiler-like error."""
    script = tmp_path / "fake-cxx"
    script.write_text(f"#!/bin/sh\necho run >> '{tmp_path / 'runs'}'\n"
                      "echo 'clip_ops.cc:1:1: error: fake failure' >&2\n"
                      f"exit {rc}\n")
    script.chmod(0o755)
    return script


def _runs(tmp_path) -> int:
    p = tmp_path / "runs"
    return len(p.read_text().splitlines()) if p.exists() else 0


@pytest.fixture
def fresh_state():
    """load() from scratch in this process (the real module's state restored afterwards)."""
    saved = dict(kernels._state)
    kernels._state.clear()
    try:
        yield
    finally:
        kernels._state.clear()
        kernels._state.update(saved)


STATUS = """
import warnings
warnings.simplefilter("always")
from tfvid.data import kernels
print("STATUS", kernels.status())
"""


def _status_in_new_process(env):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.run([sys.executable, "-c", STATUS], env=env, capture_output=True,
                          text=True, timeout=600)


def test_failed_build_is_remembered(monkeypatch, tmp_path, fresh_state, recwarn):
    cxx, cache = _fake_compiler(tmp_path), tmp_path / "cache"
    monkeypatch.setenv("CXX", str(cxx))
    monkeypatch.setenv("TFVID_CACHE", str(cache))
    monkeypatch.delenv("TFVID_KERNELS_REBUILD", raising=False)
    assert kernels.load() is None and _runs(tmp_path) == 1
    folder = os.path.dirname(kernels.library_path())
    log, marker = os.path.join(folder, "build.log"), os.path.join(folder, "build.failed")
    assert "fake failure" in open(log).read() and os.path.exists(marker)
    assert not os.path.exists(kernels.library_path())
    assert kernels.status() == f"fused input kernels: off: build failed, see {log}"
    warned = [w for w in recwarn.list if "fused input kernels off" in str(w.message)]
    assert len(warned) == 1 and log in str(warned[0].message)
    assert "\n" not in str(warned[0].message)                 # one line, not the compiler's
    seen = len(recwarn.list)
    assert kernels.load() is None and len(recwarn.list) == seen and _runs(tmp_path) == 1
    for path in (cache, cache / "kernels", folder):              # the cache is private
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path

    env = {"CXX": str(cxx), "TFVID_CACHE": str(cache)}
    again = _status_in_new_process(env)                          # a new process: no retry
    assert again.returncode == 0, again.stderr
    assert f"STATUS fused input kernels: off: build failed, see {log}" in again.stdout
    assert _runs(tmp_path) == 1
    lines = [x for x in again.stderr.splitlines() if "fused input kernels" in x or "error:" in x]
    assert len(lines) == 1 and "TFVID_KERNELS_REBUILD=1" in lines[0], again.stderr

    retry = _status_in_new_process({**env, "TFVID_KERNELS_REBUILD": "1"})
    assert retry.returncode == 0 and _runs(tmp_path) == 2, retry.stderr
    os.remove(marker)                                            # the other way to retry
    assert _status_in_new_process(env).returncode == 0 and _runs(tmp_path) == 3


TAMPER = r"""
#include <stdio.h>
__attribute__((constructor)) static void tampered(void) {
  FILE* f = fopen(TFVID_MARK, "w");
  if (f) fclose(f);
}
"""


def test_tampered_library_is_not_loaded(monkeypatch, tmp_path, fresh_state):
    """A clip_ops.so that does not match the sha256 recorded at build time is rebuilt, never
    loaded (here the rebuild fails: the fake compiler)."""
    real = kernels.compiler()
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path)))
    monkeypatch.setenv("TFVID_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TFVID_KERNELS_REBUILD", raising=False)
    lib, mark = kernels.library_path(), tmp_path / "loaded"
    os.makedirs(os.path.dirname(lib))
    src = tmp_path / "tamper.cc"
    src.write_text(TAMPER)
    subprocess.run([real, "-shared", "-fPIC", f'-DTFVID_MARK="{mark}"', str(src), "-o", lib],
                   check=True, capture_output=True, timeout=120)
    marker = os.path.join(os.path.dirname(lib), "build.failed")
    for recorded in (None, "0" * 64):          # no hash recorded / another library's hash
        kernels._state.clear()
        if os.path.exists(marker):             # (a remembered failure would not rebuild)
            os.remove(marker)
        if recorded:
            with open(lib + ".sha256", "w") as f:
                f.write(f"{recorded}  clip_ops.so\n")
        with pytest.warns(RuntimeWarning, match="does not match the sha256"):
            assert kernels.load() is None
        assert not mark.exists()
    assert _runs(tmp_path) == 2                                  # a rebuild was attempted
    # the check itself: with its true hash recorded the same file is loaded
    kernels._state.clear()
    with open(lib + ".sha256", "w") as f:
        f.write(f"{hashlib.sha256(open(lib, 'rb').read()).hexdigest()}  clip_ops.so\n")
    kernels.load()
    assert mark.exists() and _runs(tmp_path) == 2


def test_no_compiler_is_reported(monkeypatch, tmp_path, fresh_state):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("TFVID_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert kernels.load() is None
    assert kernels.status().startswith("fused input kernels: off: no C++ compiler")
    assert kernels.info() == {"on": False, "path": None, "status": kernels.status(),
                              "library": None, "log": None}
    assert not (tmp_path / "cache").exists()


def test_exported_preprocessing_has_no_kernel_ops():
    """preprocess_video (used by export signatures) must not need the kernel library."""
    frames = tf.zeros([12, 36, 48, 3], tf.uint8)
    fn = tf.function(lambda f: pipeline.preprocess_video(
        f, sampler=TSNSampler(3), mode="test", input_size=32, backbone="bninception"))
    ops = {n.op for n in fn.get_concrete_function(frames).graph.as_graph_def().node}
    assert not any(op.startswith("Tfvid") for op in ops)


def test_benchmark_reports_the_kernels(built):
    from pipelines import bench_input
    assert bench_input.kernels_report("frames") == {k: built[k] for k in ("on", "path", "status")}
    assert bench_input.kernels_report("tfrecord")["on"]
    stock = bench_input.kernels_report("frames.stock")
    assert not stock["on"] and stock["status"] == "fused input kernels: off: stock TF ops"
