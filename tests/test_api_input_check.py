"""The input check's contract: `input_check` in every answer, 422 ``not_a_chest_xray`` (refuse), a flagged answer
(flag), nothing (off), a refused image of a batch, OpenAPI, the check's card, a missing check, and the CLI.

The app serves the tiny test model with the shipped check (see conftest): fixtures/ are accepted, and a colour
image is refused by the check's colour rule whatever its network says."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from classifier.app import create_app
from classifier.cli import main
from classifier.inference import ModelFileError
from classifier.input_check import CHECK_NAME, CheckCard
from classifier.settings import Settings
from tests.helpers import FIXTURES, wait_until_ready

XRAY = FIXTURES / "normal_1.jpeg"
DETAIL_START = "The image does not look like a frontal chest X-ray (it is a colour image"


def colour_photo() -> bytes:
    """A small picture in many colours: refused by the colour rule."""
    rng = np.random.default_rng(7)
    picture = Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).resize((320, 240))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def upload(name: str, data: bytes) -> dict:
    return {"image_file": (name, data, "application/octet-stream")}


@pytest.fixture(scope="module")
def clients(trained_weights: Path) -> Iterator[dict[str, TestClient]]:
    apps = {mode: create_app(Settings(models_dir=trained_weights, input_check=mode)) for mode in ("refuse", "flag")}
    apps["off"] = create_app(Settings(models_dir=trained_weights, input_check="off"))
    with TestClient(apps["refuse"]) as refuse, TestClient(apps["flag"]) as flag, TestClient(apps["off"]) as off:
        for client in (refuse, flag, off):
            wait_until_ready(client)
        yield {"refuse": refuse, "flag": flag, "off": off}


def test_an_accepted_xray_carries_the_verdict_and_the_models_typicality(
    clients: dict[str, TestClient], trained_weights: Path
) -> None:
    answer = clients["refuse"].post("/pneumonia/predict", files=upload(XRAY.name, XRAY.read_bytes())).json()
    check = answer["input_check"]
    card = CheckCard.load(trained_weights / f"{CHECK_NAME}.json")
    assert check["chest_xray"] is True and check["reason"] is None
    assert card.threshold <= check["score"] <= 1 and check["threshold"] == card.threshold
    assert 0 <= check["model_typicality"] <= 1  # the test model's statistics were written when it was deployed


def test_refuse_answers_422_counts_and_audits_it(
    clients: dict[str, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = clients["refuse"]
    with caplog.at_level(logging.INFO, logger="classifier.audit"):
        response = client.post("/pneumonia/predict", files=upload("cat.png", colour_photo()))
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "kind", "score"} and body["kind"] == "not_a_chest_xray" and body["score"] == 0
    assert body["detail"].startswith(DETAIL_START) and body["detail"].endswith(").")
    assert 'errors_total{kind="not_a_chest_xray"}' in client.get("/metrics").text
    [record] = [r for r in caplog.records if r.name == "classifier.audit"]
    assert record.audit["refusal"] == "not_a_chest_xray" and record.audit["input_check"]["chest_xray"] is False


def test_flag_classifies_it_and_says_so(clients: dict[str, TestClient]) -> None:
    response = clients["flag"].post("/pneumonia/predict", files=upload("cat.png", colour_photo()))
    assert response.status_code == 200
    answer = response.json()
    assert answer["predicted_class"] in ("normal", "pneumonia")
    assert answer["input_check"]["chest_xray"] is False and answer["input_check"]["score"] == 0
    assert answer["input_check"]["reason"].startswith("it is a colour image")


def test_off_skips_the_check(clients: dict[str, TestClient]) -> None:
    response = clients["off"].post("/pneumonia/predict", files=upload("cat.png", colour_photo()))
    assert response.status_code == 200 and "input_check" not in response.json()
    assert clients["off"].get(f"/models/{CHECK_NAME}").status_code == 404


def test_a_batch_refuses_only_the_image_that_is_not_an_xray(clients: dict[str, TestClient]) -> None:
    files = [
        ("image_file", (XRAY.name, XRAY.read_bytes())),
        ("image_file", ("cat.png", colour_photo())),
        ("image_file", ("covid_1.jpeg", (FIXTURES / "covid_1.jpeg").read_bytes())),
    ]
    xray, refused, other = clients["refuse"].post("/pneumonia/predict/batch", files=files).json()
    assert xray["filename"] == XRAY.name and xray["input_check"]["chest_xray"] is True
    assert other["filename"] == "covid_1.jpeg" and "predicted_class" in other
    assert refused["filename"] == "cat.png" and refused["status_code"] == 422
    assert refused["kind"] == "not_a_chest_xray" and refused["score"] == 0
    assert refused["detail"].startswith(DETAIL_START)


def test_models_serves_the_checks_card(clients: dict[str, TestClient], trained_weights: Path) -> None:
    card = clients["refuse"].get(f"/models/{CHECK_NAME}").json()
    assert card == CheckCard.load(trained_weights / f"{CHECK_NAME}.json").model_dump(mode="json")
    [info] = clients["refuse"].get("/models").json()
    assert info["name"] == "pneumonia"
    assert info["input_check"] == {
        "name": CHECK_NAME,
        "version": card["version"],
        "mode": "refuse",
        "threshold": card["threshold"],
        "card_url": f"/models/{CHECK_NAME}",
    }
    assert clients["flag"].get("/models").json()[0]["input_check"]["mode"] == "flag"
    assert clients["off"].get("/models").json()[0]["input_check"] is None


def test_openapi_documents_the_field_and_the_422(clients: dict[str, TestClient]) -> None:
    schema = clients["refuse"].get("/openapi.json").json()
    responses = schema["paths"]["/pneumonia/predict"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Refusal")
    assert "not_a_chest_xray" in responses["422"]["description"]
    assert "input_check" in schema["components"]["schemas"]["PneumoniaPrediction"]["properties"]
    assert set(schema["components"]["schemas"]["InputCheckResult"]["properties"]) >= {
        "chest_xray",
        "score",
        "threshold",
        "model_typicality",
    }


def test_a_missing_check_stops_the_start_unless_it_is_off(trained_weights: Path, tmp_path: Path) -> None:
    for path in trained_weights.glob("pneumonia.*"):
        shutil.copy(path, tmp_path)
    with pytest.raises(ModelFileError, match="CLASSIFIER_INPUT_CHECK=off"):
        create_app(Settings(models_dir=tmp_path))
    create_app(Settings(models_dir=tmp_path, input_check="off"))


def test_cli_predict_says_which_files_it_refused(
    trained_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = tmp_path / "cat.png"
    cat.write_bytes(colour_photo())
    model = str(trained_weights / "pneumonia.keras")
    assert main(["predict", "--model", model, str(XRAY), str(cat)]) == 0
    xray_line, cat_line = capsys.readouterr().out.splitlines()
    assert xray_line.startswith(f"{XRAY}: ") and "normal=" in xray_line
    assert cat_line.startswith(f"{cat}: refused: not a frontal chest X-ray (it is a colour image")
    assert main(["predict", "--json", "--input-check", "flag", "--model", model, str(cat)]) == 0
    flagged = json.loads(capsys.readouterr().out)
    assert flagged["chest_xray"] is False and "predicted_class" in flagged


def test_cli_evaluate_leaves_refused_images_out_and_counts_them(
    trained_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder, names in {"NORMAL": ("normal_1.jpeg", "normal_2.jpeg"), "PNEUMONIA": ("covid_1.jpeg",)}.items():
        (tmp_path / "test" / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(FIXTURES / name, tmp_path / "test" / folder / f"IM-{name}")
    cat = tmp_path / "test" / "NORMAL" / "cat.png"
    cat.write_bytes(colour_photo())
    argv = ["evaluate", "--data-dir", str(tmp_path), "--model", str(trained_weights / "pneumonia.keras")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert (report["refused"], report["n"], report["input_check"]) == (1, 3, "refuse")
    assert len(err.splitlines()) == 1 and err.startswith(f"{cat}: refused: not a frontal chest X-ray (it is a colour")
    assert main([*argv, "--input-check", "flag"]) == 0
    flagged = json.loads(capsys.readouterr().out)
    assert (flagged["refused"], flagged["n"]) == (1, 4)
