"""Hostile and broken uploads: each one is a 4xx with JSON ``{"detail": "..."}``, never a 500, a hang or a crash.

The streaming cases (a body refused while it is still arriving, a body that never arrives, a client that
goes away) run against a real uvicorn server on the loopback interface.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from classifier.app import create_app
from classifier.settings import Settings
from tests.helpers import FIXTURES, live_server

JPEG = (FIXTURES / "normal_1.jpeg").read_bytes()


@pytest.fixture(scope="module")
def client(trained_weights: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=trained_weights, max_batch_images=3))) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield client


def refused(response, status: int) -> str:
    """The response's detail, after checking it is `status` with a one-string JSON detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels: a decompression bomb's signature."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xray.jpeg", JPEG)
    return buffer.getvalue()


NOT_IMAGES = {
    "text": b"hello, this is a chest X-ray, honest",
    "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    "zip": zip_bytes(),
    "random": np.random.default_rng(7).bytes(4096),
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_not_an_image_is_415(client: TestClient, kind: str) -> None:
    files = {"image_file": (f"upload.{kind}", NOT_IMAGES[kind], "image/jpeg")}
    detail = refused(client.post("/pneumonia/predict", files=files), 415)
    assert "image" in detail.lower()


@pytest.mark.parametrize(
    "data",
    [JPEG[:1500], JPEG[:200], png_claiming(64, 64)[:-30], JPEG[:600] + b"\xff" * 5000],
    ids=["truncated-jpeg", "jpeg-header-only", "truncated-png", "corrupt-jpeg"],
)
def test_truncated_or_corrupt_image_is_400(client: TestClient, data: bytes) -> None:
    refused(client.post("/pneumonia/predict", files={"image_file": ("x.jpeg", data, "image/jpeg")}), 400)


def test_empty_upload_is_400(client: TestClient) -> None:
    assert "empty" in refused(client.post("/pneumonia/predict", files={"image_file": ("x.jpeg", b"")}), 400)


def test_empty_body_is_400(client: TestClient) -> None:
    assert "empty" in refused(client.post("/pneumonia/predict"), 400)
    empty_form = {"content-type": "multipart/form-data; boundary=xyz"}
    assert "empty" in refused(client.post("/pneumonia/predict", content=b"", headers=empty_form), 400)
    assert "empty" in refused(client.post("/pneumonia/predict", content=b"", headers=_json()), 400)


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


@pytest.mark.parametrize("content_type", ["image/jpeg", "text/plain", "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str) -> None:
    response = client.post("/pneumonia/predict", content=JPEG, headers={"content-type": content_type})
    assert "image_file" in refused(response, 415)


def test_missing_field_is_422(client: TestClient) -> None:
    response = client.post("/pneumonia/predict", files={"file": ("x.jpeg", JPEG)}, data={"note": "hi"})
    assert "image_file" in refused(response, 422)


def test_decompression_bomb_is_413_before_decoding(client: TestClient) -> None:
    bomb = png_claiming(100_000, 100_000)
    started = time.perf_counter()
    detail = refused(client.post("/pneumonia/predict", files={"image_file": ("bomb.png", bomb)}), 413)
    assert "pixels" in detail and time.perf_counter() - started < 2


def test_body_over_the_limit_is_413(trained_weights: Path) -> None:
    client = TestClient(create_app(Settings(models_dir=trained_weights, max_upload_mb=0.5)))
    big = {"image_file": ("big.jpeg", JPEG + b"\0" * 600_000)}
    assert "0.5 MiB" in refused(client.post("/pneumonia/predict", files=big), 413)
    big_json = {"image": base64.b64encode(b"\0" * 600_000).decode()}
    refused(client.post("/pneumonia/predict", json=big_json), 413)


FORM = "multipart/form-data; boundary=xyz"
PART_HEAD = b'--xyz\r\nContent-Disposition: form-data; name="image_file"; filename="x.jpeg"\r\n\r\n'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"just some bytes", "multipart/form-data"),
        (b"no boundary here at all", FORM),
        (PART_HEAD + JPEG, FORM),
        (b"--xyz\r\nContent-Disposition: form-data\r\n" + b"X: y\r\n" * 100 + b"\r\n", FORM),
    ],
    ids=["no-boundary", "garbage", "unterminated", "too-many-headers"],
)
def test_malformed_multipart_is_400(client: TestClient, body: bytes, content_type: str) -> None:
    refused(client.post("/pneumonia/predict", content=body, headers={"content-type": content_type}), 400)


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 422),
        (b'{"image": 5}', 422),
        (b'["data:image/png;base64,AAAA"]', 422),
        (b'{"image": "data:image/png;base64,***"}', 400),
        (b'{"image": "data:image/png,rawbytes"}', 400),
        (b'{"image": "%s"}' % base64.b64encode(b"hello world, not an image"), 415),
        (b'{"image": ""}', 400),
    ],
    ids=["invalid-json", "not-a-string", "not-an-object", "bad-base64", "not-base64-url", "text", "empty-image"],
)
def test_bad_json_bodies(client: TestClient, payload: bytes, status: int) -> None:
    refused(client.post("/pneumonia/predict", content=payload, headers=_json()), status)


