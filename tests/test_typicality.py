"""`model_typicality`: how typical an image is of a model's own training images (`<name>.typicality.npz`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from classifier.cli import main
from classifier.density import FeatureDensity
from classifier.inference import TYPICALITY_SUFFIX, load_model
from classifier.preprocessing import preprocess
from tests.helpers import synthetic_xray


def test_an_image_unlike_the_training_set_is_atypical(trained_weights: Path) -> None:
    model = load_model(trained_weights / "pneumonia.keras")
    assert model.density is not None  # deploying the model wrote its statistics
    rng = np.random.default_rng(11)
    like = np.stack([preprocess(np.asarray(synthetic_xray(rng, sick), np.float32) / 255) for sick in (False, True)])
    checkerboard = np.kron((np.indices((8, 8)).sum(axis=0) % 2).astype(np.float32), np.ones((8, 8)))
    unlike = np.stack([preprocess(checkerboard), preprocess(rng.random((64, 64)).astype(np.float32))])
    typical = [p.typicality for p in model.predict(like)]
    atypical = [p.typicality for p in model.predict(unlike)]
    assert max(atypical) < 0.01 < min(typical), (typical, atypical)


def test_the_typicality_command_recomputes_the_deployed_statistics(
    trained_weights: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for suffix in (".keras", ".json"):
        shutil.copy(trained_weights / f"pneumonia{suffix}", tmp_path)
    argv = ["typicality", "--dataset", "pneumonia", "--data-dir", str(data_root), "--weights-dir", str(tmp_path)]
    assert main(argv) == 0
    written = tmp_path / f"pneumonia{TYPICALITY_SUFFIX}"
    assert capsys.readouterr().out == f"wrote {written}\n"
    again, deployed = FeatureDensity.load(written), FeatureDensity.load(trained_weights / written.name)
    np.testing.assert_allclose(again.reference, deployed.reference, rtol=1e-3)
    np.testing.assert_allclose(again.mean, deployed.mean, rtol=1e-3, atol=1e-5)


def test_the_typicality_command_needs_a_deployed_model(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["typicality", "--dataset", "pneumonia", "--data-dir", str(data_root), "--weights-dir", str(tmp_path)]
    assert main(argv) == 1
    assert "pneumonia.keras not found" in capsys.readouterr().err
