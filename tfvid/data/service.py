"""tf.data service: the input pipeline runs on other processes or machines (docs/architecture.md).

    parse_address('grpc://host:5050')        -> ('grpc', 'host:5050')
    distribute(dataset, 'grpc://host:5050')  the dataset, read from the service's workers
    start_dispatcher(port) / start_worker('host:5050', port) / wait_forever(server)
    bound_port(server), check_dispatcher(address)

A dispatcher (one per cluster) hands out the work; workers (any number, on the machines that
hold the data) run the dataset graph the trainer registers and send it the finished batches
over gRPC. pipelines/data_service.py starts both roles; build_dataset(..., data_service=ADDRESS)
and `train --data_service=grpc://HOST:PORT` use `distribute`.

Dynamic sharding (ShardingPolicy.DYNAMIC). The dispatcher cuts the dataset's *source* into
splits and deals them out to the workers on request, each split to one worker, so every element
of an epoch is produced once, by whichever worker is free (a fast worker takes more splits; a
worker that joins late takes part). One split is one element of the source dataset: the
dataset at the bottom of the chain of one-input transformations (map, batch, filter, prefetch,
cache, repeat, shuffle, the outer dataset of flat_map/interleave). Sources that can be split:
Dataset.range, from_tensor_slices, file-name datasets (TFRecordDataset(list of files),
list_files). What that means for tfvid's record-position source (tfvid.data.source):

  - a split must be one video: the source is Dataset.range over stream positions, which a map
    turns into (epoch, row of the video table: shard path, record number, byte offset, or a
    raw-frame list line) by a stateless per-epoch permutation (index_shuffle). Not
    Dataset.range(epochs).flat_map(one epoch), whose splits are whole epochs (one worker would
    read an epoch alone);
  - zip/enumerate have several sources, each split on its own: an index zipped to the videos is
    paired with another worker's video, so positions mean nothing on the service and a video's
    random choices come from (seed, video id, epoch), never from its position;
  - what runs inside a map (reading one record by its byte offset with a one-record
    TFRecordDataset, decoding, augmenting) is not split: it runs where the split is processed;
  - GZIP shards have no random access (they could only be split by shard): build_dataset
    refuses them with a data service;
  - the workers open the file paths the trainer named when it built the dataset: the same paths
    must exist on every worker (shared or identical mounts, or gs:// paths);
  - a graph that uses tfvid.data.kernels' fused ops needs the library loaded on the workers,
    which run it, and on the dispatcher, which builds it to split its source (otherwise "Op
    type not registered 'TfvidNormalizeU8'"); pipelines/data_service.py loads it in both roles.

Elements come back in the order the workers finish them (no global order, no exact resume: a
tf.data service iterator is not checkpointed); the visitation guarantee is at most once (the
splits a lost worker was processing are lost for that epoch). A dispatcher without workers
makes the trainer wait until one joins.

Several trainers: without a job_name every iterator gets a job of its own, so each trainer
registers its own share of the videos (train under MultiWorkerMirroredStrategy: build_dataset's
input_context gives each trainer every N-th video; all workers serve all jobs; every video once
per epoch over all trainers). Alternatively all trainers register the *same* dataset with the
same job_name and share one job, each element going to whichever asks first. The dispatcher
does not compare datasets: a different dataset under a job_name in use silently reads that
job's elements.
"""
from __future__ import annotations

import re
import socket
import threading
import time

PROTOCOL = "grpc"
_ADDRESS = re.compile(r"(?:(?P<proto>[A-Za-z][\w+.-]*)://)?"
                      r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+):(?P<port>\d+)")


def _service():
    """tf.data.experimental.service, imported on first use (parse_address and
    check_dispatcher stay free of TensorFlow, so a job can check its flags first)."""
    import tensorflow as tf
    return tf.data.experimental.service


def parse_address(text: str, flag: str = "data_service") -> tuple[str, str]:
    """'grpc://host:port' or 'host:port' -> ('grpc', 'host:port').

    host: a name, an IPv4 address or a bracketed IPv6 address ('[::1]:5050'); port 1-65535.
    ValueError naming --`flag` and the value otherwise (another protocol, no port, a path).
    """
    value = (text or "").strip()
    m = _ADDRESS.fullmatch(value)
    if not m:
        raise ValueError(f"--{flag}={text!r}: expected grpc://HOST:PORT or HOST:PORT "
                         f"(e.g. grpc://dispatcher:5050)")
    proto = (m.group("proto") or PROTOCOL).lower()
    if proto != PROTOCOL:
        raise ValueError(f"--{flag}={text!r}: the tf.data service speaks grpc, not {proto!r} "
                         f"(use grpc://HOST:PORT)")
    port = int(m.group("port"))
    if not 0 < port < 65536:
        raise ValueError(f"--{flag}={text!r}: port {port} is not in 1-65535")
    return proto, f"{m.group('host')}:{port}"


def service_target(address: str, flag: str = "data_service") -> str:
    """'host:port' or 'grpc://host:port' -> 'grpc://host:port' (checked by parse_address)."""
    proto, addr = parse_address(address, flag)
    return f"{proto}://{addr}"


