"""``python -m classifier.serve`` with several workers: each on its own SO_REUSEPORT socket, supervised, their
metrics summed.

Real processes on a loopback port, serving the shipped pneumonia model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from tests.helpers import FIXTURES, free_port

START_TIMEOUT_S = 90
XRAY = (FIXTURES / "normal_1.jpeg").read_bytes()


def start(port: int, log: Path, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "CLASSIFIER_PORT": str(port), "CLASSIFIER_WORKERS": str(workers),
           "CLASSIFIER_MODELS": "pneumonia", "CLASSIFIER_LOG_FORMAT": "json"}  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "classifier.serve"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out
        )


def log_entries(log: Path) -> list[dict]:
    """The JSON lines written so far (not a line still being written)."""
    complete = log.read_text().rpartition("\n")[0]
    return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]


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


def metrics_dir(log: Path) -> Path:
    [entry] = [e for e in log_entries(log) if e["message"].startswith("workers' metrics in ")]
    return Path(entry["message"].removeprefix("workers' metrics in "))


def predict_over_a_new_connection(port: int) -> int:
    """POST the fixture to /pneumonia/predict on a connection of its own; the status."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image_file"; filename="x.jpeg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + XRAY + b"\r\n--b--\r\n"
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/pneumonia/predict",
        body,
        {"Content-Type": "multipart/form-data; boundary=b", "Connection": "close"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def scrape(port: int) -> dict[str, float]:
    """The samples of one ``/metrics`` scrape, by name and labels as written."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {sample: float(value) for sample, value in pairs}


def predictions_answered(log: Path) -> list[int]:
    """The pid of the worker that answered each prediction (200) so far."""
    return [e["pid"] for e in log_entries(log) if e.get("route") == "/pneumonia/predict" and e["status"] == 200]


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


def test_one_scrape_counts_every_workers_predictions(two_workers: tuple[int, subprocess.Popen, Path]) -> None:
    port, _, log = two_workers
    predictions = 24  # over new connections, so spread over both workers: all on one by chance, p = 2 * 2**-24
    assert [predict_over_a_new_connection(port) for _ in range(predictions)] == [200] * predictions
    time.sleep(0.2)
    assert set(predictions_answered(log)) == set(worker_pids(log))
    samples = scrape(port)
    assert samples['http_requests_total{method="POST",route="/pneumonia/predict",status="200"}'] == predictions
    classified = [value for name, value in samples.items() if name.startswith('predictions_total{model="pneumonia"')]
    assert sum(classified) == predictions
    assert samples['inference_duration_seconds_count{model="pneumonia"}'] == predictions
    assert samples['http_request_duration_seconds_count{method="POST",route="/pneumonia/predict"}'] == predictions
    assert samples['models_ready{model="pneumonia"}'] == 1.0  # the minimum over the live workers
    assert samples["inference_in_flight"] == 0.0  # the live workers' sum
    assert not any(re.search(r'pid="\d+"', name) for name in samples)  # gauges summed, not one series a worker


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(two_workers: tuple[int, subprocess.Popen, Path]) -> None:
    port, server, log = two_workers
    first, second = worker_pids(log)
    while first not in predictions_answered(log):
        assert predict_over_a_new_connection(port) == 200
    answered_before = len(predictions_answered(log))
    os.kill(first, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while (len(worker_pids(log)) < 3 or worker_pids(log)[-1] not in predictions_answered(log)[answered_before:]) and (
        time.monotonic() < deadline
    ):  # the replacement takes connections only once its model is loaded: no 503 "model loading" meanwhile
        with contextlib.suppress(OSError):  # a connection that was queued on the killed worker's socket
            statuses.append(predict_over_a_new_connection(port))
    replacement = worker_pids(log)[-1]
    assert len(worker_pids(log)) == 3 and replacement in predictions_answered(log), log.read_text()
    assert set(statuses) == {200}, statuses
    files = {path.name for path in metrics_dir(log).iterdir()}
    assert f"counter_{first}.db" in files  # the dead worker's counts still count
    assert not any(name.startswith("gauge_live") and name.endswith(f"_{first}.db") for name in files)
    assert scrape(port)['models_ready{model="pneumonia"}'] == 1.0
    for _ in range(20):  # both workers answer
        healthchecks_over_new_connections(port, 4)

    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0, log.read_text()
    messages = [e["message"] for e in log_entries(log)]
    assert "stopped 2 workers" in messages
    assert not metrics_dir(log).exists()
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
