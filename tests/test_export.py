"""The LiteRT export serves the same predictions as the Keras model it came from."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from classifier.inference import ModelFileError, load_model
from classifier.preprocessing import preprocess
from tests.helpers import FIXTURES

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def exported(trained_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained model with its LiteRT export beside it."""
    import keras

    from classifier.export import export_litert

    folder = tmp_path_factory.mktemp("exported")
    for suffix in (".keras", ".json"):
        shutil.copy(trained_weights / f"pneumonia{suffix}", folder)
    path = folder / "pneumonia.keras"
    export_litert(keras.saving.load_model(path), path.with_suffix(".tflite"))
    return path


def fixture_batch(size: int) -> np.ndarray:
    return np.stack([preprocess(path.read_bytes(), size) for path in sorted(FIXTURES.glob("*.jpeg"))])


def test_both_runtimes_give_the_same_predictions(exported: Path) -> None:
    lite, reference = load_model(exported, "litert"), load_model(exported, "keras")
    batch = fixture_batch(lite.image_size)
    for one, other in zip(lite.predict(batch), reference.predict(batch), strict=True):
        assert one.predicted_class == other.predicted_class
        for name in lite.classes:
            assert one.probabilities[name] == pytest.approx(other.probabilities[name], abs=1e-5)
        np.testing.assert_allclose(one.attention, other.attention, atol=1e-5)
    assert lite.predict(batch[:1])[0].probabilities == pytest.approx(lite.predict(batch)[0].probabilities, abs=1e-6)


def test_auto_takes_the_export_and_falls_back_to_keras(exported: Path, tmp_path: Path) -> None:
    assert load_model(exported).runtime == "litert"
    for suffix in (".keras", ".json"):
        shutil.copy(exported.with_suffix(suffix), tmp_path)
    assert load_model(tmp_path / "pneumonia.keras").runtime == "keras"
    with pytest.raises(ModelFileError, match="tflite not found"):
        load_model(tmp_path / "pneumonia.keras", "litert")


def test_litert_model_is_safe_from_many_threads(exported: Path) -> None:
    model = load_model(exported, "litert")
    batch = fixture_batch(model.image_size)
    expected = [p.probabilities for p in model.predict(batch)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: model.predict(batch[i % len(batch)][np.newaxis])[0], range(64)))
    for i, prediction in enumerate(results):
        assert prediction.probabilities == pytest.approx(expected[i % len(batch)], abs=1e-6)
