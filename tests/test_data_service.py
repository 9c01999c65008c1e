"""tf.data service (tfvid.data.service, pipelines/data_service.py): a dispatcher and two workers
on localhost give, over one epoch, the same videos and the same clips as the local pipeline;
the job starts both roles, and its flags are checked."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tfvid.data import service

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ addresses
@pytest.mark.parametrize("text, expected", [
    ("grpc://dispatcher:5050", ("grpc", "dispatcher:5050")),
    ("dispatcher.example.com:5050", ("grpc", "dispatcher.example.com:5050")),
    (" GRPC://10.0.0.7:1 ", ("grpc", "10.0.0.7:1")),
    ("grpc://[::1]:5050", ("grpc", "[::1]:5050")),
])
def test_parse_address(text, expected):
    assert service.parse_address(text) == expected
    assert service.service_target(text) == f"{expected[0]}://{expected[1]}"


@pytest.mark.parametrize("text, words", [
    ("", "grpc://HOST:PORT"), ("dispatcher", "grpc://HOST:PORT"),
    ("grpc://dispatcher", "grpc://HOST:PORT"), ("http://dispatcher:5050", "'http'"),
    ("dispatcher:70000", "1-65535"), ("dispatcher:0", "1-65535"),
    ("grpc://host:5050/path", "grpc://HOST:PORT"), ("host:port", "grpc://HOST:PORT"),
])
def test_parse_address_errors_name_the_flag_and_value(text, words):
    with pytest.raises(ValueError) as e:
        service.parse_address(text, "data_service")
    assert f"--data_service={text!r}" in str(e.value) and words in str(e.value)


def test_server_argument_errors():
    with pytest.raises(ValueError, match="work_dir"):
        service.start_dispatcher(0, fault_tolerant=True)
    with pytest.raises(ValueError, match="0-65535"):
        service.start_dispatcher(-1)
    with pytest.raises(ValueError, match="--dispatcher="):
        service.start_worker("http://localhost:5050", 0)
    with pytest.raises(ValueError, match="worker_address"):
        service.start_worker("localhost:5050", 0, worker_address="no-port")
    with pytest.raises(ConnectionError, match="no tf.data service dispatcher"):
        service.check_dispatcher(f"localhost:{_free_port()}", timeout=0)
    import tensorflow as tf     # TensorFlow would retry registering the dataset for minutes
    with pytest.raises(ConnectionError, match=r"--data_service='grpc://localhost:\d+'"):
        service.distribute(tf.data.Dataset.range(3), f"grpc://localhost:{_free_port()}", wait=0)


# -------------------------------------------------------------------- in-process service
@pytest.fixture(scope="module")
def cluster():
    """A dispatcher and two workers in this process -> the dispatcher's 'grpc://localhost:P'."""
    dispatcher = service.start_dispatcher(0)
    address = f"localhost:{service.bound_port(dispatcher)}"
    workers = [service.start_worker(address, 0) for _ in range(2)]
    assert all(service.bound_port(w) > 0 for w in workers)
    yield f"grpc://{address}"
    for server in workers + [dispatcher]:
        server.stop()


def _served(ds) -> bool:
    """True when `ds` reads from a tf.data service (a DataService dataset in its chain)."""
    while ds is not None:
        if "DataService" in type(ds).__name__:
            return True
        ds = getattr(ds, "_input_dataset", None)
    return False


def _by_id(ds):
    """{video id: [clip, ...]} of a build_dataset stream (a video may come more than once)."""
    out = {}
    for batch in ds.as_numpy_iterator():
        assert batch["valid"].all(), batch["problem"]
        for vid, clip in zip(batch["id"], batch["clip"]):
            out.setdefault(vid.decode(), []).append(clip)
    return out


@pytest.mark.parametrize("pipelines", [1, 2])
def test_service_gives_the_local_videos_and_clips(cluster, tiny_records, pipelines):
    """One training epoch (repeat=False) read through a dispatcher and two workers, by one
    input pipeline or by two (two trainers under MultiWorkerMirroredStrategy: each its half
    of the videos, in a job of its own): the same multiset of video ids as the local pipeline
    and bit-identical clips for the same ids (random segment offsets, crop and flip come from
    (seed, video id, epoch), not from where a video lands on which worker)."""
    import tensorflow as tf
    from tfvid.data.pipeline import build_dataset
    from tfvid.data.sampling import TSNSampler
    kw = dict(sampler=TSNSampler(3), mode="train", input_size=32, repeat=False, seed=7,
              kernels=False)
    local = build_dataset(tiny_records, batch_size=1, **kw)
    assert not _served(local)
    local = _by_id(local)
    remote = {}
    for pipe in range(pipelines):
        ctx = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipe,
                                         num_replicas_in_sync=pipelines)
        ds = build_dataset(tiny_records, batch_size=pipelines, input_context=ctx,
                           data_service=cluster, **kw)
        assert _served(ds)
        for vid, clips in _by_id(ds).items():
            remote.setdefault(vid, []).extend(clips)
    assert len(local) == 4 and all(len(v) == 1 for v in local.values())
    assert sorted((k, len(v)) for k, v in remote.items()) == \
        sorted((k, len(v)) for k, v in local.items())
    for vid, clips in local.items():
        np.testing.assert_array_equal(remote[vid][0], clips[0], err_msg=vid)


