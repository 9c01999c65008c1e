"""What the command-line jobs in pipelines/ share: flag definition, argument checks, data paths.

Several jobs may be imported in one process (tests, notebooks) and they share flag names
(--model_dir, --num_segments, --output_dir, --progress...), while absl keeps one flag per name.
So every job defines its flags with define_flag (the first definition wins, the others are
skipped) and starts its main() with check_args, which also gives every flag the job defined but
nobody set this job's own default (e.g. train's --batch_size=256, not evaluate's 1).
flag_value reads one flag the same way.
"""
from __future__ import annotations

import glob
import os
import re
import sys

from absl import app, flags

FLAGS = flags.FLAGS
# Flags defined through define_flag belong to the job that calls it (its --help lists them).
flags.disclaim_key_flags()
# module name of a job -> {flag name: that job's default}, filled by define_flag.
_JOB_DEFAULTS: dict[str, dict] = {}


def _caller_module(depth: int = 2) -> str:
    """__name__ of the module that called the function calling this one."""
    return sys._getframe(depth).f_globals.get("__name__", "")


def define_flag(kind: str, name: str, default, help_text: str, **kw) -> None:
    """flags.DEFINE_<kind>(name, default, help_text, **kw) unless --name is defined already.

    kind: 'string', 'integer', 'float', 'bool', 'enum', 'list', ...; kw: e.g. enum_values,
    lower_bound. An existing flag keeps its first definition (default, type, help); this
    job's default is recorded, and check_args applies it when the flag was not set.
    """
    _JOB_DEFAULTS.setdefault(_caller_module(), {})[name] = default
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name=name, default=default, help=help_text, **kw)


def flag_value(name: str, default):
    """--name's value when it was set (command line, flagfile or assignment), else `default`:
    this job's own default, which another job that defined the flag first may not share
    (e.g. train's --num_segments=3 against evaluate's None)."""
    flag = FLAGS[name]
    return default if flag.using_default_value else flag.value


def check_args(argv: list[str], *required: str) -> None:
    """Starts a job's main(): gives the flags the calling job defined and nobody set that job's
    own defaults, then raises app.UsageError for positional arguments or naming the `required`
    flags left empty."""
    for name, default in _JOB_DEFAULTS.get(_caller_module(), {}).items():
        if FLAGS[name].using_default_value:
            FLAGS[name].value = default
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    missing = [f"--{name}" for name in required if not FLAGS[name].value]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise app.UsageError(f"{' and '.join(missing)} {verb} required")


def resolve_files(spec: str | None, flag: str = "data") -> list[str]:
    """Comma-separated globs, directories (their *.tfrecord* files) or files -> paths, sorted
    within each entry, without repeats.

    TFRecord shards and raw-frame .list files (tfvid.data.pipeline.read_list_file) are both
    passed on to build_dataset as they are. FileNotFoundError naming --flag and the entry that
    matches nothing; ValueError when `spec` is empty.
    """
    out: list[str] = []
    for part in [p.strip() for p in (spec or "").split(",") if p.strip()]:
        if os.path.isdir(part):
            found = sorted(glob.glob(os.path.join(part, "*.tfrecord*")))
        else:
            found = sorted(glob.glob(part))
        if not found:
            raise FileNotFoundError(f"--{flag} entry {part!r} matches no file")
        out.extend(f for f in found if f not in out)
    if not out:
        raise ValueError(f"--{flag} is required: TFRecord globs, directories or .list files")
    return out


def parse_frame_size(text: str, flag: str = "frame_size") -> tuple[tuple[int, int] | None,
                                                                   int | None]:
    """A decoded-frame size flag -> (frame_size, short_side) for tfvid.data.video.read_video:
    '340x256' -> ((340, 256), None); 'short256' -> (None, 256) (aspect kept); 'original' or
    'source' -> (None, None). Raises app.UsageError naming --`flag`."""
    text = (text or "").strip().lower()
    if text in ("original", "source"):
        return None, None
    m = re.fullmatch(r"short(\d+)", text)
    if m and int(m.group(1)) > 0:
        return None, int(m.group(1))
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        return (int(m.group(1)), int(m.group(2))), None
    raise app.UsageError(f"--{flag}: expected WIDTHxHEIGHT (e.g. 340x256), shortN (e.g. "
                         f"short256) or 'original', got {text!r}")
