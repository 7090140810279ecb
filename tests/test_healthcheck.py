"""The image's HEALTHCHECK command (``python -m classifier.healthcheck``) against servers on several addresses.

A small HTTP server stands in for the service (tests/test_dockerfile.py runs the command against the real one):
it listens where ``CLASSIFIER_HOST`` says, and the probe must reach it there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from classifier.healthcheck import probe_host
from classifier.paths import PROJECT_ROOT
from tests.helpers import healthcheck_command, parse_dockerfile


@contextmanager
def health_server(host: str, status: int = 200) -> Iterator[int]:
    """An HTTP server on `host` (an ephemeral port) answering ``GET /healthcheck`` with `status`; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthcheck" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = Server((host, 0), Handler)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host} here: {exc}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_image_healthcheck(host: str, port: int) -> subprocess.CompletedProcess:
    """The serving stage's HEALTHCHECK command, run as the container would, with this server's settings."""
    command = healthcheck_command(parse_dockerfile(PROJECT_ROOT / "Dockerfile")[-1])
    assert command[0] == "python"
    unused_proxy = "http://127.0.0.1:9"  # the probe must not go through a proxy
    env = {**os.environ, "CLASSIFIER_HOST": host, "CLASSIFIER_PORT": str(port),
           "HTTP_PROXY": unused_proxy, "http_proxy": unused_proxy}  # fmt: skip
    return subprocess.run([sys.executable, *command[1:]], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=30)  # fmt: skip


WILDCARDS = [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("0:0::0", "::1")]
SPECIFIC = ["127.0.0.2", "10.1.2.3", "fd00::5", "localhost"]


@pytest.mark.parametrize(("host", "reached_on"), WILDCARDS + [(host, host) for host in SPECIFIC])
def test_a_wildcard_host_is_probed_on_loopback_and_any_other_as_it_is(host: str, reached_on: str) -> None:
    assert probe_host(host) == reached_on


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_the_image_healthcheck_reaches_the_server_where_it_listens(host: str) -> None:
    with health_server(host) as port:
        done = run_image_healthcheck(host, port)
    assert done.returncode == 0, done.stderr


def test_an_unhealthy_or_absent_server_fails_the_healthcheck_with_one_line() -> None:
    with health_server("127.0.0.2", status=503) as port:
        done = run_image_healthcheck("127.0.0.2", port)
    assert done.returncode == 1
    assert done.stderr == f"unhealthy: 127.0.0.2 port {port}: /healthcheck answered 503\n"

    with health_server("127.0.0.2") as port:
        pass  # closed: nothing listens on the port any more
    done = run_image_healthcheck("127.0.0.2", port)
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: 127.0.0.2 port {port}: ") and "refused" in done.stderr
