"""The audit trail: one record per image classified or refused, never the image or its file name."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from classifier.app import create_app
from classifier.audit import Fingerprint, audit
from classifier.errors import ServiceError
from classifier.settings import Settings
from tests.helpers import FIXTURES, serving, wait_until_ready

XRAY = (FIXTURES / "normal_1.jpeg").read_bytes()
NOT_AN_IMAGE = b"patient notes, not an image"
SECRET_NAME = "smith-john-1961.jpeg"


def audit_lines(err: str) -> list[dict]:
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry["logger"] == "classifier.audit"]


@pytest.fixture(scope="module")
def client(trained_weights: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=trained_weights, log_format="json", log_level="WARNING")
    with TestClient(create_app(settings)) as client:
        wait_until_ready(client)
        yield client


def test_a_prediction_leaves_one_record(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    answer = client.post(
        "/pneumonia/predict",
        files={"image_file": (SECRET_NAME, XRAY, "image/jpeg")},
        headers={"X-Request-ID": "audit-1"},
    ).json()
    err = capsys.readouterr().err
    [entry] = audit_lines(err)  # written although CLASSIFIER_LOG_LEVEL=WARNING quiets the request log
    assert entry["request_id"] == "audit-1" and entry["event"] == "prediction" and entry["level"] == "INFO"
    assert entry["model"] == "pneumonia" and entry["model_version"] == answer["model"]["version"]
    assert entry["index"] == 0 and entry["outcome"] == "classified"
    assert entry["predicted_class"] == answer["predicted_class"]
    assert entry["probabilities"] == answer["probabilities"]
    assert entry["sha256"] == hashlib.sha256(XRAY).hexdigest() and entry["size_bytes"] == len(XRAY)
    assert entry["client"] == "testclient"
    assert "smith" not in err and base64.b64encode(XRAY[:64]).decode()[:40] not in err


def test_a_batch_leaves_one_record_per_image_refused_ones_included(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    parts = [(SECRET_NAME, XRAY), ("notes.jpeg", NOT_AN_IMAGE), ("second.jpeg", XRAY)]
    files = [("image_file", (filename, data, "image/jpeg")) for filename, data in parts]
    client.post("/pneumonia/predict/batch", files=files)
    client.post("/pneumonia/predict", files={"image_file": ("notes.jpeg", NOT_AN_IMAGE, "image/jpeg")})
    entries = audit_lines(capsys.readouterr().err)
    assert [(e["index"], e["outcome"]) for e in entries] == [
        (0, "classified"),
        (1, "refused"),
        (2, "classified"),
        (0, "refused"),
    ]
    refused = entries[1]
    assert refused["status"] == 415 and refused["refusal"] == "unsupported_image"
    assert refused["sha256"] == hashlib.sha256(NOT_AN_IMAGE).hexdigest()
    assert "predicted_class" not in refused and "probabilities" not in refused
    assert len({e["request_id"] for e in entries[:3]}) == 1 and entries[3]["request_id"] != entries[0]["request_id"]
    assert not any("filename" in e or "notes" in json.dumps(e) for e in entries)


def test_requests_refused_before_any_image_is_read_leave_no_record(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.post("/pneumonia/predict", content=b"x" * 100, headers={"Content-Type": "text/plain"})  # 415, no image
    client.post("/pneumonia/predict", files={"other": ("a.jpeg", XRAY, "image/jpeg")})  # 422: no image_file
    assert audit_lines(capsys.readouterr().err) == []


def test_the_text_log_has_a_readable_line(trained_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with TestClient(create_app(Settings(models_dir=trained_weights))) as client:
        wait_until_ready(client)
        capsys.readouterr()
        answer = client.post("/pneumonia/predict", files={"image_file": (SECRET_NAME, XRAY, "image/jpeg")}).json()
    [line] = [line for line in capsys.readouterr().err.splitlines() if " classifier.audit " in line]
    version, predicted = answer["model"]["version"], answer["predicted_class"]
    assert f"prediction pneumonia {version} #0 classified {predicted} (normal 0." in line
    assert f"sha256 {hashlib.sha256(XRAY).hexdigest()} {len(XRAY)} bytes from testclient" in line
    assert "smith" not in line


def test_the_client_is_the_peer_or_a_trusted_proxys_forwarded_address(
    trained_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(Settings(models_dir=trained_weights, log_format="json"))
    body = b'--b\r\nContent-Disposition: form-data; name="image_file"\r\n\r\n' + XRAY + b"\r\n--b--\r\n"
    with serving(app) as url:
        capsys.readouterr()
        for forwarded in ({}, {"X-Forwarded-For": "203.0.113.9"}):
            headers = {"Content-Type": "multipart/form-data; boundary=b", **forwarded}
            request = urllib.request.Request(f"{url}/pneumonia/predict", body, headers)
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
    # uvicorn trusts X-Forwarded-For from FORWARDED_ALLOW_IPS, by default loopback only: here the peer
    assert [entry["client"] for entry in audit_lines(capsys.readouterr().err)] == ["127.0.0.1", "203.0.113.9"]


class InputCheck(BaseModel):
    chest_xray: bool
    score: float
    threshold: float


class CheckedAnswer(BaseModel):
    predicted_class: str
    probabilities: dict[str, float]
    input_check: InputCheck


def test_an_input_checks_verdict_is_recorded_when_the_answer_or_refusal_has_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = InputCheck(chest_xray=True, score=0.97, threshold=0.5)
    answer = CheckedAnswer(predicted_class="normal", probabilities={"normal": 0.9, "pneumonia": 0.1}, input_check=check)
    refusal = ServiceError(422, "not_a_chest_xray", "the image is not a chest X-ray")
    refusal.input_check = InputCheck(chest_xray=False, score=0.02, threshold=0.5)
    with caplog.at_level(logging.INFO, logger="classifier.audit"):
        audit([answer, refusal], [Fingerprint.of(XRAY), Fingerprint.of(b"cat")], "pneumonia", "v1", "10.0.0.7")
    classified, refused = (record.audit for record in caplog.records)
    assert classified["input_check"] == {"chest_xray": True, "score": 0.97, "threshold": 0.5}
    assert refused["input_check"]["chest_xray"] is False and refused["refusal"] == "not_a_chest_xray"
    assert "input check chest_xray=False score=0.02 threshold=0.5" in caplog.records[1].getMessage()
