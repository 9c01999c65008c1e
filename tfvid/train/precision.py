"""Mixed precision for training: which Keras dtype policy a run uses, and why.

    policy, reason = choose_precision("auto")          # e.g. ('mixed_bfloat16', 'auto: ... amx_bf16')
    with dtype_policy_scope(policy):
        model = build()                                # compute in bf16, variables float32
    optimizer = wrap_optimizer(keras.optimizers.SGD(...), policy)

Policies (Keras mixed precision policies):
    float32         everything float32.
    mixed_bfloat16  layers compute in bfloat16, variables (and so checkpoints) stay float32.
    mixed_float16   the same with float16; the loss is scaled (keras.optimizers.
                    LossScaleOptimizer) so small gradients do not underflow.
    auto            a mixed policy where the hardware is fast at it, else float32: a GPU with
                    compute capability >= 8 (Ampere and later: bf16 tensor cores) or a CPU
                    with AMX (amx_bf16 in /proc/cpuinfo: oneDNN's bf16 tile kernels) get
                    mixed_bfloat16; a GPU below 8 gets mixed_float16 (float16 tensor cores
                    from 7.0). A CPU with avx512_bf16 but no AMX gets float32: there the
                    TSN-ResNet50 training step measured 0.36x to 0.40x the speed of float32
                    (TF 2.21, oneDNN on; the casts and the ops without bf16 kernels cost more
                    than the bf16 dot products save).
The logits and the loss stay float32 (tfvid.train.steps.logits_of casts the classifier's
output). A model rebuilt for evaluation or export (tfvid.train.run_dir.build_model) is float32:
the policy is set only while the training model is built, and restored afterwards.
"""
from __future__ import annotations

import contextlib
import logging

import keras

log = logging.getLogger("tfvid.train")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
POLICIES = PRECISIONS[1:]
#: CPU flags (/proc/cpuinfo) of bfloat16 training faster than float32 (AMX tiles).
BF16_CPU_FLAGS = ("amx_bf16",)
#: CPU flags of bfloat16 arithmetic that does not make a training step faster (see above).
SLOW_BF16_CPU_FLAGS = ("avx512_bf16",)


def read_cpuinfo(path: str = "/proc/cpuinfo") -> str:
    """The text of /proc/cpuinfo ('' where there is none, e.g. not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str) -> set[str]:
    """The 'flags' of every processor listed in a /proc/cpuinfo text."""
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return found


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) of every visible GPU (TensorFlow's device details); [] without GPUs."""
    import tensorflow as tf
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        found.append(tuple(cc) if cc else (0, 0))
    return found


def choose_precision(requested: str = "auto", *, cpuinfo: str | None = None,
                     gpus: list[tuple[int, int]] | None = None) -> tuple[str, str]:
    """(policy, reason): `requested` itself unless it is 'auto', which picks by the hardware
    (see the module docstring). cpuinfo: a /proc/cpuinfo text (default: read it); gpus: the
    compute capabilities of the GPUs (default: TensorFlow's list). ValueError for an unknown
    name."""
    if requested not in PRECISIONS:
        raise ValueError(f"--precision={requested!r} is unknown; choose one of {PRECISIONS}")
    if requested != "auto":
        return requested, "asked for"
    gpus = gpu_compute_capabilities() if gpus is None else list(gpus)
    if gpus:
        lowest = min(gpus)
        if lowest >= (8, 0):
            return "mixed_bfloat16", (f"auto: GPU compute capability {lowest[0]}.{lowest[1]} "
                                      ">= 8.0 has bfloat16 tensor cores")
        return "mixed_float16", (f"auto: GPU compute capability {lowest[0]}.{lowest[1]} < 8.0 "
                                 "(float16, not bfloat16, is fast there)")
    flags = cpu_flags(read_cpuinfo() if cpuinfo is None else cpuinfo)
    fast = [f for f in BF16_CPU_FLAGS if f in flags]
    if fast:
        return "mixed_bfloat16", f"auto: no GPU; the CPU has {' and '.join(fast)} (AMX)"
    slow = [f for f in SLOW_BF16_CPU_FLAGS if f in flags]
    if slow:
        return "float32", (f"auto: no GPU; the CPU has {' and '.join(slow)} but no AMX, where "
                           "a mixed_bfloat16 training step is slower than float32")
    return "float32", ("auto: no GPU and no bfloat16 support in the CPU "
                       "(it would be emulated, slower than float32)")


@contextlib.contextmanager
def dtype_policy_scope(policy: str):
    """Keras' global dtype policy is `policy` inside the block (layers built there compute in
    its dtype, variables float32) and what it was before afterwards."""
    if policy not in POLICIES:
        raise ValueError(f"precision policy must be one of {POLICIES}, got {policy!r}")
    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(before)


def wrap_optimizer(optimizer, policy: str):
    """A LossScaleOptimizer around `optimizer` for mixed_float16; `optimizer` otherwise."""
    if policy == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
