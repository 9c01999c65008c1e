"""Fused uint8 kernels of the training input pipeline, built on first use (clip_ops.cc).

    flip_resize(clip, size, flip)      uint8 (..., H, W, C) -> uint8 (..., S_h, S_w, C)
    normalize_u8(x, source, scale, offset)   uint8 (..., C) -> float32 (..., C)
    status()                           "fused input kernels: on (AVX-512 path)", "...: off: <why>"

Why: on CPU, TF's bilinear resize works in float32 and the normalisation is three passes over
float32 batches (cast, channel shuffle, affine); together they cost more than decoding the
JPEGs (see the README's input-pipeline benchmark). These two ops do the flip and the resize in
fixed point on uint8 (as OpenCV does) and the normalisation in one pass.

Building: the first `load()` compiles clip_ops.cc with the C++ compiler (`CXX`, else g++) and
TensorFlow's compile and link flags (tf.sysconfig) for the x86-64 baseline (never
-march=native: what that turns on in TensorFlow's Eigen headers differs from CPU to CPU, and
with AVX512-FP16 they do not compile). The AVX-512 code has per-function target attributes and
is chosen at run time by a CPU check; the scalar path gives the same bytes (TFVID_KERNELS_SCALAR=1
forces it). The library goes to `$TFVID_CACHE` (default ~/.cache/tfvid)/kernels/<key>/clip_ops.so
(folders 0700); the key hashes the source, the build command, the compiler binary, the machine
type and the TensorFlow version, so a changed source, compiler or TensorFlow rebuilds. Beside it:
clip_ops.so.sha256 (recorded at build time and checked before every load: a library that does
not match is rebuilt, never loaded) and build.log (the compiler's output). Builds hold a lock
on the key folder (concurrent processes build once) and write atomically.

A failed build is remembered: build.failed beside build.log; later processes with the same key
do not retry, they warn in one line naming the log. Retry with TFVID_KERNELS_REBUILD=1 (forces
a fresh build), by deleting build.failed, or by calling `build()`.

Without a compiler, with TFVID_KERNELS=0, or after a failed build, `load()` returns None
(warning once, except for TFVID_KERNELS=0) and callers use the stock TensorFlow ops (same
result within 1 in 255). `available()` says which; `status()` / `info()` say why.
Graphs that use these ops need the library loaded: build_dataset uses them (tf.data only);
exported models and preprocess_video never do, so TF Serving and LiteRT do not need it.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
import warnings

import tensorflow as tf

from tfvid.atomic import atomic_path

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clip_ops.cc")
NAME = "fused input kernels"
_lock = threading.Lock()
_state: dict = {}


class BuildError(RuntimeError):
    """The kernels could not be built; `log` is the compiler log's path (None if none)."""

    def __init__(self, message: str, log: str | None = None):
        super().__init__(message)
        self.log = log


# ------------------------------------------------------------------------------- building
def compiler_command() -> list[str]:
    """The C++ compiler command: $CXX (split like a shell would), else g++."""
    return shlex.split(os.environ.get("CXX") or "g++")


def compiler() -> str | None:
    """The compiler's resolved path, or None when there is none."""
    cmd = compiler_command()
    return shutil.which(cmd[0]) if cmd else None


def _arch_flags() -> list[str]:
    # A fixed baseline: the AVX-512 code is selected per function at run time (clip_ops.cc)
    return ["-msse4.2"] if platform.machine().lower() in ("x86_64", "amd64") else []


def build_command(output: str) -> list[str]:
    """The compiler command that builds clip_ops.cc into `output` (no -march=native)."""
    return (compiler_command() + ["-std=c++17", "-O3"] + _arch_flags() +
            ["-shared", "-fPIC", "-w", SOURCE, "-o", output] +
            tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())


