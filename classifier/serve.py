"""``python -m classifier.serve``: the service under uvicorn, listening and forking as the settings say.

The same app as ``uvicorn classifier.app:app``, on `Settings.host` and `Settings.port`, in `Settings.workers`
processes (each loads its own copy of the models); one worker runs in this process, unsupervised.

Several workers do not share one listening socket as under ``uvicorn --workers``. There, the first worker to
wake accepts a whole burst of new connections: a load balancer or a client opening 8 keep-alive connections at
once often lands all 8 on one worker, which then serves alone on about one core (measured: 166 against 267
req/s). Here each worker listens on a socket of its own bound to the same port with ``SO_REUSEPORT``, and the
kernel spreads new connections over the workers by address hash. A worker's socket listens only once its
models are loaded (the app's startup waits for them when there are several workers), so a worker that starts
late or replaces a dead one never answers 503 "model loading" while the others could answer. The parent only
supervises: it starts another worker when one dies, and on SIGTERM or SIGINT stops them all, each finishing its
requests in flight.

The workers share their Prometheus metrics through files in a fresh temporary folder (prometheus-client's
multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), so one scrape of ``/metrics`` counts the whole server; the
parent removes a dead worker's gauges, and the folder when it stops.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
from multiprocessing.process import BaseProcess

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE

from classifier.settings import Settings, describe_invalid
from classifier.telemetry import MULTIPROCESS_DIR_VARIABLE, configure_logging

APP = "classifier.app:app"
CHECK_WORKERS_S = 0.5

log = logging.getLogger("classifier.serve")  # not "__main__" under ``python -m``


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.exit(f"error: {describe_invalid(exc)}")
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers == 1:
        serve_worker()
    else:
        sys.exit(Supervisor(settings.workers).run())


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` that other sockets of this user may bind too (``SO_REUSEPORT``).

    Its protocol is set explicitly: asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on connections
    whose socket says TCP, and a reply held back for a delayed ACK costs 40 ms.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve_worker() -> None:
    """One worker process: the app, its own socket bound to the shared port, one uvicorn server on it.

    The socket is bound at once (a port in use stops the worker before its models load) and listens once the
    app has started: uvicorn starts serving after the app's startup.
    """
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    config = uvicorn.Config(APP, log_config=None, access_log=False)
    config.load()  # import the app before taking connections (exits with STARTUP_FAILURE if it cannot)
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s port %d: %s", settings.host, settings.port, exc.strerror or exc)
        sys.exit(STARTUP_FAILURE)
    server = WorkerServer(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class WorkerServer(uvicorn.Server):
    """A uvicorn server that says when its socket listens."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        log.info("worker listening on %s port %d", host, port)


class Supervisor:
    """Keeps `workers` worker processes running until SIGTERM or SIGINT, then stops them gracefully."""

    def __init__(self, workers: int):
        self.workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()

    def run(self) -> int:
        """Serve until told to stop; the exit status: 0, or 1 when a worker could not start."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())
        with tempfile.TemporaryDirectory(prefix="classifier-metrics-") as metrics_dir:
            # inherited by the workers, which read it when they first import prometheus_client
            os.environ[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
            log.info("workers' metrics in %s", metrics_dir)
            return self._supervise(metrics_dir)

    def _supervise(self, metrics_dir: str) -> int:
        processes = [self._start() for _ in range(self.workers)]
        status = 0
        while not self._stop.wait(CHECK_WORKERS_S):
            for i, process in enumerate(processes):
                if process.exitcode is None:
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    log.error("worker %d could not start (its log says why): stopping", process.pid)
                    status = 1
                    self._stop.set()
                    break
                log.warning("worker %d exited (status %d): starting another", process.pid, process.exitcode)
                mark_process_dead(process.pid, metrics_dir)  # its gauges no longer count; its counters still do
                processes[i] = self._start()
        for process in processes:
            process.terminate()  # SIGTERM: the worker finishes its requests in flight, then exits
        for process in processes:
            process.join()
        log.info("stopped %d workers", len(processes))
        return status

    def _start(self) -> BaseProcess:
        process = self._context.Process(target=serve_worker, name="classifier-worker")
        process.start()
        log.info("started worker %d", process.pid)
        return process


if __name__ == "__main__":
    main()
