"""Near-duplicate grouping, k-fold validation and starting from another model's layers."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from classifier.card import ModelCard
from classifier.data import group_near_duplicates, list_examples, load_images, split_by_group
from classifier.datasets import KAGGLE_COVID, get_dataset
from classifier.inference import load_model
from classifier.model import with_attention
from classifier.train import Train
from tests.helpers import FIXTURES, posed_xray

COVID_FOLDERS = {"Covid": True, "Normal": False, "Viral Pneumonia": True}


@pytest.fixture(scope="module")
def covid_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The covid zip's layout, with each fourth image also saved re-encoded under a second name."""
    root = tmp_path_factory.mktemp("covid") / "Covid19-dataset"
    rng = np.random.default_rng(5)
    for folder, sick in COVID_FOLDERS.items():
        (root / "train" / folder).mkdir(parents=True)
        for i in range(8):
            image = posed_xray(rng, sick)
            image.save(root / "train" / folder / f"{i:02d}.jpeg", quality=90)
            if i % 4 == 0:
                image.resize((150, 150), Image.Resampling.BILINEAR).save(root / "train" / folder / f"{i:02d}b.png")
    return root.parent


def test_near_duplicates_share_a_group(covid_folder: Path) -> None:
    spec = get_dataset("covid")
    [kaggle_covid] = [source for source in spec.sources if source.kaggle_slug == KAGGLE_COVID.kaggle_slug]
    examples = list_examples(covid_folder / "Covid19-dataset" / "train", kaggle_covid, spec.classes)
    examples = group_near_duplicates(examples, load_images([e.path for e in examples], 64))
    groups = {e.path.name: e.group for e in examples if e.path.parent.name == "Normal"}
    assert groups["00.jpeg"] == groups["00b.png"]
    assert groups["04.jpeg"] == groups["04b.png"]
    assert len(set(groups.values())) == 8
    for fold in range(5):
        train, val = ([examples[i] for i in rows] for rows in split_by_group(examples, 0.2, seed=0, fold=fold))
        assert {e.group for e in train}.isdisjoint({e.group for e in val})


def test_covid_cross_validates_from_the_pneumonia_model(data_root: Path, trained_weights: Path, tmp_path: Path) -> None:
    for name in ("pneumonia.keras", "pneumonia.json"):
        shutil.copy(trained_weights / name, tmp_path / name)
    trainer = Train("covid", data_dir=data_root, epochs=2, folds=2, batch_size=16, weights_dir=tmp_path)
    started = keras.saving.load_model(trained_weights / "pneumonia.keras")
    np.testing.assert_array_equal(
        trainer.build().get_layer("block3_conv1").get_weights()[0],
        started.get_layer("block3_conv1").get_weights()[0],
    )
    trainer.run()
    card = ModelCard.load(tmp_path / "covid.json")
    assert card.classes == ["covid", "normal", "other_pneumonia"] and card.threshold is None
    assert list(card.class_offsets) == card.classes and card.class_offsets["covid"] == 0.0
    assert "lowest recall" in card.class_offsets_rule
    cv = card.validation.cross_validation
    assert cv.folds == 2 and len(cv.per_fold) == 2
    assert set(cv.std) >= {"accuracy", "roc_auc"}
    assert card.training.validation_size == card.training.train_size == 48 + 25 + 36
    assert card.training.groups == trainer.get_data().groups < 48 + 25 + 36, "patients and near-duplicates"
    assert 1 <= card.training.best_epoch <= 2
    assert sum(map(sum, card.validation.confusion_matrix)) == 48 + 25 + 36
    assert card.validation.by_source["cohen"].recall.keys() == {"covid", "other_pneumonia"}
    shipped = keras.saving.load_model(tmp_path / "covid.keras", safe_mode=True)
    size = card.input.size  # the dataset's own (96 for covid), beside a 64x64 pneumonia model it started from
    assert size == get_dataset("covid").image_size
    probabilities, attention = with_attention(shipped)(np.zeros((1, size, size, 1), "float32"))
    assert probabilities.shape == (1, 3) and attention.shape == (1, size // 8, size // 8, 1)
    served = load_model(tmp_path / "covid.keras")  # the LiteRT export of the averaged networks
    assert served.runtime == "litert"
    image = (FIXTURES / "covid_1.jpeg").read_bytes()
    keras_runtime = load_model(tmp_path / "covid.keras", runtime="keras")
    np.testing.assert_allclose(
        list(served.predict_bytes(image).probabilities.values()),
        list(keras_runtime.predict_bytes(image).probabilities.values()),
        atol=1e-4,
    )


def test_covid_without_the_pneumonia_model_says_what_to_train(data_root: Path, tmp_path: Path) -> None:
    from classifier.errors import UserError

    with pytest.raises(UserError, match="train it first"):
        Train("covid", data_dir=data_root, epochs=1, folds=2, weights_dir=tmp_path).build()
