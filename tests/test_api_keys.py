"""API keys: off by default; when set, the prediction and model routes need ``Authorization: Bearer <key>``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from classifier.app import create_app
from classifier.paths import PROJECT_ROOT
from classifier.settings import Settings
from tests.helpers import FIXTURES, wait_until_ready

KEYS = ["first-key-4f9c2a", "second-key-77d0e1"]
FILE_KEY = "from-the-secret-b3e8"
UPLOAD = {"image_file": ("normal_1.jpeg", (FIXTURES / "normal_1.jpeg").read_bytes(), "image/jpeg")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "api-keys"
    path.write_text(f"\n  {FILE_KEY}  \n\n")  # as a mounted Secret may hold it: blank lines, spaces
    return path


@pytest.fixture(scope="module")
def client(trained_weights: Path, keys_file: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=trained_weights, api_keys=KEYS, api_keys_file=keys_file, log_format="json")
    with TestClient(create_app(settings)) as client:
        wait_until_ready(client)
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/pneumonia/predict"),
        ("POST", "/pneumonia/predict/batch"),
        ("GET", "/models"),
        ("GET", "/models/pneumonia"),
    ],
)
def test_prediction_and_model_routes_need_a_key(client: TestClient, method: str, path: str) -> None:
    files = UPLOAD if method == "POST" else None
    missing = client.request(method, path, files=files)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert "API key" in missing.json()["detail"]
    for wrong in (bearer("not-a-key"), bearer(KEYS[0][:-1]), {"Authorization": f"Basic {KEYS[0]}"}):
        refused = client.request(method, path, files=files, headers=wrong)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["detail"]
    for key in (*KEYS, FILE_KEY):
        assert client.request(method, path, files=files, headers=bearer(key)).status_code == 200


def test_probes_scrapers_the_page_and_docs_need_no_key(client: TestClient) -> None:
    for path in ("/healthcheck", "/readyz", "/metrics", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_the_key_is_checked_before_the_upload_is_read(client: TestClient) -> None:
    too_large = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(2**31)}
    assert client.post("/pneumonia/predict", headers=too_large).status_code == 401


def test_refusals_are_counted_and_no_key_is_ever_logged(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.post("/pneumonia/predict", files=UPLOAD)
    client.post("/pneumonia/predict", files=UPLOAD, headers=bearer("wrong-key-9d2f"))
    client.post("/pneumonia/predict", files=UPLOAD, headers=bearer(KEYS[1]))
    metrics = client.get("/metrics").text
    assert 'errors_total{kind="missing_api_key"}' in metrics
    assert 'errors_total{kind="invalid_api_key"}' in metrics
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    statuses = [line["status"] for line in lines if line.get("route") == "/pneumonia/predict"]
    assert statuses == [401, 401, 200]
    logged = json.dumps(lines) + repr(client.app.state.settings)
    assert not any(key in logged for key in (*KEYS, FILE_KEY, "wrong-key-9d2f"))


def test_openapi_offers_swaggers_authorize_only_when_keys_are_set(client: TestClient, trained_weights: Path) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "one of the server's keys (`CLASSIFIER_API_KEYS`, `CLASSIFIER_API_KEYS_FILE`)",
    }
    assert schema["paths"]["/pneumonia/predict"]["post"]["security"] == [{"APIKey": []}]
    assert "security" not in schema["paths"]["/healthcheck"]["get"]
    open_schema = TestClient(create_app(Settings(models_dir=trained_weights))).get("/openapi.json").json()
    assert "securitySchemes" not in open_schema.get("components", {})
    assert "security" not in open_schema["paths"]["/pneumonia/predict"]["post"]


def test_keys_come_from_the_environment_and_a_file(
    monkeypatch: pytest.MonkeyPatch, keys_file: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLASSIFIER_API_KEYS", f" {KEYS[0]}, {KEYS[1]},")
    monkeypatch.setenv("CLASSIFIER_API_KEYS_FILE", str(keys_file))
    settings = Settings()
    assert [key.get_secret_value() for key in settings.accepted_api_keys()] == [*KEYS, FILE_KEY]
    assert not any(key in repr(settings) or key in str(settings) for key in (*KEYS, FILE_KEY))
    monkeypatch.delenv("CLASSIFIER_API_KEYS_FILE")
    monkeypatch.delenv("CLASSIFIER_API_KEYS")
    assert Settings().accepted_api_keys() == []
    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    for path, problem in ((tmp_path / "missing", "cannot read the API keys file"), (empty, "holds no key")):
        with pytest.raises(ValidationError, match=problem):
            Settings(api_keys_file=path)


def test_serve_refuses_to_start_with_a_missing_keys_file_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    env = {**os.environ, "CLASSIFIER_API_KEYS_FILE": str(missing)}
    command = [sys.executable, "-m", "classifier.serve"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    problem = f"cannot read the API keys file {missing}: No such file or directory"
    assert done.stderr.splitlines() == [f"error: CLASSIFIER_API_KEYS_FILE: {problem}"]
