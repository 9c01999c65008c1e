"""The first hour of a new user: installed commands show their help, usage errors are one line,
a flag given after a preset wins, logs stay small off a terminal, TensorFlow stays quiet."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# job -> a flag only that job defines (its --help must list it)
JOBS = {"prepare_data": "--num_shards", "extract_flow": "--overwrite",
        "data_service": "--worker_address",
        "extract_features": "--feature_name", "train": "--lr_schedule",
        "evaluate": "--view_batch", "fuse": "--scores", "export": "--export_base",
        "predict": "--export_dir", "export_four_stream": "--dof_dir",
        "convert_tflite": "--parity_samples", "dynamic_images": "--methods",
        "benchmark": "--timed_batches", "quickstart": "--workdir"}
NOISE = ("cuInit", "oneDNN", "absl::InitializeLog", "cuda drivers", "cpu_feature_guard")


def _env(**extra):
    """The environment of a new user: no TensorFlow / tqdm settings of the test session."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFVID_QUIET_TF", "TFVID_PROGRESS_INTERVAL")
           and not k.startswith("TQDM_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run(args, cwd=ROOT, timeout=180, **env):
    return subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _script(job):
    path = shutil.which(f"tfvid-{job.replace('_', '-')}")
    if path is None:
        pytest.skip(f"console script tfvid-{job} not installed (pip install -e .)")
    return path


def _doc_first_line(job):
    import ast
    with open(os.path.join(ROOT, "pipelines", f"{job}.py"), encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    return doc.splitlines()[0]


# ---------------------------------------------------------------------------------- --help

@pytest.mark.parametrize("job", sorted(JOBS))
def test_console_script_help_shows_description_and_flags(job, tmp_path):
    """`tfvid-<job> --help` lists what `python -m pipelines.<job> --help` lists (absl lists the
    key flags of __main__, which is the console script: pipelines.common.run_job adopts the
    job's docstring and flags)."""
    r = _run([_script(job), "--help"], cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]        # absl's --help exit status
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert _doc_first_line(job) in r.stdout, r.stdout[:500]
    assert JOBS[job] in r.stdout, r.stdout
    assert "USAGE:" not in r.stdout


@pytest.mark.parametrize("form", ["console", "module"])
@pytest.mark.parametrize("job", ["fuse", "extract_flow", "dynamic_images", "prepare_data"])
def test_help_examples_keep_their_line_breaks(job, form, tmp_path):
    cmd = [_script(job)] if form == "console" else [sys.executable, "-m", f"pipelines.{job}"]
    out = _run(cmd + ["--help"], cwd=tmp_path if form == "console" else ROOT).stdout
    examples = [line for line in out.splitlines() if "python -m pipelines." in line]
    assert examples, out[:800]
    for line in out.splitlines():
        assert not re.search(r"\S {5,}--\w", line), f"reflowed example: {line!r}"
    if job in ("fuse", "extract_flow"):    # a continued example: '\' then the next line
        assert re.search(r" \\\n {8}--\w", out), out[:800]


# ------------------------------------------------------------------------- usage errors

def _one_line_error(r, prog):
    # absl's own log lines (e.g. "I1125 ... --epochs is ignored") may precede the error
    lines = [x for x in r.stderr.strip().splitlines() if not re.match(r"[IWE]\d{4} ", x)]
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "flags:" not in r.stdout + r.stderr          # no help dump
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert "--help" in lines[1]
    return lines[0][len(f"{prog}: error: "):]


def test_usage_errors_are_one_line(tmp_path):
    fuse = _script("fuse")
    r = _run([fuse, "--scores=a.npz"], cwd=tmp_path)
    assert _one_line_error(r, "tfvid-fuse") == "--output_dir is required"
    r = _run([fuse, "--nosuchflag=1"], cwd=tmp_path)
    assert "nosuchflag" in _one_line_error(r, "tfvid-fuse")
    r = _run([_script("quickstart"), "--train_steps=x"], cwd=tmp_path)
    assert "--train_steps" in _one_line_error(r, "tfvid-quickstart")
    r = _run([sys.executable, "-m", "pipelines.fuse", "--scores=a.npz", "extra"])
    assert "unexpected arguments: extra" in _one_line_error(r, "python -m pipelines.fuse")


def test_fuse_errors_are_usage_errors(tmp_path):
    import numpy as np

    from tfvid.eval.metrics import Scores, save_scores
    a = save_scores(str(tmp_path / "a.npz"), Scores(["v0", "v1"], [0, 1], np.eye(2), ["x", "y"]))
    b = save_scores(str(tmp_path / "b.npz"), Scores(["v1", "v2"], [1, 0], np.eye(2), ["x", "y"]))
    (tmp_path / "junk.npz").write_text("not scores")
    fuse, out = _script("fuse"), f"--output_dir={tmp_path / 'out'}"
    msg = _one_line_error(_run([fuse, f"--scores={a},{b}", out]), "tfvid-fuse")
    assert "lacks 1 video ids" in msg and "'v2'" in msg
    msg = _one_line_error(_run([fuse, f"--scores={a},{b}", "--weights=1,2,3", out]), "tfvid-fuse")
    assert msg == "--weights has 3 values for 2 --scores files"
    msg = _one_line_error(_run([fuse, f"--scores={a},{tmp_path / 'junk.npz'}", out]), "tfvid-fuse")
    assert "is not a scores .npz" in msg
    msg = _one_line_error(_run([fuse, f"--scores={a},{tmp_path / 'no.npz'}", out]), "tfvid-fuse")
    assert "no such file" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("job,args", [
    ("quickstart", ["--num_classes=4"]),
    ("prepare_data", ["--synthetic", "--synthetic_classes=4"]),
])
def test_bad_synthetic_class_count_is_a_usage_error(job, args, tmp_path):
    args = args + [f"--output_dir={tmp_path / 'out'}"] if job == "prepare_data" else \
        args + [f"--workdir={tmp_path / 'qs'}"]
    msg = _one_line_error(_run([_script(job), *args], cwd=tmp_path),
                          f"tfvid-{job.replace('_', '-')}")
    assert "Grow/Shrink" in msg and "2, 3, 5, 6, 8, 9, 10, 12" in msg


def test_usage_errors_helper():
    from absl import app

    from pipelines.common import UsageError, usage_errors
    with pytest.raises(UsageError, match="^--x: bad$"):
        with usage_errors(prefix="--x: "):
            raise ValueError("bad")
    assert issubclass(UsageError, app.UsageError) and issubclass(UsageError, ValueError)
    with pytest.raises(KeyError):                      # other types pass through
        with usage_errors(ValueError):
            raise KeyError("k")


# --------------------------------------------------------------- a flag after a preset wins

def test_last_given_expands_flagfiles(tmp_path):
    from pipelines.common import last_given
    preset = tmp_path / "preset.flags"
    preset.write_text("# a preset\n--epochs=150\n--lr=0.01\n")
    argv = ["tfvid-train", f"--flagfile={preset}", "--steps=30"]
    assert last_given("steps", "epochs", argv=argv) == "steps"
    argv = ["tfvid-train", "--steps=30", f"--flagfile={preset}"]
    assert last_given("steps", "epochs", argv=argv) == "epochs"
    argv = ["tfvid-train", f"--flagfile={preset}", "--epochs", "3"]
    assert last_given("steps", "epochs", argv=argv) == "epochs"
    assert last_given("steps", argv=["x", "--lr=1"]) is None
    assert last_given("steps", argv=["x", "--", "--steps=3"]) is None


def test_keep_last_given_resets_the_others(tmp_path):
    from absl import flags

    from pipelines.common import define_flag, keep_last_given
    define_flag("integer", "cli_test_steps", 0, "test flag")
    define_flag("float", "cli_test_epochs", 0, "test flag")
    preset = tmp_path / "preset.flags"
    preset.write_text("--cli_test_epochs=150\n")
    FLAGS = flags.FLAGS
    for argv, kept, steps, epochs in [
            (["x", f"--flagfile={preset}", "--cli_test_steps=30"], "cli_test_steps", 30, 0),
            (["x", "--cli_test_steps=30", f"--flagfile={preset}"], "cli_test_epochs", 0, 150),
            (["x", f"--flagfile={preset}"], None, 0, 150)]:
        FLAGS(argv)
        try:
            assert keep_last_given("cli_test_steps", "cli_test_epochs", argv=argv) == kept
            assert (FLAGS.cli_test_steps, FLAGS.cli_test_epochs) == (steps, epochs)
        finally:
            FLAGS.unparse_flags()


def test_train_preset_can_be_shortened(tmp_path):
    """`--flagfile=<preset with --epochs> --steps=30`: --steps wins (pipelines/train.py calls
    keep_last_given("steps", "epochs")); the job then stops at the next missing thing."""
    preset = os.path.join(ROOT, "pipelines", "configs", "dynamic_image_di_ucf101.flags")
    r = _run([sys.executable, "-m", "pipelines.train", f"--flagfile={preset}", "--steps=30",
              f"--model_dir={tmp_path / 'run'}"])
    assert "exactly one of --steps and --epochs" not in r.stderr, r.stderr[-2000:]
    _one_line_error(r, "python -m pipelines.train")     # e.g. --train_data is required


# --------------------------------------------------------------------- logs off a terminal

PROGRESS = textwrap.dedent("""
    import sys, time
    import pipelines  # noqa: F401  (what every job imports first)
    from tqdm import tqdm
    from tfvid.progress import progress_bar
    make = progress_bar if sys.argv[1] == "progress_bar" else tqdm
    with make(total=300, unit="step", desc="train", dynamic_ncols=True) as bar:
        for _ in range(300):
            time.sleep(0.005)
            bar.update(1)
            if sys.argv[1] == "progress_bar":   # as the training loop does at every step
                bar.set_postfix(loss="0.123")
""")


@pytest.mark.parametrize("kind", ["progress_bar", "tqdm"])
def test_progress_in_a_log_file_stays_small(kind, tmp_path):
    """A bar that is not on a terminal: one line at the start and one at the end, not a redraw
    every 0.1 s (progress_bar; plain tqdm gets TQDM_MININTERVAL=30 from importing pipelines)."""
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", PROGRESS, kind], cwd=ROOT, env=_env(),
                       stderr=f, check=True, timeout=120)
    text = log.read_text()
    assert "300/300" in text
    assert os.path.getsize(log) < 600, text
    if kind == "progress_bar":
        assert "\r" not in text and len(text.splitlines()) == 2, text
    # the same loop as before (a 0.1 s refresh) writes several times more
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", PROGRESS, "tqdm"], cwd=ROOT,
                       env=_env(TQDM_MININTERVAL="0.1"), stderr=f, check=True, timeout=120)
    assert os.path.getsize(log) > 3 * len(text)


