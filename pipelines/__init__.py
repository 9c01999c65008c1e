"""Command-line jobs: each module is `python -m pipelines.<job>` and console script `tfvid-<job>`.

Importing this package (which every job does first, before TensorFlow) keeps TensorFlow quiet
unless the user asked otherwise:

- TF_CPP_MIN_LOG_LEVEL defaults to 2 (no C++ INFO/WARNING lines). TensorFlow 2.20+ still prints
  a few lines while it loads, before its logging honours that level (the absl::InitializeLog
  banner, the oneDNN notice, 'Could not find cuda drivers', and 'failed call to cuInit' on a
  machine without a GPU driver): `import tensorflow` runs with stderr captured, and everything
  else it printed is written back.
- TensorFlow's and Keras's Python INFO log (SavedModel signatures, saver sharding,
  fingerprints, checkpoints...) is dropped: the 'tensorflow' logger is raised to WARNING and
  INFO records that their code logs through absl.logging are filtered; tfvid's own INFO lines
  and all warnings stay.
- tqdm progress bars on a stderr that is not a terminal (a redirected log) refresh every 30 s
  (TQDM_MININTERVAL) instead of 10 times a second; see tfvid.progress.

Set TF_CPP_MIN_LOG_LEVEL yourself (e.g. 0) to see everything TensorFlow prints. The choice
passes to the jobs a job starts (quickstart): TFVID_QUIET_TF=1 marks a level set here.
"""
import os
import sys

if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ["TFVID_QUIET_TF"] = "1"


def _stderr_is_tty() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False


if not _stderr_is_tty():
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    os.environ.setdefault("TQDM_MAXINTERVAL", "60")

# Lines TensorFlow prints while it loads that say nothing to a user of these jobs.
_TF_NOISE = (
    b"All log messages before absl::InitializeLog() is called",
    b"oneDNN custom operations are on",
    b"Could not find cuda drivers on your machine",
    b"failed call to cuInit",
    b"This TensorFlow binary is optimized to use available CPU instructions",
    b"To enable the following instructions:",
    b"Unable to register cuDNN factory", b"Unable to register cuFFT factory",
    b"Unable to register cuBLAS factory",
    b"computation placer already registered",
    b"TF-TRT Warning: Could not find TensorRT",
)
QUIETED_TF_LINES: list[str] = []   # what the quiet import dropped, for whoever wants to look


def _quiet_exec(exec_module):
    """exec_module of tensorflow (and the first device listing) with fd 2 sent to a temporary
    file; the lines that are not _TF_NOISE are written back to stderr afterwards (also when the
    import fails)."""
    def run(module):
        import tempfile
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return exec_module(module)
        tmp = tempfile.TemporaryFile()
        os.dup2(tmp.fileno(), 2)
        try:
            exec_module(module)
            # CUDA is initialised (cuInit) when the devices are first listed, not at import:
            # list them now, inside the capture. Logical devices stay configurable.
            try:
                module.config.list_physical_devices()
            except Exception:  # noqa: BLE001 (the job's first op reports real problems)
                pass
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = []
            for line in tmp.read().splitlines(keepends=True):
                if any(n in line for n in _TF_NOISE):
                    QUIETED_TF_LINES.append(line.decode(errors="replace").rstrip())
                else:
                    kept.append(line)
            tmp.close()
            if kept:
                os.write(2, b"".join(kept))
    return run


class _QuietTensorFlowImport:
    """A one-shot sys.meta_path finder: wraps the loading of the `tensorflow` package."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader.exec_module = _quiet_exec(spec.loader.exec_module)
        return spec


_LIBRARIES = ("tensorflow", "keras", "tf_keras", "tensorboard")


def _first_caller_outside_logging() -> str:
    """File of the innermost frame that is neither in `logging` nor in absl.logging (records
    logged through absl.logging.log() carry absl's own file as their pathname)."""
    skip = (os.sep + os.path.join("absl", "logging"), os.sep + "logging" + os.sep,
            "tf_logging.py")
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not any(k in name for k in skip) and not name.endswith(__file__):
            return name
        frame = frame.f_back
    return ""


class _LibraryInfoFilter:
    """Drops INFO (and DEBUG) records that TensorFlow / Keras code logs through absl.logging
    (signature serialisation, saver sharding, fingerprints...); tfvid's own INFO and every
    WARNING or worse pass."""

    def filter(self, record) -> bool:
        if record.levelno >= 30:     # logging.WARNING
            return True
        path = getattr(record, "pathname", "") or ""
        if os.sep + os.path.join("absl", "logging") in path:   # absl.logging.log(): the caller
            path = _first_caller_outside_logging()
        for name in _LIBRARIES:
            module = sys.modules.get(name)
            for root in getattr(module, "__path__", None) or ():
                if path.startswith(os.path.join(root, "")):
                    return False
        return True


if os.environ.get("TFVID_QUIET_TF") == "1":
    import logging as _logging
    _logging.getLogger("tensorflow").setLevel(_logging.WARNING)
    _absl_logger = _logging.getLogger("absl")
    if not any(isinstance(f, _LibraryInfoFilter) for f in _absl_logger.filters):
        _absl_logger.addFilter(_LibraryInfoFilter())
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
