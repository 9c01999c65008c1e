"""What the command-line jobs in pipelines/ share: flag definition, argument checks, data paths,
and how a job runs (run_job).

Several jobs may be imported in one process (tests, notebooks) and they share flag names
(--model_dir, --num_segments, --output_dir, --progress...), while absl keeps one flag per name.
So every job defines its flags with define_flag (the first definition wins, the others are
skipped) and starts its main() with check_args, which also gives every flag the job defined but
nobody set this job's own default (e.g. train's --batch_size=256, not evaluate's 1).
flag_value reads one flag the same way.

Every job's run() (its console script tfvid-<job> and `python -m pipelines.<job>`) is
run_job(main): --help shows the job's docstring and flags under both; a usage error (app.UsageError,
UsageError, or an error raised inside `with usage_errors():`, or a flag that does not parse)
prints one line, `tfvid-<job>: error: ...`, and a pointer to --help, then exits with status 1.
last_given / keep_last_given settle flags that exclude each other (--steps / --epochs) by the
order of the command line, flagfiles expanded: a flag given after a preset overrides it.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import subprocess
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
# Flags defined through define_flag belong to the job that calls it (its --help lists them).
flags.disclaim_key_flags()
# module name of a job -> {flag name: that job's default}, filled by define_flag.
_JOB_DEFAULTS: dict[str, dict] = {}


class UsageError(app.UsageError, ValueError):
    """A wrong command line or flag value: run_job prints the message alone, in one line.

    Also a ValueError, so code that catches ValueError still does."""


@contextlib.contextmanager
def usage_errors(*types: type[BaseException], prefix: str = ""):
    """Inside the block, exceptions of `types` (default ValueError) become UsageError (message
    kept, prefixed by `prefix`): for checks done by library code on values the user gave.

        with usage_errors():
            make_synthetic_dataset(root, num_classes=FLAGS.synthetic_classes)
    """
    types = types or (ValueError,)
    try:
        yield
    except app.UsageError:
        raise
    except types as e:
        raise UsageError(f"{prefix}{e}") from None


def _caller_module(depth: int = 2) -> str:
    """__name__ of the module that called the function calling this one."""
    return sys._getframe(depth).f_globals.get("__name__", "")


def define_flag(kind: str, name: str, default, help_text: str, **kw) -> None:
    """flags.DEFINE_<kind>(name, default, help_text, **kw) unless --name is defined already.

    kind: 'string', 'integer', 'float', 'bool', 'enum', 'list', ...; kw: e.g. enum_values,
    lower_bound. An existing flag keeps its first definition (default, type, help) and becomes
    a key flag of this job too (its --help lists it); this job's default is recorded, and
    check_args applies it when the flag was not set.
    """
    _JOB_DEFAULTS.setdefault(_caller_module(), {})[name] = default
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name=name, default=default, help=help_text, **kw)
    else:
        flags.declare_key_flag(name)


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
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    missing = [f"--{name}" for name in required if not FLAGS[name].value]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise UsageError(f"{' and '.join(missing)} {verb} required")


def _command_line_flags(argv: list[str] | None) -> list[str]:
    """The flag arguments of argv (default sys.argv) without the program name, flagfiles
    expanded in place (absl's own expansion), up to '--'."""
    args = list(sys.argv if argv is None else argv)[1:]
    try:
        args = FLAGS.read_flags_from_files(args, force_gnu=True)
    except (flags.Error, OSError):
        pass
    if "--" in args:
        args = args[:args.index("--")]
    return args


def last_given(*names: str, argv: list[str] | None = None) -> str | None:
    """Which of the flags `names` (without dashes) comes last on the command line (argv,
    default sys.argv, with --flagfile contents expanded where they stand), or None when none
    is there. --noNAME counts for a boolean NAME.

    E.g. with `--flagfile=preset.flags --steps=30` where preset.flags sets --epochs=150,
    last_given("steps", "epochs") == "steps".
    """
    wanted = set(names)
    last = None
    for arg in _command_line_flags(argv):
        if not arg.startswith("-") or arg in ("-", "--"):
            continue
        key = arg.lstrip("-").split("=", 1)[0]
        if key in wanted:
            last = key
        elif key.startswith("no") and key[2:] in wanted and key[2:] in FLAGS \
                and FLAGS[key[2:]].boolean:
            last = key[2:]
    return last


def keep_last_given(*names: str, argv: list[str] | None = None) -> str | None:
    """For flags that exclude each other (e.g. --steps / --epochs): when more than one of
    `names` is set (not its default), keeps the one given last on the command line
    (last_given) and resets the others to the calling job's defaults, logging what it did.
    Returns the flag kept, or None (at most one was set, or none of them is on the command
    line: then the caller's own check reports the conflict)."""
    job_defaults = _JOB_DEFAULTS.get(_caller_module(), {})
    set_ = [n for n in names if FLAGS[n].value != job_defaults.get(n, FLAGS[n].default)]
    if len(set_) < 2:
        return None
    winner = last_given(*names, argv=argv)
    if winner is None or winner not in set_:
        return None
    for name in set_:
        if name != winner:
            logging.info("--%s=%s given after --%s=%s: --%s is ignored", winner,
                         FLAGS[winner].value, name, FLAGS[name].value, name)
            FLAGS[name].value = job_defaults.get(name, FLAGS[name].default)
    return winner


def _job_module(main):
    return sys.modules.get(getattr(main, "__module__", None) or "__main__",
                           sys.modules["__main__"])


def program_name(module=None) -> str:
    """How the user started the job: 'tfvid-train' (console script) or
    'python -m pipelines.train'."""
    base = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if base.startswith("tfvid-"):
        return base.removesuffix(".exe")
    module = module if module is not None else sys.modules["__main__"]
    spec = getattr(module, "__spec__", None)
    name = getattr(spec, "name", None) or getattr(module, "__name__", "")
    if name and name != "__main__":
        return f"python -m {name}"
    return base or "tfvid"


def bench_subdir(name: str) -> str:
    """`<--bench_dir>/<name>`: where one benchmark keeps its data (pipelines/benchmark.py's
    --bench_dir, default benchmark_data)."""
    value = FLAGS["bench_dir"].value if "bench_dir" in FLAGS else "benchmark_data"
    return os.path.join(value, name)


def job_error(job: str, err: BaseException) -> SystemExit:
    """SystemExit printing '<prog>: error: <job> failed: <message>' on one line (exit status 1,
    no traceback): for errors that come from what the user gave (flags, files)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > 2000:   # converter / TF errors can be long
        text = text[:2000] + "..."
    return SystemExit(f"{program_name()}: error: {job} failed: {text}")


def _usage_exit(prog: str, message, exitcode: int = 1) -> None:
    text = str(message).strip() or "bad command line"
    if "\n" in text:
        first, rest = text.split("\n", 1)
        text = first + "\n" + "\n".join("  " + line for line in rest.splitlines())
    sys.stdout.flush()
    sys.stderr.write(f"{prog}: error: {text}\nRun '{prog} --help' to see the flags.\n")
    sys.stderr.flush()
    sys.exit(exitcode)


def _adopt_help(module) -> None:
    """Under a console script, __main__ is the script, not the job: give absl's --help the
    job's docstring and list the job's flags as the main module's key flags."""
    main_module = sys.modules.get("__main__")
    if main_module is None or main_module is module:
        return
    if module.__doc__ and not getattr(main_module, "__doc__", None):
        main_module.__doc__ = module.__doc__.replace("%", "%%")
    main_name = sys.argv[0] if sys.argv else "__main__"
    for flag in FLAGS.get_key_flags_for_module(module.__name__):
        FLAGS.register_key_flag_for_module(main_name, flag)


def run_job(main, argv: list[str] | None = None) -> None:
    """app.run(main) for a job: the job's run() is `run_job(main)`.

    --help lists the job's docstring and flags also under its console script; a usage error
    (a flag that does not parse, app.UsageError or UsageError from main) prints
    '<prog>: error: <message>' and a pointer to --help instead of the whole help; main's
    return value is the exit status only when it is an int (jobs may return their summary).
    """
    module = _job_module(main)
    prog = program_name(module)
    _adopt_help(module)

    def parse(args):
        try:
            return FLAGS(args)
        except flags.Error as e:
            _usage_exit(prog, e)

    def job_main(args):
        try:
            status = main(args)
        except app.UsageError as e:
            _usage_exit(prog, e, getattr(e, "exitcode", 1) or 1)
        return status if type(status) is int else None

    app.run(job_main, argv=argv, flags_parser=parse)


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
    """A decoded-frame size flag -> (frame_size, short_side) for tfvid.prep.video.read_video:
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
    raise UsageError(f"--{flag}: expected WIDTHxHEIGHT (e.g. 340x256), shortN (e.g. "
                         f"short256) or 'original', got {text!r}")


# ------------------------------------------------------------------ running other jobs
def _python_name() -> str:
    """The interpreter as a user would type it: sys.executable's name (python, python3.11...)
    when it is a plain word, else 'python'."""
    name = os.path.basename(sys.executable or "")
    return name if re.fullmatch(r"python[\w.]*", name) else "python"


def job_command(job: str, **flag_values) -> str:
    """The shell command of a job, ready to paste: `python -m pipelines.<job> --k=v ...`."""
    args = ["-m", f"pipelines.{job}"] + [f"--{k}={v}" for k, v in flag_values.items()]
    return " ".join([_python_name()] + [shlex.quote(a) for a in args])


def run_job_command(job: str, caller: str = "tfvid", **flag_values) -> None:
    """Runs `python -m pipelines.<job> --k=v ...` in a subprocess (a job never imports
    another), printing the command first; SystemExit naming the step when it fails."""
    print("$ " + job_command(job, **flag_values), flush=True)
    cmd = [sys.executable, "-m", f"pipelines.{job}"]
    cmd += [f"--{k}={v}" for k, v in flag_values.items()]
    r = subprocess.run(cmd)
    if r.returncode:
        raise SystemExit(f"{caller}: step {job} failed (exit status {r.returncode}); its "
                         f"output is above")