def test_one_image_per_single_prediction(client: TestClient) -> None:
    files = [("image_file", ("a.jpeg", JPEG)), ("image_file", ("b.jpeg", JPEG))]
    refused(client.post("/pneumonia/predict", files=files), 413)


def test_batch_limits(client: TestClient) -> None:
    too_many = [("image_file", (f"{i}.jpeg", JPEG)) for i in range(4)]
    assert "at most 3" in refused(client.post("/pneumonia/predict/batch", files=too_many), 413)
    refused(client.post("/pneumonia/predict/batch", files={"other": ("a.jpeg", JPEG)}), 422)
    refused(client.post("/pneumonia/predict/batch", json={"image": "AAAA"}), 415)


def test_batch_answers_each_bad_image_in_place(client: TestClient) -> None:
    files = [("image_file", (f"{kind}.bin", NOT_IMAGES[kind])) for kind in ("text", "zip")]
    files.append(("image_file", ("bomb.png", png_claiming(100_000, 100_000))))
    results = client.post("/pneumonia/predict/batch", files=files).json()
    assert [(r["filename"], r["status_code"]) for r in results] == [
        ("text.bin", 415),
        ("zip.bin", 415),
        ("bomb.png", 413),
    ]


def test_query_validation_errors_are_one_string(client: TestClient) -> None:
    response = client.post("/pneumonia/predict?attention=perhaps", files={"image_file": ("x.jpeg", JPEG)})
    assert "attention" in refused(response, 422)


def test_uploads_never_touch_disk(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was about to be written to disk")

    import starlette.formparsers

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_disk)
    large = JPEG + b"\0" * 3_000_000  # past the 1 MB at which Starlette's own form parser would spool to disk
    response = client.post("/pneumonia/predict", files={"image_file": ("large.jpeg", large)})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def server(trained_weights: Path) -> Iterator[tuple[str, int]]:
    settings = Settings(models_dir=trained_weights, max_upload_mb=1, upload_timeout_s=0.5)
    with live_server(create_app(settings), lifespan="off") as address:  # no model needed to refuse a body
        yield address


def request_head(length: int | None, path: str = "/pneumonia/predict") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket, data: bytes = b"") -> bytes:
    """The rest of a short JSON response, after `data` already received."""
    sock.settimeout(5)
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_declared_oversize_body_is_refused_before_it_is_sent(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(request_head(100 * 1024 * 1024))
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413") and b"1 MiB limit" in response


def test_streamed_oversize_body_is_refused_while_it_arrives(server: tuple[str, int]) -> None:
    chunk = b"x" * 65536
    sent = 0
    with socket.create_connection(server) as sock:
        sock.sendall(request_head(None) + b"%x\r\n%s\r\n" % (len(PART_HEAD), PART_HEAD))
        sock.settimeout(0.01)
        response = b""
        while sent < 50 * 1024 * 1024 and not response:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            try:
                response = sock.recv(65536)
            except TimeoutError:
                continue
        response = read_response(sock, response)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 4 * 1024 * 1024  # refused after about 1 MiB, not after the 50 MiB on offer


def test_a_body_that_never_arrives_times_out_with_408(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server) as sock:
        sock.sendall(request_head(5000) + PART_HEAD)
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5


def test_a_client_that_leaves_mid_upload_does_not_hurt_the_server(server: tuple[str, int]) -> None:
    for _ in range(3):
        with socket.create_connection(server) as sock:
            sock.sendall(request_head(500_000) + PART_HEAD + b"y" * 1000)
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_busy_server_refuses_before_reading_the_body_and_keeps_the_connection(trained_weights: Path) -> None:
    app = create_app(Settings(models_dir=trained_weights, max_in_flight=1))
    with live_server(app, lifespan="off") as address, socket.create_connection(address) as sock:
        app.state.pool.in_flight = 1  # a prediction in flight fills the pool
        sock.sendall(request_head(300_000))  # the head alone: the answer must not wait for the body
        response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in response.lower(), response[:300]
        assert b"busy" in response
        sock.sendall(PART_HEAD + b"z" * (300_000 - len(PART_HEAD)))  # the client sends its body anyway
        sock.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(5)
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200")  # the same connection goes on