def test_distribute_shares_one_job_between_consumers(cluster):
    """Two iterators with the same job_name split one job (every element once over both);
    without a job_name each gets the whole dataset."""
    import tensorflow as tf
    ds = tf.data.Dataset.range(40)
    assert _served(service.distribute(ds, cluster))
    own = [list(service.distribute(ds, cluster).as_numpy_iterator()) for _ in range(2)]
    assert [sorted(o) for o in own] == [list(range(40))] * 2
    a = iter(service.distribute(ds, cluster, job_name="shared"))
    b = iter(service.distribute(ds, cluster, job_name="shared"))
    got = [int(x) for x in a] + [int(x) for x in b]
    assert sorted(got) == list(range(40))
    with pytest.raises(ValueError, match="job_name"):
        service.distribute(ds, cluster, job_name=" ")


# ------------------------------------------------------------------------------------ job
def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _job(*args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.data_service", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(proc, text, timeout=90):
    """Reads proc's output until a line holds `text` -> the lines so far (fails on exit)."""
    lines, found, done = [], threading.Event(), threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                found.set()
        done.set()
    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.is_set() and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found.is_set(), f"no {text!r} from {proc.args}:\n" + "".join(lines)[-3000:]
    return lines


def test_job_starts_dispatcher_and_worker():
    """`--role=dispatcher` listens on its port and a `--role=worker` joins it: a dataset
    distributed to the dispatcher comes back from the worker. Both are then stopped."""
    port = _free_port()
    dispatcher = _job("--role=dispatcher", f"--port={port}", "--nokernels")
    worker = _job("--role=worker", f"--dispatcher=localhost:{port}", "--port=0",
                  "--worker_address=localhost:%port%", "--nokernels")
    try:
        log = _wait_for(dispatcher, "tf.data service dispatcher listening")
        assert any("--data_service=grpc://" in line and f":{port}" in line for line in log), log
        socket.create_connection(("localhost", port), timeout=5).close()
        _wait_for(worker, "tf.data service worker listening")
        import tensorflow as tf
        result = {}
        ds = service.distribute(tf.data.Dataset.range(6), f"grpc://localhost:{port}")
        reader = threading.Thread(
            target=lambda: result.update(out=sorted(int(x) for x in ds)), daemon=True)
        reader.start()
        reader.join(60)
        assert result.get("out") == list(range(6)), "the worker did not serve the dataset"
    finally:
        for proc in (worker, dispatcher):
            proc.send_signal(signal.SIGTERM)
        for proc in (worker, dispatcher):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_job_help_and_usage_errors():
    cases = {
        ("--help",): None,
        (): "--role is required",
        ("--role=trainer",): "flag --role=trainer: value should be one of <dispatcher|worker>",
        ("--role=worker",): "--role=worker needs --dispatcher=HOST:PORT",
        ("--role=worker", "--dispatcher=http://host:5050"): "speaks grpc, not 'http'",
        ("--role=worker", "--dispatcher=host"): "--dispatcher='host': expected grpc://HOST:PORT",
        ("--role=worker", f"--dispatcher=localhost:{_free_port()}", "--wait_for_dispatcher=0"):
            "no tf.data service dispatcher answers",
        ("--role=dispatcher", "--fault_tolerant"): "--fault_tolerant needs --work_dir",
        ("--role=dispatcher", "--port=70000"): "--port must be in 0-65535",
    }
    procs = {args: _job(*args) for args in cases}
    for args, message in cases.items():
        out = procs[args].communicate(timeout=120)[0]
        assert "Traceback" not in out, (args, out[-3000:])
        if message is None:          # --help: absl exits with status 1
            assert "--role: <dispatcher|worker>" in out and "--dispatcher" in out, out
            assert "python -m pipelines.data_service --role=worker" in out, out
            continue
        assert procs[args].returncode == 1, (args, out[-3000:])
        first = next((line for line in out.splitlines() if " error: " in line), "")
        assert first.startswith("python -m pipelines.data_service: error: "), (args, out)
        assert message in first, (args, out)
