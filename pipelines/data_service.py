"""Start a tf.data service dispatcher or worker: the input pipeline of train runs on them.

    python -m pipelines.data_service --role=dispatcher --port=5050 --work_dir=/shared/dispatcher
    python -m pipelines.data_service --role=worker --dispatcher=dispatcher-host:5050 --port=5051
    python -m pipelines.train --data_service=grpc://dispatcher-host:5050 ...

One dispatcher per cluster, any number of workers (start them on the machines that can read the
prepared data at the paths the trainers name: the workers read and decode the videos). The
trainers register their dataset with the dispatcher, which deals its videos out to the workers
(dynamic sharding, see tfvid.data.service); workers may join or leave while training runs.
The process serves until it is killed (Ctrl-C, SIGTERM). --port=0 picks a free port (logged).
Both roles load tfvid's fused input kernels (tfvid.data.kernels) when they build here: the
dispatcher builds the trainers' dataset graph to split its source, the workers run it, and a
graph that uses the fused ops fails with "Op type not registered 'TfvidNormalizeU8'" where the
library is not loaded (--nokernels: do not load it; then start the trainers with
TFVID_KERNELS=0).
"""
from __future__ import annotations

import re
import socket

from absl import flags, logging

from pipelines.common import UsageError, check_args, define_flag, run_job

FLAGS = flags.FLAGS
DEFAULT_PORTS = {"dispatcher": 5050, "worker": 5051}

define_flag("enum", "role", None, "dispatcher (one per cluster) or worker (one or more).",
            enum_values=["dispatcher", "worker"])
define_flag("integer", "port", None, "Port to listen on (default 5050 for the dispatcher, 5051 "
            "for a worker; 0: any free port).")
define_flag("string", "work_dir", None, "Dispatcher: folder where it journals its state, so a "
            "restarted dispatcher resumes its jobs (needed by --fault_tolerant).")
define_flag("bool", "fault_tolerant", False, "Dispatcher: write the journal in --work_dir "
            "before answering each request.")
define_flag("string", "dispatcher", None, "Worker: the dispatcher's HOST:PORT "
            "(or grpc://HOST:PORT).")
define_flag("float", "wait_for_dispatcher", 60.0, "Worker: seconds to wait for the "
            "dispatcher to answer before giving up (it may start after the workers).")
define_flag("string", "worker_address", None, "Worker: the HOST:PORT trainers use to reach "
            "this worker (%port% = the bound port); default <this host's name>:%port%.")
define_flag("bool", "kernels", True, "Load tfvid's fused input kernels (tfvid.data.kernels) "
            "if they build here: trainers that use them need them on the dispatcher and the "
            "workers.")


def _host() -> str:
    """This machine's name as other machines know it (the FQDN, else the host name)."""
    for name in (socket.getfqdn(), socket.gethostname()):
        if name and not name.startswith("localhost"):
            return name
    return "localhost"


def _load_kernels() -> None:
    """The dispatcher builds the registered dataset graph too (to split its source), the
    workers run it: both need the ops of graphs that use tfvid's fused kernels."""
    if FLAGS.kernels:
        from tfvid.data import kernels
        logging.info("%s", kernels.status())


def main(argv):
    check_args(argv, "role")
    from tfvid.data import service      # TensorFlow itself is imported when a server starts
    port = DEFAULT_PORTS[FLAGS.role] if FLAGS.port is None else FLAGS.port
    if not 0 <= port < 65536:
        raise UsageError(f"--port must be in 0-65535 (0: any free port), got {port}")
    if FLAGS.role == "dispatcher":
        if FLAGS.dispatcher or FLAGS.worker_address:
            raise UsageError("--dispatcher and --worker_address are for --role=worker")
        if FLAGS.fault_tolerant and not FLAGS.work_dir:
            raise UsageError("--fault_tolerant needs --work_dir (where the journal goes)")
        _load_kernels()
        server = service.start_dispatcher(port, work_dir=FLAGS.work_dir,
                                          fault_tolerant=FLAGS.fault_tolerant)
        bound = service.bound_port(server)
        logging.info("tf.data service dispatcher listening on port %d%s", bound,
                     f" (journal in {FLAGS.work_dir})" if FLAGS.work_dir else "")
        logging.info("start workers with: python -m pipelines.data_service --role=worker "
                     "--dispatcher=%s:%d", _host(), bound)
        logging.info("connect trainers with: --data_service=grpc://%s:%d", _host(), bound)
    else:
        if not FLAGS.dispatcher:
            raise UsageError("--role=worker needs --dispatcher=HOST:PORT (the dispatcher's "
                             "address)")
        if FLAGS.work_dir or FLAGS.fault_tolerant:
            raise UsageError("--work_dir and --fault_tolerant are for --role=dispatcher")
        if FLAGS.worker_address and not re.fullmatch(r"\S+:(\d+|%port%)", FLAGS.worker_address):
            raise UsageError(f"--worker_address must be HOST:PORT or HOST:%port%, got "
                             f"{FLAGS.worker_address!r}")
        try:
            service.parse_address(FLAGS.dispatcher, "dispatcher")
            logging.info("waiting up to %g s for the dispatcher at %s", FLAGS.wait_for_dispatcher,
                         FLAGS.dispatcher)
            service.check_dispatcher(FLAGS.dispatcher, timeout=FLAGS.wait_for_dispatcher,
                                     flag="dispatcher")
        except (ValueError, ConnectionError) as e:
            raise UsageError(str(e)) from None
        _load_kernels()
        address = FLAGS.worker_address or f"{_host()}:%port%"
        server = service.start_worker(FLAGS.dispatcher, port, worker_address=address)
        bound = service.bound_port(server)
        logging.info("tf.data service worker listening on port %d as %s, reporting to the "
                     "dispatcher at %s", bound, address.replace("%port%", str(bound)),
                     FLAGS.dispatcher)
    try:
        service.wait_forever(server)
    except KeyboardInterrupt:
        logging.info("interrupted: the %s stopped", FLAGS.role)
    return 0


def run():
    """Console-script entry point (tfvid-data-service)."""
    run_job(main)


if __name__ == "__main__":
    run()
