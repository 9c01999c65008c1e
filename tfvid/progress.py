"""Progress bars that suit both a terminal and a log file.

On a terminal, progress_bar is tqdm as usual. When its output is not a terminal (a job's stderr
redirected to a file, captured by a test or a scheduler), a tqdm bar would still redraw ten times
a second with carriage returns: hundreds of kilobytes of log for one training run. There
progress_bar prints one plain line (ending in a newline) at most every `log_interval` seconds
(default 30, or the TFVID_PROGRESS_INTERVAL environment variable), plus the final state.

    from tfvid.progress import progress_bar
    with progress_bar(total=steps, unit="step", desc="train") as bar:
        ...
        bar.update(1)

Every tfvid module that shows progress goes through this function.
"""
from __future__ import annotations

import os
import sys

DEFAULT_LOG_INTERVAL = 30.0


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def log_interval() -> float:
    """Seconds between progress lines in a log (TFVID_PROGRESS_INTERVAL, default 30)."""
    try:
        return max(0.0, float(os.environ.get("TFVID_PROGRESS_INTERVAL", DEFAULT_LOG_INTERVAL)))
    except ValueError:
        return DEFAULT_LOG_INTERVAL


class _LineWriter:
    """A file for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (AttributeError, OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return False


def is_interactive(stream=None) -> bool:
    """Whether progress goes to a terminal (stream: default sys.stderr)."""
    return _isatty(sys.stderr if stream is None else stream)


_LOG_TQDM = None


def _log_tqdm():
    """tqdm whose set_postfix / set_description do not redraw at once (tqdm's default is to
    redraw on every call, which a per-step set_postfix turns into a line per step): the new
    text shows at the next timed refresh."""
    global _LOG_TQDM
    if _LOG_TQDM is None:
        from tqdm import tqdm

        class LogTqdm(tqdm):
            def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
                super().set_postfix(ordered_dict, refresh=False, **kwargs)

            def set_postfix_str(self, s="", refresh=True):
                super().set_postfix_str(s, refresh=False)

            def set_description(self, desc=None, refresh=True):
                super().set_description(desc, refresh=False)

            def set_description_str(self, desc=None, refresh=True):
                super().set_description_str(desc, refresh=False)

        _LOG_TQDM = LogTqdm
    return _LOG_TQDM


def progress_bar(iterable=None, **kwargs):
    """tqdm(iterable, **kwargs), quiet when the output is not a terminal (module docstring).

    kwargs are tqdm's (total, desc, unit, disable, file, ...). Off a terminal, mininterval and
    maxinterval become log_interval() unless given, dynamic_ncols is dropped, lines are written
    whole, and set_postfix / set_description wait for the next timed refresh.
    """
    stream = kwargs.get("file") or sys.stderr
    if _isatty(stream):
        from tqdm import tqdm
        return tqdm(iterable, **kwargs)
    interval = log_interval()
    kwargs.setdefault("mininterval", interval)
    kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0.0), kwargs["mininterval"])
    kwargs.pop("dynamic_ncols", None)
    kwargs.setdefault("ncols", 100)
    kwargs["file"] = _LineWriter(stream)
    return _log_tqdm()(iterable, **kwargs)
