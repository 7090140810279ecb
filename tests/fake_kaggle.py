"""A stand-in for the Kaggle API on localhost, answering the real `kaggle` client as kaggle.com does.

`KaggleApi.dataset_download_files` (kaggle 2.2.4, kagglesdk 0.1.x) makes two requests:

- ``POST /v1/datasets.DatasetApiService/DownloadDataset`` with the JSON body
  ``{"ownerSlug": ..., "datasetSlug": ...}``, authenticated with HTTP Basic (username and key,
  from ``KAGGLE_USERNAME``/``KAGGLE_KEY`` or ``kaggle.json``) or ``Authorization: Bearer`` (an API
  token). Kaggle answers with a redirect to the zip, which `requests` follows with a ``GET``;
- with a token, `KaggleApi.authenticate` first checks it:
  ``POST /v1/security.OAuthService/IntrospectToken`` ``{"token": ...}`` -> ``{"active", "username"}``.

Errors come back as ``{"code": status, "message": ...}`` with that HTTP status, which the client
raises as `requests.HTTPError`.

`KaggleApi` always builds its client for production (``https://api.kaggle.com/v1/...``): the
``KAGGLE_API_ENVIRONMENT=TEST`` setting (``http://localhost:7777``) only reaches kagglesdk clients
built without an explicit environment, which `KaggleApi` never does. Tests therefore point the
production endpoint at `FakeKaggle.url`, a free port, so that test runs side by side do not clash.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOWNLOAD_PATH = "/v1/datasets.DatasetApiService/DownloadDataset"
INTROSPECT_PATH = "/v1/security.OAuthService/IntrospectToken"


@dataclass
class FakeKaggle:
    """Serves `datasets` (``owner/name`` -> zip bytes) to clients holding `username`/`key` or `token`.

    Set `failure` to ``(status, message)`` to answer every API call with that error. `requests`
    records ``(method, path)`` of everything the server was asked.
    """

    datasets: dict[str, bytes]
    username: str = "tester"
    key: str = "0123456789abcdef"
    token: str = "KGAT_fake_token"
    failure: tuple[int, str] | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __enter__(self) -> FakeKaggle:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def authorised(self, header: str | None) -> bool:
        basic = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return header in (f"Basic {basic}", f"Bearer {self.token}")


def _handler(fake: FakeKaggle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if fake.failure:
                self.send_error_json(*fake.failure)
            elif self.path == INTROSPECT_PATH:
                active = body.get("token") == fake.token
                self.send_json(200, {"active": active, "username": fake.username if active else ""})
            elif self.path != DOWNLOAD_PATH:
                self.send_error_json(404, f"no such method: {self.path}")
            elif not fake.authorised(self.headers.get("Authorization")):
                self.send_error_json(401, "Unauthenticated")
            elif f"{body.get('ownerSlug')}/{body.get('datasetSlug')}" not in fake.datasets:
                self.send_error_json(404, "Dataset not found")
            else:
                self.send_response(302)
                self.send_header("Location", f"/files/{body['ownerSlug']}/{body['datasetSlug']}.zip")
                self.send_header("Content-Length", "0")
                self.end_headers()

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path))
            slug = self.path.removeprefix("/files/").removesuffix(".zip")
            if slug not in fake.datasets:
                self.send_error_json(404, "No such file")
                return
            data = fake.datasets[slug]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", formatdate(usegmt=True))
            self.end_headers()
            self.wfile.write(data)

        def send_json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def send_error_json(self, status: int, message: str) -> None:
            self.send_json(status, {"code": status, "message": message})

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is no place for an access log."""

    return Handler