def cache_root() -> str:
    return os.environ.get("TFVID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "tfvid")


def library_path() -> str:
    """Where the compiled library for this source, build command, compiler and TensorFlow is
    cached: <cache>/kernels/<key>/clip_ops.so."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha1(f.read())
    digest.update("\0".join(build_command("out")).encode())
    digest.update(tf.__version__.encode())
    digest.update(platform.machine().encode())
    exe = compiler()
    try:
        st = os.stat(exe) if exe else None
        digest.update(f"{exe}:{st.st_size}:{st.st_mtime_ns}".encode() if st else b"none")
    except OSError:
        digest.update(b"none")
    return os.path.join(cache_root(), "kernels", digest.hexdigest()[:16], "clip_ops.so")


def _files(path: str) -> dict:
    folder = os.path.dirname(path)
    return {"log": os.path.join(folder, "build.log"),
            "marker": os.path.join(folder, "build.failed"),
            "sha256": path + ".sha256", "lock": os.path.join(folder, ".build.lock")}


def _private_dirs(folder: str) -> None:
    """Creates `folder` and any missing parents, each new one 0700. A key folder under
    <cache>/kernels and that kernels folder are then made 0700 and must belong to this user."""
    folder = os.path.abspath(folder)
    missing = []
    p = folder
    while not os.path.isdir(p) and os.path.dirname(p) != p:
        missing.append(p)
        p = os.path.dirname(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, 0o700)
    if os.path.basename(os.path.dirname(folder)) != "kernels":
        return                       # build(path) into a folder of the caller's choosing
    for p in (folder, os.path.dirname(folder)):
        st = os.stat(p)
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise PermissionError(f"the kernel cache folder {p} belongs to another user")
        if st.st_mode & 0o777 != 0o700:
            os.chmod(p, 0o700)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: str) -> bool:
    """True when `path` exists and matches the sha256 recorded when it was built."""
    try:
        with open(_files(path)["sha256"], encoding="ascii") as f:
            recorded = f.read().split()[0]
        return _sha256(path) == recorded
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def _build_lock(path: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)            # waits for a concurrent build
        yield
    finally:
        os.close(fd)


def build(path: str | None = None, *, force: bool = False) -> str:
    """Compiles the kernels unless a verified library is cached (or `force`); returns the
    library path. The compiler's output goes to build.log beside it; a failed compile also
    leaves build.failed there (load() then does not retry) and raises BuildError naming the
    log; a successful one records the library's sha256 and removes build.failed."""
    path = os.path.abspath(path or library_path())
    files = _files(path)
    _private_dirs(os.path.dirname(path))
    with _build_lock(files["lock"]):
        if not force and verified(path):
            return path                            # built meanwhile by another process
        if os.path.exists(path) and not force:
            warnings.warn(f"tfvid: {path} does not match the sha256 recorded when it was "
                          f"built; rebuilding it", RuntimeWarning, stacklevel=_caller_level())
        print(f"tfvid: compiling the {NAME} into {path} (once, 10-20 s)",
              file=sys.stderr, flush=True)
        with atomic_path(path) as tmp:
            cmd = build_command(tmp)
            start = time.monotonic()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                rc, output = proc.returncode, proc.stdout + proc.stderr
            except subprocess.TimeoutExpired as e:
                rc = "timeout after 600 s"
                output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or ""
                                 for x in (e.stdout, e.stderr))
            except OSError as e:
                raise BuildError(f"could not run the C++ compiler for {SOURCE}: {e}") from None
            seconds = time.monotonic() - start
            with atomic_path(files["log"]) as log_tmp, open(log_tmp, "w") as f:
                f.write(f"# {shlex.join(cmd)}\n# exit status: {rc}, {seconds:.1f} s\n{output}")
            if rc != 0:
                with atomic_path(files["marker"]) as marker_tmp, open(marker_tmp, "w") as f:
                    f.write(f"building {SOURCE} failed (exit status {rc}) at "
                            f"{time.strftime('%Y-%m-%d %H:%M:%S')}; log: {files['log']}\n"
                            "delete this file or set TFVID_KERNELS_REBUILD=1 to retry\n")
                raise BuildError(f"building {SOURCE} failed (exit status {rc}), see "
                                 f"{files['log']}", files["log"])
            with atomic_path(files["sha256"]) as sha_tmp, open(sha_tmp, "w") as f:
                f.write(f"{_sha256(tmp)}  clip_ops.so\n")
        with contextlib.suppress(FileNotFoundError):
            os.remove(files["marker"])
    return path


