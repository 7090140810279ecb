"""``python -m classifier.healthcheck``: the container's HEALTHCHECK, ``GET /healthcheck`` on the server's address.

The address comes from the settings ``python -m classifier.serve`` listens on (``CLASSIFIER_HOST``,
``CLASSIFIER_PORT``), so the probe follows any host the server is given; a wildcard host (``0.0.0.0``, ``::``)
is reached on loopback. No proxy is used, whatever ``HTTP_PROXY`` says. Exits 0 on a 200 answer, else 1 with
one line saying why.
"""

from __future__ import annotations

import http.client
import ipaddress
import sys

from classifier.settings import Settings

TIMEOUT_S = 2.0
PATH = "/healthcheck"


def probe_host(host: str) -> str:
    """Where to reach a server listening on `host`: loopback for a wildcard address, else `host` itself."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name such as localhost
        return host
    if not address.is_unspecified:
        return host
    return "::1" if address.version == 6 else "127.0.0.1"


def check(host: str, port: int, timeout: float = TIMEOUT_S) -> str | None:
    """None when the server on `host`:`port` answers ``GET /healthcheck`` with 200, else what went wrong."""
    target = probe_host(host)
    connection = http.client.HTTPConnection(target, port, timeout=timeout)
    try:
        connection.request("GET", PATH)
        status = connection.getresponse().status
    except OSError as exc:
        return f"{target} port {port}: {exc}"
    finally:
        connection.close()
    return None if status == 200 else f"{target} port {port}: {PATH} answered {status}"


def main() -> int:
    settings = Settings()
    problem = check(settings.host, settings.port)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