def distribute(dataset, address: str, job_name: str | None = None, *,
               wait: float | None = 60.0, max_outstanding_requests: int | None = None):
    """`dataset` produced by the tf.data service at `address` ('grpc://host:port' or
    'host:port') with dynamic sharding: the same element_spec, read from the workers.

    The dataset graph is registered with the dispatcher here, and TensorFlow retries that for
    minutes, silently, while no dispatcher answers: so first `check_dispatcher(address, wait)`
    waits up to `wait` seconds for one and raises ConnectionError naming --data_service
    (wait=None: no check). Its source must be splittable (module docstring). job_name:
    trainers giving the same name and the same dataset share one job (each element to one of
    them); None: this iterator's own job. ValueError for a bad address or an empty job_name.
    """
    import tensorflow as tf
    service = _service()
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"distribute: expected a tf.data.Dataset, got {type(dataset).__name__}")
    if job_name is not None and not str(job_name).strip():
        raise ValueError("distribute: job_name must be a non-empty string or None")
    if wait is not None:
        check_dispatcher(address, timeout=wait)
    return dataset.apply(service.distribute(
        processing_mode=service.ShardingPolicy.DYNAMIC, service=parse_address(address),
        job_name=job_name, max_outstanding_requests=max_outstanding_requests))


def check_dispatcher(address: str, timeout: float = 10.0, flag: str = "data_service") -> None:
    """Waits up to `timeout` seconds (retrying twice a second) for something to accept TCP
    connections at `address`; ConnectionError naming --`flag` if nothing does (a distributed
    dataset, or a worker, would otherwise wait for the dispatcher silently)."""
    _, addr = parse_address(address, flag)
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + max(float(timeout), 0.0)
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)),
                                     timeout=max(1.0, min(timeout, 10.0))).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConnectionError(
                    f"--{flag}={address!r}: no tf.data service dispatcher answers at {addr} "
                    f"after {timeout:g} s ({e}); start one with `python -m "
                    f"pipelines.data_service --role=dispatcher --port={port}`") from None
            time.sleep(0.5)


def _check_port(port, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"{what} port must be an integer in 0-65535 (0: any free port), "
                         f"got {port!r}")
    return port


def start_dispatcher(port: int = 0, work_dir: str | None = None,
                     fault_tolerant: bool = False):
    """A started tf.data service dispatcher on `port` (0: a free port; `bound_port` says which).

    work_dir: where it journals its state (registered datasets, jobs, workers), so a restarted
    dispatcher with the same work_dir takes up where it stopped; fault_tolerant (needs
    work_dir): write the journal before answering each request. Its address for trainers is
    'grpc://<this host>:<port>'.
    """
    _check_port(port, "dispatcher")
    if fault_tolerant and not work_dir:
        raise ValueError("start_dispatcher: fault_tolerant=True needs a work_dir (the journal)")
    service = _service()
    config = service.DispatcherConfig(port=port, protocol=PROTOCOL, work_dir=work_dir or None,
                                      fault_tolerant_mode=bool(fault_tolerant))
    return service.DispatchServer(config)


def start_worker(dispatcher_address: str, port: int = 0,
                 worker_address: str | None = None):
    """A started tf.data service worker on `port` (0: a free port) registered with the
    dispatcher at `dispatcher_address` ('host:port' or 'grpc://host:port').

    worker_address: the address the dispatcher gives trainers for this worker; '%port%' stands
    for the bound port. None: 'localhost:%port%' (one machine). On a cluster give a name the
    trainers resolve, e.g. 'worker3.example.com:%port%' (pipelines/data_service.py uses this
    host's name).
    """
    _check_port(port, "worker")
    _, dispatcher = parse_address(dispatcher_address, "dispatcher")
    if worker_address is not None and not re.fullmatch(r"\S+:(\d+|%port%)", worker_address):
        raise ValueError(f"worker_address must be HOST:PORT or HOST:%port%, got "
                         f"{worker_address!r}")
    service = _service()
    config = service.WorkerConfig(dispatcher_address=dispatcher, worker_address=worker_address,
                                  port=port, protocol=PROTOCOL)
    return service.WorkerServer(config)


def bound_port(server) -> int:
    """The port a started DispatchServer or WorkerServer listens on (the one picked for 0)."""
    inner = getattr(server, "_server", None)
    if inner is not None and hasattr(inner, "bound_port"):
        return int(inner.bound_port())
    return int(getattr(server, "target", "").rsplit(":", 1)[-1])


def wait_forever(server, poll: float = 0.5) -> None:
    """Blocks until the server stops (it serves until the process is killed).

    server.join() runs in a helper thread: a blocking join in the main thread would keep
    Python's signal handlers from running, so Ctrl-C would not stop the process. On
    KeyboardInterrupt the server is stopped and the interrupt re-raised."""
    thread = threading.Thread(target=server.join, name="tf.data service", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(poll)
    except KeyboardInterrupt:
        server.stop()
        raise