def test_progress_bar_on_a_terminal_is_plain_tqdm():
    import io

    from tfvid.progress import progress_bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = progress_bar(total=3, file=tty, mininterval=0.1)
    assert bar.mininterval == 0.1 and bar.fp is not None
    bar.close()
    log = io.StringIO()
    bar = progress_bar(total=3, file=log, dynamic_ncols=True)
    assert bar.mininterval >= 30 and not bar.dynamic_ncols
    bar.update(3)
    bar.close()
    assert log.getvalue().count("\n") == 2 and "\r" not in log.getvalue()


# ------------------------------------------------------------------ TensorFlow stays quiet

def test_tensorflow_is_quiet_in_jobs():
    code = ("import pipelines, tensorflow as tf\n"
            "tf.get_logger().info('tf-info-line')\n"
            "tf.get_logger().warning('tf-warning-line')\n"
            "print(int(tf.reduce_sum(tf.ones(3))))\n")
    r = _run([sys.executable, "-c", code])
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr[-2000:]
    for noise in NOISE + ("tf-info-line",):
        assert noise not in r.stderr, r.stderr
    assert "tf-warning-line" in r.stderr                 # warnings still show


def test_tensorflow_logs_what_the_user_asks_for():
    code = ("import os, sys, pipelines\n"
            "assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '0'\n"
            "assert 'TFVID_QUIET_TF' not in os.environ\n"
            "assert not any(type(f).__name__ == '_QuietTensorFlowImport' for f in sys.meta_path)\n"
            "print('ok')\n")
    r = _run([sys.executable, "-c", code], TF_CPP_MIN_LOG_LEVEL="0")
    assert r.stdout.strip() == "ok", r.stderr[-2000:]


