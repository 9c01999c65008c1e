"""Fused uint8 kernels of the training input pipeline, built on first use (clip_ops.cc).

    flip_resize(clip, size, flip)      uint8 (..., H, W, C) -> uint8 (..., S_h, S_w, C)
    normalize_u8(x, source, scale, offset)   uint8 (..., C) -> float32 (..., C)

Why: on CPU, TF's bilinear resize works in float32 and the normalisation is three passes over
float32 batches (cast, channel shuffle, affine); together they cost more than decoding the
JPEGs (see the README's input-pipeline benchmark). These two ops do the flip and the resize in
fixed point on uint8 (as OpenCV does) and the normalisation in one pass.

Building: the first `load()` compiles clip_ops.cc with the C++ compiler (`CXX`, else g++) and
TensorFlow's compile and link flags (tf.sysconfig), for this machine's CPU (-march=native),
into `$TFVID_CACHE` (default ~/.cache/tfvid)/kernels/<key>/clip_ops.so; the key hashes the
source, the flags, the TensorFlow version and the CPU's feature flags, so a changed source or
TensorFlow rebuilds. The library is written atomically (concurrent builds are safe).

Without a compiler (or with TFVID_KERNELS=0) `load()` returns None after one warning, and
callers use the stock TensorFlow ops (same result within 1 in 255). `available()` says which.
Graphs that use these ops need the library loaded: build_dataset uses them (tf.data only);
exported models and preprocess_video never do, so TF Serving and LiteRT do not need it.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import threading
import warnings

import tensorflow as tf

from tfvid.atomic import atomic_path

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clip_ops.cc")
_lock = threading.Lock()
_state: dict = {}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""


def build_command(output: str) -> list[str]:
    """The compiler command that builds clip_ops.cc into `output`."""
    cxx = shlex.split(os.environ.get("CXX", "g++"))
    return cxx + ["-std=c++17", "-O3", "-march=native", "-shared", "-fPIC", "-w", SOURCE,
                  "-o", output] + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()


def library_path() -> str:
    """Where the compiled library for this source, TensorFlow and CPU is cached."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha1(f.read())
    digest.update(" ".join(build_command("out")).encode())
    digest.update(tf.__version__.encode())
    digest.update(_cpu_flags().encode())
    cache = os.environ.get("TFVID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "tfvid")
    return os.path.join(cache, "kernels", digest.hexdigest()[:16], "clip_ops.so")


def build(path: str | None = None) -> str:
    """Compiles the kernels (if not cached) and returns the library path; raises RuntimeError
    with the compiler's output when the build fails."""
    path = path or library_path()
    if os.path.exists(path):
        return path
    print(f"tfvid: compiling the fused input kernels into {path} (once, about 15 s)",
          file=sys.stderr, flush=True)
    with atomic_path(path) as tmp:
        try:
            proc = subprocess.run(build_command(tmp), capture_output=True, text=True,
                                  timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"could not run the C++ compiler for {SOURCE}: {e}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"building {SOURCE} failed:\n{proc.stderr[-3000:]}")
    return path


def load():
    """The loaded op module, or None (kernels disabled or not buildable; warns once)."""
    with _lock:
        if "module" not in _state:
            module = None
            if os.environ.get("TFVID_KERNELS", "1") != "0":
                try:
                    module = tf.load_op_library(build())
                except (RuntimeError, tf.errors.NotFoundError, OSError) as e:
                    warnings.warn(f"tfvid: fused input kernels unavailable, using stock "
                                  f"TensorFlow ops (slower): {e}", RuntimeWarning, stacklevel=2)
            _state["module"] = module
        return _state["module"]


def available() -> bool:
    """True when the fused kernels are loaded (building them if needed)."""
    return load() is not None


def flip_resize(clip, size, flip) -> tf.Tensor:
    """uint8 (..., H, W, C) -> uint8 (..., S_h, S_w, C): horizontal flip when `flip` (bool
    scalar tensor), then bilinear resize to `size` (tf.image.resize's half-pixel sampling),
    rounded. Needs the kernels (`available()`)."""
    module = load()
    if module is None:
        raise RuntimeError("the fused kernels are not available")
    clip = tf.convert_to_tensor(clip, tf.uint8)
    shape = tf.shape(clip)
    size = tf.convert_to_tensor(size, tf.int32)
    flat = tf.reshape(clip, tf.concat([[-1], shape[-3:]], 0))
    out = module.tfvid_flip_resize_u8(flat, size, tf.convert_to_tensor(flip, tf.bool))
    out = tf.reshape(out, tf.concat([shape[:-3], size, shape[-1:]], 0))
    static = tf.get_static_value(size)
    spatial = tf.TensorShape(static if static is not None else [None, None])
    return tf.ensure_shape(out, clip.shape[:-3].concatenate(spatial).concatenate(clip.shape[-1:]))


def normalize_u8(x, source, scale, offset) -> tf.Tensor:
    """uint8 (..., C) -> float32 (..., C): out[..., o] = x[..., source[o]] * scale[o] +
    offset[o], one pass. Needs the kernels (`available()`)."""
    module = load()
    if module is None:
        raise RuntimeError("the fused kernels are not available")
    x = tf.convert_to_tensor(x, tf.uint8)
    out = module.tfvid_normalize_u8(x, tf.constant(source, tf.int32),
                                    tf.constant(scale, tf.float32),
                                    tf.constant(offset, tf.float32))
    return tf.ensure_shape(out, x.shape)
