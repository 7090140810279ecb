"""``python -m classifier.serve`` with several workers: each on its own SO_REUSEPORT socket, supervised.

Real processes on a loopback port, serving the shipped pneumonia model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from classifier import serve
from classifier.paths import PROJECT_ROOT
from tests.helpers import free_port

START_TIMEOUT_S = 90


def start(port: int, log: Path, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "CLASSIFIER_PORT": str(port), "CLASSIFIER_WORKERS": str(workers),
           "CLASSIFIER_MODELS": "pneumonia", "CLASSIFIER_LOG_FORMAT": "json"}  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "classifier.serve"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out
        )


def log_entries(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def worker_pids(log: Path) -> list[int]:
    """The workers the supervisor started, in order (from its log)."""
    return [int(e["message"].split()[-1]) for e in log_entries(log) if e["message"].startswith("started worker")]


def listening_workers(log: Path) -> set[int]:
    return {e["pid"] for e in log_entries(log) if e["message"].startswith("worker listening on")}


def wait_ready(port: int, server: subprocess.Popen, log: Path, workers: int = 2) -> None:
    """Until `/readyz` answers 200 and every worker listens (each binds its own socket once it has started)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200 and len(listening_workers(log)) == workers:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    pytest.fail(f"not ready in {START_TIMEOUT_S} s:\n{log.read_text()}")


def healthchecks_over_new_connections(port: int, connections: int) -> None:
    """Open `connections` connections at once, then send a /healthcheck on each and read the answers."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(connections)]
    try:
        for s in sockets:
            s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        for s in sockets:
            assert s.makefile("rb").readline().split()[1] == b"200"
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen, Path]]:
    port, log = free_port(), tmp_path / "serve.log"
    server = start(port, log)
    try:
        wait_ready(port, server, log)
        yield port, server, log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pid in worker_pids(log):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_new_connections_are_spread_over_the_workers(two_workers: tuple[int, subprocess.Popen, Path]) -> None:
    port, _, log = two_workers
    healthchecks_over_new_connections(port, 32)  # all 32 on one worker by chance: p = 2 * 2**-32
    time.sleep(0.2)
    answered = [e["pid"] for e in log_entries(log) if e.get("route") == "/healthcheck"]
    assert len(answered) >= 32
    assert set(answered) == set(worker_pids(log))
    assert len(set(answered)) == 2


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(two_workers: tuple[int, subprocess.Popen, Path]) -> None:
    port, server, log = two_workers
    first, second = worker_pids(log)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(worker_pids(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(worker_pids(log)) == 3, log.read_text()
    replacement = worker_pids(log)[-1]
    for _ in range(20):  # the other worker answers while the replacement starts
        healthchecks_over_new_connections(port, 4)

    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0, log.read_text()
    messages = [e["message"] for e in log_entries(log)]
    assert "stopped 2 workers" in messages
    for pid in (second, replacement):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_port_in_use_stops_the_server_with_a_readable_error(tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: no worker can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, log = taken.getsockname()[1], tmp_path / "serve.log"
        server = start(port, log)
        assert server.wait(START_TIMEOUT_S) == 1
    messages = [e["message"] for e in log_entries(log)]
    assert any(m.startswith(f"cannot listen on 127.0.0.1 port {port}: Address already in use") for m in messages)
    assert any("could not start" in m for m in messages)


def test_sockets_share_a_port_only_when_each_allows_it() -> None:
    first = serve.listening_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = serve.listening_socket("127.0.0.1", port)
        second.close()
        assert first.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only on sockets that say TCP
    finally:
        first.close()
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError):
            serve.listening_socket("127.0.0.1", plain.getsockname()[1])


def test_one_worker_serves_in_the_process_it_was_started_in(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    server = start(port, log, workers=1)
    try:
        wait_ready(port, server, log, workers=1)
        healthchecks_over_new_connections(port, 4)
        assert worker_pids(log) == [] and listening_workers(log) == {server.pid}
        server.send_signal(signal.SIGTERM)
        # uvicorn finishes its requests, then re-raises the SIGTERM it caught: the status says how it was stopped
        assert server.wait(30) == -signal.SIGTERM
        assert "Finished server process" in log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
