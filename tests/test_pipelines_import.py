"""The jobs of pipelines/ share one absl flag namespace: every job imports beside the others in
any order, and each one's --help lists its own flags."""
import glob
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# job -> a flag only that job defines (its --help must list it)
JOBS = {"prepare_data": "--num_shards", "train": "--lr_schedule", "evaluate": "--view_batch",
        "fuse": "--scores", "export": "--export_base", "predict": "--export_dir",
        "convert_tflite": "--parity_samples", "dynamic_images": "--methods",
        "quickstart": "--workdir", "export_four_stream": "--dof_dir",
        "benchmark": "--timed_batches", "extract_flow": "--overwrite",
        "data_service": "--worker_address",
        "extract_features": "--feature_name"}


def _run(args, timeout=120):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_every_job_module_is_listed():
    names = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "pipelines", "*.py"))}
    jobs = {n for n in names - {"__init__", "common"}
            if not n.startswith("bench_")}
    assert jobs == set(JOBS)


@pytest.mark.parametrize("order", [sorted(JOBS), sorted(JOBS, reverse=True)],
                         ids=["alphabetical", "reversed"])
def test_all_jobs_import_in_one_process(order):
    """prepare_data and train both define --progress; evaluate, export and train define
    --num_segments with different defaults (3 for train, None for the others)."""
    script = textwrap.dedent(f"""
        import importlib
        from absl import flags
        from pipelines.common import flag_value
        for job in {order!r}:
            importlib.import_module("pipelines." + job)
        FLAGS = flags.FLAGS
        missing = [f for f in {sorted(JOBS.values())!r} if f[2:] not in FLAGS]
        assert not missing, missing
        FLAGS(["x", "--progress=false"])
        assert FLAGS.progress is False
        FLAGS.unparse_flags()
        FLAGS(["x"])
        first = "train" if {order!r}.index("train") < {order!r}.index("evaluate") else "other"
        from pipelines.common import _JOB_DEFAULTS
        train_default = _JOB_DEFAULTS["pipelines.train"]["num_segments"]
        assert FLAGS["num_segments"].default == (train_default if first == "train" else None), first
        assert flag_value("num_segments", None) is None      # each job's own default
        assert flag_value("num_segments", 3) == 3
        FLAGS.unparse_flags()
        FLAGS(["x", "--num_segments=7"])
        assert flag_value("num_segments", None) == 7
        print("imported", *{order!r})
    """)
    r = _run(["-c", script])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "imported " + " ".join(order) in r.stdout


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_help_lists_its_flags(job):
    r = _run(["-m", f"pipelines.{job}", "--help"])
    # absl ends --help with exit status 1 (app.HelpFlag), before main runs.
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"pipelines/{job}.py:" in r.stdout     # flags are listed under the job module
    assert JOBS[job] in r.stdout
    r = _run(["-m", f"pipelines.{job}", "--only_check_args"])   # parse the flags, exit 0
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]


def test_each_job_runs_with_its_own_defaults_after_other_jobs_were_imported():
    """evaluate and export define --batch_size/--num_segments/--input_size first (defaults 1,
    None, None); train's main must still see its own defaults (256, its num_segments, 224)."""
    code = ("import pipelines.evaluate, pipelines.export, pipelines.train as t\n"
            "from absl import app, flags\n"
            "F = flags.FLAGS\n"
            "F(['train'])\n"
            "try:\n"
            "    t.main(['train'])\n"
            "except app.UsageError as e:\n"
            "    print('usage:', e)\n"
            "from pipelines.common import _JOB_DEFAULTS\n"
            "d = _JOB_DEFAULTS['pipelines.train']\n"
            "print(F.batch_size, F.num_segments, F.input_size)\n"
            "print(d['batch_size'], d['num_segments'], d['input_size'])\n")
    r = _run(["-c", code])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage: --model_dir" in r.stdout
    seen, train_defaults = r.stdout.strip().splitlines()[-2:]
    assert seen == train_defaults and seen.startswith("256 ") and seen.endswith(" 224")


@pytest.mark.parametrize("text,expected", [
    ("340x256", ((340, 256), None)), ("short256", (None, 256)), ("original", (None, None)),
    ("Source", (None, None)), (" 96x72 ", ((96, 72), None))])
def test_parse_frame_size(text, expected):
    from pipelines.common import parse_frame_size
    assert parse_frame_size(text) == expected


@pytest.mark.parametrize("text", ["340", "0x256", "short0", "big", ""])
def test_parse_frame_size_errors_name_the_flag(text):
    from absl import app

    from pipelines.common import parse_frame_size
    with pytest.raises(app.UsageError, match="--frame_size: expected WIDTHxHEIGHT"):
        parse_frame_size(text)
