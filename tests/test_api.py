"""The service's contract: health, readiness, predictions (multipart, JSON, batch), models, metrics, the web page."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from classifier.app import create_app
from classifier.card import ModelCard
from classifier.errors import ServiceError, UserError
from classifier.inference import ModelFileError
from classifier.input_check import CHECK_NAME
from classifier.overlay import OVERLAY_SIDE, heat_colours, overlay_png
from classifier.pool import InferencePool
from classifier.registry import ModelRegistry
from classifier.settings import Settings
from tests.helpers import FIXTURES, wait_until_ready

FIXTURE = FIXTURES / "normal_1.jpeg"


@pytest.fixture(scope="module")
def client(trained_weights: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=trained_weights))) as client:
        wait_until_ready(client)
        yield client


@pytest.fixture(scope="module")
def card(trained_weights: Path) -> ModelCard:
    return ModelCard.load(trained_weights / "pneumonia.json")


def upload(path: Path = FIXTURE) -> dict:
    return {"image_file": (path.name, path.read_bytes(), "image/jpeg")}


def test_healthcheck_answers_good_to_go(client: TestClient) -> None:
    response = client.get("/healthcheck")
    assert response.status_code == 200
    assert response.json() == "Good to go"


def test_readyz_once_every_model_is_loaded(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "models": {"pneumonia": "ready"}}


def test_before_loading_readyz_and_predict_answer_503(trained_weights: Path) -> None:
    client = TestClient(create_app(Settings(models_dir=trained_weights)))  # no lifespan: nothing loads
    assert client.get("/healthcheck").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "models": {"pneumonia": "loading"}}
    response = client.post("/pneumonia/predict", files=upload())
    assert response.status_code == 503 and "loading" in response.json()["detail"]
    assert response.headers["Retry-After"] == "1"


def test_with_several_workers_a_worker_starts_serving_once_its_models_are_loaded(trained_weights: Path) -> None:
    # uvicorn listens after the app's startup, so a late or replacement worker never answers "model loading"
    with TestClient(create_app(Settings(models_dir=trained_weights, workers=2))) as client:
        assert client.get("/readyz").json() == {"ready": True, "models": {"pneumonia": "ready"}}


def test_a_model_that_fails_to_load_keeps_readyz_at_503(trained_weights: Path, tmp_path: Path) -> None:
    shutil.copy(trained_weights / "pneumonia.json", tmp_path / "pneumonia.json")
    (tmp_path / "pneumonia.keras").write_bytes(b"not a keras file")
    with TestClient(create_app(Settings(models_dir=tmp_path, input_check="off"))) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["models"]["pneumonia"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["models"] == {"pneumonia": "failed"}
        response = client.post("/pneumonia/predict", files=upload())
        assert response.status_code == 503 and "failed to load" in response.json()["detail"]


def test_no_models_is_not_ready(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(models_dir=tmp_path, input_check="off")))
    assert client.get("/readyz").status_code == 503
    assert client.get("/models").json() == []


def test_predict_multipart_image_file(client: TestClient, card: ModelCard) -> None:
    response = client.post("/pneumonia/predict", files=upload())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "predicted_class",
        "probabilities",
        "pneumonia_probability",
        "threshold",
        "model",
        "image",
        "input_check",
    }
    assert set(body["probabilities"]) == {"normal", "pneumonia"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(body["pneumonia_probability"], float)
    assert body["pneumonia_probability"] == body["probabilities"]["pneumonia"]
    assert body["threshold"] == card.threshold
    expected = "pneumonia" if body["pneumonia_probability"] >= card.threshold else "normal"
    assert body["predicted_class"] == expected
    assert body["model"] == {"name": "pneumonia", "version": card.version}
    width, height = Image.open(FIXTURE).size
    assert body["image"] == {"width": width, "height": height, "format": "JPEG"}


def test_predict_matches_the_cli_path(client: TestClient, trained_weights: Path) -> None:
    from classifier.inference import load_model

    expected = load_model(trained_weights / "pneumonia.keras").predict_bytes(FIXTURE.read_bytes())
    body = client.post("/pneumonia/predict", files=upload()).json()
    assert body["predicted_class"] == expected.predicted_class
    for name, p in expected.probabilities.items():
        assert body["probabilities"][name] == pytest.approx(p, abs=1e-5)


def test_predict_with_attention_returns_overlay_and_grid(client: TestClient) -> None:
    response = client.post("/pneumonia/predict", params={"attention": "true"}, files=upload())
    assert response.status_code == 200
    attention = response.json()["attention_map"]
    grid = np.array(attention["grid"])
    assert grid.shape == (8, 8) and 0.0 <= grid.min() <= grid.max() <= 1.0
    overlay = Image.open(io.BytesIO(base64.b64decode(attention["overlay_png"])))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    width, height = Image.open(FIXTURE).size
    assert max(overlay.size) == OVERLAY_SIDE
    assert overlay.size[0] / overlay.size[1] == pytest.approx(width / height, rel=0.02)


def test_predict_accepts_the_articles_json_data_url(client: TestClient) -> None:
    data_url = "data:image/jpeg;base64," + base64.b64encode(FIXTURE.read_bytes()).decode()
    from_json = client.post("/pneumonia/predict", json={"image": data_url})
    from_form = client.post("/pneumonia/predict", files=upload())
    assert from_json.status_code == 200, from_json.text
    assert from_json.json() == from_form.json()


def test_batch_answers_in_order_and_isolates_bad_images(client: TestClient) -> None:
    good = sorted(FIXTURES.glob("*.jpeg"))[:2]
    files = [
        ("image_file", (good[0].name, good[0].read_bytes(), "image/jpeg")),
        ("image_file", ("notes.txt", b"not an image at all", "text/plain")),
        ("image_file", ("cut.jpeg", good[1].read_bytes()[:2000], "image/jpeg")),
        ("image_file", (good[1].name, good[1].read_bytes(), "image/jpeg")),
    ]
    response = client.post("/pneumonia/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["filename"] for r in results] == [good[0].name, "notes.txt", "cut.jpeg", good[1].name]
    singles = [client.post("/pneumonia/predict", files=upload(path)).json() for path in good]
    assert {k: v for k, v in results[0].items() if k != "filename"} == singles[0]
    assert {k: v for k, v in results[3].items() if k != "filename"} == singles[1]
    assert results[1]["status_code"] == 415 and results[1]["detail"]
    assert results[2]["status_code"] == 400 and results[2]["detail"]


def test_batch_with_attention(client: TestClient) -> None:
    response = client.post("/pneumonia/predict/batch?attention=true", files=upload())
    assert response.status_code == 200
    assert len(response.json()) == 1 and "attention_map" in response.json()[0]


def test_models_lists_each_card(client: TestClient, card: ModelCard) -> None:
    [info] = client.get("/models").json()
    assert info["name"] == "pneumonia" and info["status"] == "ready"
    assert info["predict_url"] == "/pneumonia/predict"
    assert info["classes"] == ["normal", "pneumonia"] and info["positive_class"] == "pneumonia"
    assert info["threshold"] == card.threshold and info["input_size"] == 64
    assert info["validation"]["roc_auc"] == card.validation.roc_auc


def test_model_card_endpoint(client: TestClient, card: ModelCard) -> None:
    assert client.get("/models/pneumonia").json() == card.model_dump(mode="json")
    missing = client.get("/models/covid")
    assert missing.status_code == 404 and "covid" in missing.json()["detail"]


def test_metrics_count_requests_predictions_and_errors(client: TestClient) -> None:
    client.post("/pneumonia/predict", files=upload())
    client.post("/pneumonia/predict", files={"image_file": ("x.txt", b"hello", "text/plain")})
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/pneumonia/predict",status="200"}' in text
    assert 'http_request_duration_seconds_bucket{le="0.05",method="POST",route="/pneumonia/predict"}' in text
    assert 'predictions_total{model="pneumonia",predicted_class=' in text
    assert 'errors_total{kind="unsupported_image"}' in text
    assert 'inference_duration_seconds_count{model="pneumonia"}' in text
    assert 'models_ready{model="pneumonia"} 1.0' in text
    assert "inference_in_flight 0.0" in text


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert client.get("/healthcheck", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthcheck", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert len(made) == 32 and made != "bad id\twith spaces"


def test_busy_server_answers_503_with_retry_after(client: TestClient) -> None:
    pool = client.app.state.pool
    pool.in_flight = pool.max_in_flight
    try:
        response = client.post("/pneumonia/predict", files=upload())
    finally:
        pool.in_flight = 0
    assert response.status_code == 503 and "busy" in response.json()["detail"]
    assert response.headers["Retry-After"] == "1"


@pytest.mark.anyio
async def test_pool_runs_off_the_loop_and_refuses_beyond_its_bound() -> None:
    pool = InferencePool(threads=1, max_in_flight=2, retry_after_s=3)
    release = threading.Event()
    callers: list[str] = []

    def job() -> str:
        callers.append(threading.current_thread().name)
        release.wait(5)
        return "done"

    results = []
    async with anyio.create_task_group() as tasks:
        for _ in range(2):
            tasks.start_soon(lambda: _collect(pool, job, results))
        await anyio.sleep(0.05)
        assert pool.in_flight == 2
        with pytest.raises(ServiceError) as refused:
            await pool.run(job)
        release.set()
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "3"}
    assert results == ["done", "done"] and pool.in_flight == 0
    assert threading.main_thread().name not in callers


async def _collect(pool: InferencePool, job, results: list) -> None:
    results.append(await pool.run(job))


def test_cors_only_for_configured_origins(trained_weights: Path) -> None:
    settings = Settings(models_dir=trained_weights, cors_origins=["https://viewer.example"])
    client = TestClient(create_app(settings))
    allowed = client.get("/healthcheck", headers={"Origin": "https://viewer.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://viewer.example"
    other = client.get("/healthcheck", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_json_logs_carry_the_request_id_and_never_the_upload(
    trained_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = TestClient(create_app(Settings(models_dir=trained_weights, log_format="json")))
    client.post(
        "/pneumonia/predict",
        files={"image_file": ("patient-smith.png", b"SECRET-PIXELS", "image/png")},
        headers={"X-Request-ID": "req-42"},
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [entry] = [line for line in lines if line["logger"] == "classifier.requests"]
    assert entry["request_id"] == "req-42" and entry["route"] == "/pneumonia/predict"
    assert entry["status"] == 503 and entry["duration_ms"] > 0
    assert all("SECRET" not in json.dumps(line) and "smith" not in json.dumps(line) for line in lines)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLASSIFIER_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("CLASSIFIER_MODELS", "pneumonia, covid")
    monkeypatch.setenv("CLASSIFIER_MAX_UPLOAD_MB", "2.5")
    monkeypatch.setenv("CLASSIFIER_CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("CLASSIFIER_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.models_dir == tmp_path and settings.models == ["pneumonia", "covid"]
    assert settings.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.log_level == "DEBUG"


def test_registry_finds_models_and_names_missing_ones(trained_weights: Path, tmp_path: Path) -> None:
    assert [m.name for m in ModelRegistry.discover(trained_weights, [])] == ["pneumonia"]
    with pytest.raises(ModelFileError, match=r"covid\.json"):
        ModelRegistry.discover(trained_weights, ["covid"])
    shutil.copy(trained_weights / "pneumonia.json", tmp_path / "Bad Name.json")
    (tmp_path / "Bad Name.keras").write_bytes(b"")
    with pytest.raises(UserError, match="lower-case"):
        ModelRegistry.discover(tmp_path, [])


def test_overlay_blends_a_heatmap_on_the_image() -> None:
    pixels = np.full((200, 100), 0.5, np.float32)
    attention = np.zeros((8, 8), np.float32)
    attention[:, 4:] = 1.0
    image = Image.open(io.BytesIO(overlay_png(pixels, attention, side=96)))
    assert image.size == (48, 96)
    rgb = np.asarray(image, dtype=float)
    assert rgb[48, 44, 0] > rgb[48, 44, 2] and rgb[48, 4, 2] > rgb[48, 4, 0]  # red where attended, blue not
    np.testing.assert_allclose(heat_colours(np.array([0.0, 1.0])), [[0, 0, 0.5], [0.5, 0, 0]])


def test_web_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        response = client.get(asset)
        assert response.status_code == 200
        page_text = page.text + response.text
        assert "http://" not in page_text and "https://" not in page_text and "//cdn" not in page_text


def test_docs_work_offline(client: TestClient) -> None:
    docs = client.get("/docs").text
    assert "cdn." not in docs and "/static-offline-docs/swagger-ui-bundle.js" in docs
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200


def test_openapi_documents_the_upload_and_the_answer(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/pneumonia/predict"]["post"]
    content = operation["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["image_file"]["format"] == "binary"
    assert "image" in content["application/json"]["schema"]["properties"]
    answer = schema["components"]["schemas"]["PneumoniaPrediction"]
    assert {"predicted_class", "probabilities", "pneumonia_probability", "model", "image"} <= set(answer["required"])
    assert answer["examples"][0]["predicted_class"] == "pneumonia"
    assert {"400", "413", "415", "422", "503"} <= set(operation["responses"])


def test_openapi_says_what_each_model_is_for_and_not_for(client: TestClient, card: ModelCard) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/pneumonia/predict", "/pneumonia/predict/batch"):
        description = paths[route]["post"]["description"]
        assert card.description in description and card.intended_use in description
        assert f"**Not for**: {card.not_for or '-'}" in description


def test_openapi_documents_the_cards_validation_scores(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["ModelInfo"]["properties"]["validation"] == {"$ref": "#/components/schemas/ValidationScores"}
    scores = schemas["ValidationScores"]["properties"]
    assert {"accuracy", "roc_auc", "confusion_matrix", "sensitivity", "f1_macro", "cross_validation"} <= set(scores)


def test_serve_runs_one_worker_itself_and_supervises_several(monkeypatch: pytest.MonkeyPatch) -> None:
    from classifier import serve

    served: list[str] = []
    monkeypatch.setattr(serve, "serve_worker", lambda: served.append("in process"))
    monkeypatch.setattr(serve.Supervisor, "run", lambda self: served.append(f"{self.workers} supervised") or 0)
    serve.main()
    monkeypatch.setenv("CLASSIFIER_WORKERS", "3")
    with pytest.raises(SystemExit) as exit_:
        serve.main()
    assert served == ["in process", "3 supervised"] and exit_.value.code == 0


def test_a_three_class_model_is_served_beside_without_code(trained_weights: Path, tmp_path: Path) -> None:
    from classifier.model import build_model

    for path in [*trained_weights.glob("pneumonia.*"), *trained_weights.glob(f"{CHECK_NAME}.*")]:
        shutil.copy(path, tmp_path / path.name)
    classes = ["covid", "normal", "viral_pneumonia"]
    build_model(tuple(classes), name="covid").save(tmp_path / "covid.keras")
    card = ModelCard.load(trained_weights / "pneumonia.json")
    card.model_copy(update={"name": "covid", "classes": classes, "positive_class": None, "threshold": None}).save(
        tmp_path / "covid.json"
    )
    with TestClient(create_app(Settings(models_dir=tmp_path))) as client:
        wait_until_ready(client)
        assert client.get("/readyz").json()["models"] == {"covid": "ready", "pneumonia": "ready"}
        body = client.post("/covid/predict", files=upload()).json()
        assert set(body) == {"predicted_class", "probabilities", "threshold", "model", "image", "input_check"}
        assert list(body["probabilities"]) == classes and body["threshold"] is None
        assert body["predicted_class"] == max(body["probabilities"], key=body["probabilities"].get)
        assert "pneumonia_probability" in client.post("/pneumonia/predict", files=upload()).json()
        assert [m["name"] for m in client.get("/models").json()] == ["covid", "pneumonia"]
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        assert schemas["CovidPrediction"]["properties"]["predicted_class"]["enum"] == classes