# ------------------------------------------------------------------ a job end to end, quietly

def test_dynamic_images_job_output_is_a_summary(tmp_path):
    from tfvid.prep.synthetic import render_clip
    from tfvid.prep.video import write_video
    video = write_video(str(tmp_path / "move.mp4"),
                        render_clip("MoveRight", num_frames=22, frame_size=(64, 48), seed=2), fps=25)
    r = _run([_script("dynamic_images"), f"--video={video}", "--output_dir=out",
              "--frame_size=64x48"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for noise in NOISE:
        assert noise not in r.stderr, r.stderr
    assert "10/10" in r.stderr and "\r" not in r.stderr          # progress, one line per update
    lines = r.stdout.strip().splitlines()
    assert len(lines) <= 8, r.stdout                              # not 10 PNG paths
    assert any("contact sheet: out/move_contact.png" in line for line in lines), r.stdout
    assert any("8 window PNG(s)" in line for line in lines), r.stdout


def test_quickstart_prints_pasteable_commands():
    from pipelines.common import job_command
    cmd = job_command("prepare_data", videos_dir="/tmp/a b", num_shards=4)
    words = shlex.split(cmd)
    assert re.fullmatch(r"python[\w.]*", words[0]), cmd
    assert words[1:] == ["-m", "pipelines.prepare_data", "--videos_dir=/tmp/a b", "--num_shards=4"]
