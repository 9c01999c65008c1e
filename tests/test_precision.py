"""tfvid.train.precision: the auto choice, and mixed precision training that matches float32.

A tiny TSN (backbone 'tiny', width 0.25, 32 x 32, K = 2) learns a synthetic task: the class of a
clip is its brightest colour channel, plus noise. Float32 and mixed_bfloat16 runs start from the
same seed, see the same batches and must give the same loss curve within noise (tolerance in
test_mixed_bfloat16_loss_curve_matches_float32).
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid import models
from tfvid.train import run_dir
from tfvid.train.loop import train
from tfvid.train.precision import (choose_precision, cpu_flags, dtype_policy_scope,
                                   wrap_optimizer)
from tfvid.train.steps import logits_of

CLASSES, K, S, B = 3, 2, 32, 8
CPU_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
CPU_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"
CPU_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"


# ------------------------------------------------------------------------------ auto choice
@pytest.mark.parametrize("cpuinfo,gpus,expected", [
    (CPU_BF16, [], "float32"),             # avx512_bf16 without AMX: bf16 measured slower
    (CPU_AMX, [], "mixed_bfloat16"),
    (CPU_PLAIN, [], "float32"),
    ("", [], "float32"),                                   # no /proc/cpuinfo
    (CPU_PLAIN, [(8, 0)], "mixed_bfloat16"),               # A100
    (CPU_PLAIN, [(9, 0), (8, 6)], "mixed_bfloat16"),
    (CPU_BF16, [(7, 0)], "mixed_float16"),                 # V100: float16 tensor cores
    (CPU_BF16, [(8, 0), (7, 5)], "mixed_float16"),         # the slowest GPU decides
])
def test_auto_follows_the_hardware(cpuinfo, gpus, expected):
    policy, reason = choose_precision("auto", cpuinfo=cpuinfo, gpus=gpus)
    assert policy == expected and reason.startswith("auto:")
    if not gpus and "bf16" in cpuinfo:                   # the log says what was seen
        assert ("amx_bf16" if "amx" in cpuinfo else "avx512_bf16") in reason


def test_explicit_choice_and_errors():
    assert choose_precision("float32", cpuinfo=CPU_BF16, gpus=[]) == ("float32", "asked for")
    assert choose_precision("mixed_float16", cpuinfo=CPU_PLAIN, gpus=[])[0] == "mixed_float16"
    with pytest.raises(ValueError, match="--precision='half'"):
        choose_precision("half")
    assert cpu_flags("flags : a b\nflags : b c\nmodel name : x\n") == {"a", "b", "c"}
    assert isinstance(wrap_optimizer(keras.optimizers.SGD(), "mixed_float16"),
                      keras.optimizers.LossScaleOptimizer)
    assert isinstance(wrap_optimizer(keras.optimizers.SGD(), "mixed_bfloat16"),
                      keras.optimizers.SGD)


def test_policy_scope_restores_and_logits_are_float32():
    before = keras.mixed_precision.dtype_policy().name
    with dtype_policy_scope("mixed_bfloat16"):
        model = tiny_tsn()
    assert keras.mixed_precision.dtype_policy().name == before == "float32"
    x = tf.random.uniform([2, K, S, S, 3])
    assert model(x).dtype == tf.bfloat16                  # the network computes in bf16
    assert {v.dtype for v in model.weights} == {"float32"}   # (SeedGenerator states: int64)
    assert logits_of(model, x, False).dtype == tf.float32
    assert logits_of(model, tf.stack([x, x], 1), False).dtype == tf.float32   # multi-view


# ------------------------------------------------------------------------------ training
def tiny_tsn():
    return models.build("tsn", CLASSES, backbone="tiny", width=0.25, input_size=S,
                        num_segments=K, weights=None, partial_bn=False, dropout=0.0)


def synthetic(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n).astype("int32")
    x = rng.normal(0, 1, (n, K, S, S, 3)).astype("float32")
    x[np.arange(n), :, :, :, y] += 1.0                    # the class's channel is brighter
    return x, y


def run(tmp_path, precision, steps=30, name=None):
    x, y = synthetic()

    def dataset_fn(ctx):
        return tf.data.Dataset.from_tensor_slices({"clip": x, "label": y}).repeat().batch(B)
    losses = []
    _, metrics = train(tiny_tsn, dataset_fn, model_dir=str(tmp_path / (name or precision)),
                       steps=steps, global_batch_size=B, learning_rate=0.02, clip_norm=40,
                       weight_decay=5e-4, log_every=10, progress=False, seed=0,
                       precision=precision,
                       step_callback=lambda step, logs: losses.append(logs["loss"]))
    return np.array(losses), metrics


def test_mixed_bfloat16_loss_curve_matches_float32(tmp_path):
    """Same seed, same batches, 30 SGD steps (no dropout, lr 0.02). Tolerance: the mean loss
    of each window of 10 steps agrees within 0.05 nats, while the loss falls from ln 3 = 1.1 to
    about 0.1. bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 %) in the
    activations and their gradients; the variables, the update and the loss stay float32, so
    the runs drift apart only through these roundings: measured here at most 0.02 nats over
    seeds 0-2, where changing the seed of a float32 run moves the last window by up to 0.13
    nats (the noise of the curve). A broken mixed step (no learning, a wrong cast, a lost
    gradient) fails it."""
    f32, m32 = run(tmp_path, "float32")
    bf16, mbf = run(tmp_path, "mixed_bfloat16")
    assert m32["precision"] == "float32" and mbf["precision"] == "mixed_bfloat16"
    assert bf16.mean() < 10 and np.all(np.isfinite(bf16))
    windows = lambda a: a.reshape(3, 10).mean(1)          # noqa: E731
    np.testing.assert_allclose(windows(bf16), windows(f32), rtol=0, atol=0.05)
    assert windows(f32)[-1] < 0.5 * windows(f32)[0]       # it learns, so the check has teeth
    assert windows(bf16)[-1] < 0.5 * windows(bf16)[0]


def test_mixed_float16_trains_with_loss_scaling(tmp_path):
    """A LossScaleOptimizer step: finite losses that fall (float16 is emulated on most CPUs,
    hence few steps)."""
    f16, metrics = run(tmp_path, "mixed_float16", steps=8)
    assert metrics["precision"] == "mixed_float16" and np.all(np.isfinite(f16))
    assert f16[-3:].mean() < f16[:3].mean()


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A 2-step train job run with --precision=mixed_bfloat16 on 6 tiny raw-frame videos."""
    from absl import flags

    from pipelines import train as job
    FLAGS = flags.FLAGS
    tmp_path = tmp_path_factory.mktemp("mixed")
    data = tmp_path / "data"
    data.mkdir()
    x, y = synthetic(n=6)
    rows = []
    for v in range(6):
        folder = data / f"v{v}"
        folder.mkdir()
        for t in range(4):
            img = np.clip(x[v, t % K] * 40 + 128, 0, 255).astype(np.uint8)
            (folder / f"img_{t + 1:05d}.jpg").write_bytes(tf.io.encode_jpeg(img).numpy())
        rows.append(f"v{v} 4 {y[v]}\n")
    (data / "train.list").write_text("".join(rows))
    (data / "classes.txt").write_text("a\nb\nc\n")
    out = tmp_path / "run"
    try:
        FLAGS.unparse_flags()
        FLAGS(["train", f"--train_data={data / 'train.list'}", f"--model_dir={out}",
               "--backbone=tiny", "--width=0.25", f"--input_size={S}", f"--num_segments={K}",
               "--batch_size=2", "--steps=2", "--noprogress", "--nopartial_bn",
               "--precision=mixed_bfloat16"])
        metrics = job.main(["train"])
    finally:
        FLAGS.unparse_flags()
    return out, metrics