# -------------------------------------------------------------------------------- loading
def _caller_level() -> int:
    """warnings.warn's stacklevel for the first caller outside this module."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _off(reason: str, *, warn: str | None = None, log: str | None = None) -> dict:
    if warn:
        warnings.warn(f"tfvid: {NAME} off, using stock TensorFlow ops (slower): {warn}",
                      RuntimeWarning, stacklevel=_caller_level())
    return {"module": None, "on": False, "path": None, "status": f"{NAME}: off: {reason}",
            "library": None, "log": log}


def _load() -> dict:
    if os.environ.get("TFVID_KERNELS", "1") == "0":
        return _off("TFVID_KERNELS=0")
    if compiler() is None:
        what = f"$CXX={os.environ['CXX']}" if os.environ.get("CXX") else "g++"
        return _off(f"no C++ compiler ({what} not found)",
                    warn=f"no C++ compiler ({what} not found)")
    path = library_path()
    files = _files(path)
    force = os.environ.get("TFVID_KERNELS_REBUILD", "0") not in ("", "0")
    try:
        _private_dirs(os.path.dirname(path))
    except OSError as e:
        return _off(f"cache folder unusable: {e}", warn=f"cache folder unusable: {e}")
    if not force and os.path.exists(files["marker"]) and not verified(path):
        return _off(f"build failed, see {files['log']}", log=files["log"],
                    warn=f"an earlier build failed, see {files['log']} (retry: "
                         f"TFVID_KERNELS_REBUILD=1 or delete {files['marker']})")
    try:
        build(path, force=force)
    except BuildError as e:
        return _off(f"build failed, see {e.log}" if e.log else str(e), log=e.log,
                    warn=f"the build failed, see {e.log}" if e.log else str(e))
    except OSError as e:
        return _off(f"build failed: {e}", warn=f"the build failed: {e}")
    if not verified(path):                        # replaced between the build and now
        return _off(f"{path} does not match its recorded sha256",
                    warn=f"{path} does not match its recorded sha256; not loaded")
    try:
        module = tf.load_op_library(path)
    except (tf.errors.OpError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return _off(f"loading {path} failed: {first}", log=files["log"],
                    warn=f"loading {path} failed: {first}")
    try:
        avx512 = bool(ctypes.CDLL(path).tfvid_kernels_avx512())
    except (OSError, AttributeError):
        avx512 = False
    scalar = os.environ.get("TFVID_KERNELS_SCALAR", "0") not in ("", "0")
    kind = "scalar" if scalar or not avx512 else "AVX-512"
    note = ", forced by TFVID_KERNELS_SCALAR" if scalar and avx512 else ""
    return {"module": module, "on": True, "path": kind, "scalar": scalar or not avx512,
            "status": f"{NAME}: on ({kind} path{note})", "library": path, "log": files["log"]}


def load():
    """The loaded op module, or None (kernels disabled or not buildable; warns once)."""
    with _lock:
        if "module" not in _state:
            _state.update(_load())
        return _state["module"]


def available() -> bool:
    """True when the fused kernels are loaded (building them if needed)."""
    return load() is not None


def info() -> dict:
    """{"on": bool, "path": "AVX-512" | "scalar" | None, "status": str, "library": path or
    None, "log": path or None} (loading the kernels if needed): for logs and JSON reports."""
    load()
    return {k: _state.get(k) for k in ("on", "path", "status", "library", "log")}


def status() -> str:
    """One line for logs: "fused input kernels: on (AVX-512 path)", "...: off: TFVID_KERNELS=0",
    "...: off: build failed, see <log>", "...: off: no C++ compiler (g++ not found)"."""
    return info()["status"]


def flip_resize(clip, size, flip, *, scalar: bool | None = None) -> tf.Tensor:
    """uint8 (..., H, W, C) -> uint8 (..., S_h, S_w, C): horizontal flip when `flip` (bool
    scalar tensor), then bilinear resize to `size` (tf.image.resize's half-pixel sampling),
    rounded. scalar=True forces the portable path (same bytes; default: the AVX-512 path where
    the CPU has it, unless TFVID_KERNELS_SCALAR=1). Needs the kernels (`available()`)."""
    module = load()
    if module is None:
        raise RuntimeError("the fused kernels are not available")
    if scalar is None:
        scalar = bool(_state.get("scalar"))
    clip = tf.convert_to_tensor(clip, tf.uint8)
    shape = tf.shape(clip)
    size = tf.convert_to_tensor(size, tf.int32)
    flat = tf.reshape(clip, tf.concat([[-1], shape[-3:]], 0))
    out = module.tfvid_flip_resize_u8(flat, size, tf.convert_to_tensor(flip, tf.bool),
                                      scalar=bool(scalar))
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