def test_mixed_run_is_recorded_and_restores_float32(mixed_run):
    """The train job records the precision; the run is rebuilt float32 and restores its
    float32 checkpoint."""
    out, metrics = mixed_run
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["precision"] == "mixed_bfloat16" and metrics["precision"] == "mixed_bfloat16"
    assert cfg["precision_reason"] == "asked for"
    assert cfg["augmentation"] == "multiscale_crop_flip"          # TSN's paper recipe
    assert json.loads((out / "metrics.json").read_text())["precision"] == "mixed_bfloat16"
    model = run_dir.build_model(cfg)
    run_dir.restore(model, str(out))
    assert model(tf.random.uniform([1, K, S, S, 3])).dtype == tf.float32
    assert {v.dtype for v in model.weights} == {"float32"}


@pytest.mark.slow
def test_mixed_run_exports_float32(mixed_run, tmp_path):
    """The export of a mixed_bfloat16 run serves float32 logits equal to the float32 model's."""
    from tfvid.export import load_export
    from tfvid.export.from_run import export_run
    out, _ = mixed_run
    model = run_dir.build_model(json.loads((out / "run_config.json").read_text()))
    run_dir.restore(model, str(out))
    clip = tf.random.uniform([1, K, S, S, 3])
    serving, _ = load_export(export_run(str(out), export_base=str(tmp_path / "exports"),
                                        warmup=False))
    logits = serving(clip)["logits"]
    assert logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), model(clip).numpy(), rtol=1e-4, atol=1e-5)
