"""The training pipeline end to end on a tiny generated data root of three sources: train, deploy, reload,
predict; patient grouping and figures per source and age group."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from classifier.card import ModelCard
from classifier.data import (
    Example,
    LayoutError,
    group_near_duplicates,
    list_dataset,
    list_examples,
    load_images,
    sampling_weights,
    split_by_group,
)
from classifier.datasets import KERMANY, get_dataset
from classifier.inference import load_model
from classifier.model import GatedAveragePooling, add_class_offsets, build_model, ensemble, with_attention
from classifier.scores import shift_probabilities
from tests.helpers import FIXTURES


def test_deploy_writes_model_card_and_plots(trained_weights: Path) -> None:
    card = ModelCard.load(trained_weights / "pneumonia.json")
    assert card.classes == ["normal", "pneumonia"]
    assert card.input.size == 64
    assert 0.0 <= card.threshold <= 1.0
    assert "validation" in card.threshold_rule and "test" in card.threshold_rule
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc", "f1", "confusion_matrix"):
        assert key in card.validation.model_dump()
    assert sum(map(sum, card.validation.confusion_matrix)) == card.training.validation_size
    assert card.training.train_size + card.training.validation_size == 48 + 25 + 36
    assert len(card.training.file_list_sha256) == 64
    assert card.training.epochs_run == 1 and card.training.seed == 1234
    for name in card.plots.values():
        assert (trained_weights / name).read_bytes().startswith(b"\x89PNG")


def test_saved_model_loads_in_safe_mode_and_predicts(trained_weights: Path) -> None:
    model = keras.saving.load_model(trained_weights / "pneumonia.keras", safe_mode=True)
    probabilities, attention = with_attention(model)(np.zeros((2, 64, 64, 1), "float32"))
    assert probabilities.shape == (2, 2) and attention.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, rtol=1e-5)


def test_loaded_model_predicts_a_real_fixture(trained_weights: Path) -> None:
    model = load_model(trained_weights / "pneumonia.keras")
    fixture = sorted(FIXTURES.glob("*.jpeg"))[0]
    prediction = model.predict_bytes(fixture.read_bytes())
    assert prediction.predicted_class in ("normal", "pneumonia")
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.attention.shape == (8, 8)
    assert 0.0 <= prediction.attention.min() <= prediction.attention.max() <= 1.0


def test_card_reports_each_source_and_age_group(trained_weights: Path) -> None:
    card = ModelCard.load(trained_weights / "pneumonia.json")
    by_source = card.validation.by_source
    assert set(by_source) == {"kermany", "kaggle-covid", "nih", "cohen"}
    assert sum(s.n for s in by_source.values()) == card.validation.n
    assert set(by_source["cohen"].recall) == {"pneumonia"}, "recall only of the classes a source holds"
    assert by_source["cohen"].specificity is None and by_source["cohen"].sensitivity is not None
    assert set(card.validation.by_age_group) == {"child", "adult"}
    assert [s.name for s in card.training.sources] == ["kermany", "kaggle-covid", "adult-cxr"]
    assert card.training.sources[2].data == "local folder adult_cxr/"
    for part, size in (("training", card.training.train_size), ("validation", card.training.validation_size)):
        assert sum(n for by_class in card.training.images[part].values() for n in by_class.values()) == size
    assert (
        card.training.images["validation"]["nih"]["normal"]
        == by_source["nih"].confusion_matrix[0][0] + (by_source["nih"].confusion_matrix[0][1])
    )
    assert card.not_for


def test_the_sources_of_a_dataset_are_listed_with_their_patients_and_ages(data_root: Path) -> None:
    examples = list_dataset(get_dataset("pneumonia"), data_root)
    assert len(examples) == 48 + 25 + 36
    adults = [e for e in examples if e.path.parent.parent.name == "adult_cxr"]
    assert {e.source for e in adults} == {"nih", "cohen"}
    assert all(e.age_group == "adult" for e in adults), "an adult source's rows without an age stay adults"
    assert {e.age_group for e in examples if e.source == "kermany"} == {"child"}
    covid = {f"{e.path.parent.name}/{e.path.name}": e for e in examples if e.source == "kaggle-covid"}
    assert covid["Covid/00.jpeg"].age_group == "adult" and covid["Normal/copy.jpeg"].age_group == "child"
    assert adults[0].group == adults[1].group == "adult-cxr/nih-normal-0"
    assert all(e.group for e in examples if e.source != "kaggle-covid")
    assert not any(e.group for e in covid.values()), "no patient ids in that dataset's names"


def test_validation_split_keeps_patients_and_duplicates_apart(data_root: Path) -> None:
    examples = list_dataset(get_dataset("pneumonia"), data_root)
    images = load_images([e.path for e in examples], 64)
    examples = group_near_duplicates(examples, images)
    by_name = {e.path.name: e for e in examples}
    assert by_name["copy.jpeg"].group == by_name["IM-0001-0003.jpeg"].group, "a copy joins its patient"
    for fold in range(4):
        train, val = ([examples[i] for i in rows] for rows in split_by_group(examples, 0.25, seed=3, fold=fold))
        assert {e.group for e in train}.isdisjoint({e.group for e in val})
        assert {(e.label, e.source) for e in val} >= {(0, "kermany"), (1, "kermany"), (0, "nih"), (1, "cohen")}
        assert len(train) + len(val) == len(examples)


def test_sampling_balances_classes_or_sources_within_a_cap() -> None:
    examples = [Example(Path(f"{i}"), label, str(i), source) for i, (label, source) in
                enumerate([(0, "a")] * 90 + [(0, "b")] * 10 + [(1, "a")] * 20)]  # fmt: skip
    labels = np.array([e.label for e in examples])
    by_class = sampling_weights(examples, 2)
    assert by_class[labels == 0].sum() == pytest.approx(0.5) and by_class.sum() == pytest.approx(1)
    by_source = sampling_weights(examples, 2, "source", max_oversampling=100)
    assert by_source[:90].sum() == pytest.approx(0.25) and by_source[90:100].sum() == pytest.approx(0.25)
    capped = sampling_weights(examples, 2, "source", max_oversampling=2)
    assert capped[labels == 0].sum() == pytest.approx(0.5)
    assert capped[90] / capped[0] < by_source[90] / by_source[0]


def test_wrong_layout_names_the_expected_folders(tmp_path: Path) -> None:
    (tmp_path / "train" / "cats").mkdir(parents=True)
    with pytest.raises(LayoutError, match="NORMAL"):
        list_examples(tmp_path / "train", KERMANY, get_dataset("pneumonia").classes)


def test_a_missing_local_source_says_what_it_needs(kaggle_folder: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(kaggle_folder, tmp_path / "chest_xray")
    shutil.copytree(kaggle_folder.parent / "covid19", tmp_path / "covid19")
    with pytest.raises(LayoutError, match=r"adult_cxr not found: the adult-cxr source .*metadata\.csv"):
        list_dataset(get_dataset("pneumonia"), tmp_path)
    (tmp_path / "adult_cxr").mkdir()
    (tmp_path / "adult_cxr" / "metadata.csv").write_text("file,label\nx.jpeg,normal\n")
    with pytest.raises(LayoutError, match=r"lacks the column.*patient"):
        list_dataset(get_dataset("pneumonia"), tmp_path)


def test_gated_pooling_rescales_by_the_attention_mean() -> None:
    features = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
    attention = np.array([1, 0, 1, 0], "float32").reshape(1, 2, 2, 1)
    pooled = GatedAveragePooling()([features, attention]).numpy()
    np.testing.assert_allclose(pooled, [[(0 + 4) / 2, (1 + 5) / 2]], rtol=1e-5)


def test_model_card_json_round_trips(trained_weights: Path) -> None:
    raw = json.loads((trained_weights / "pneumonia.json").read_text())
    assert ModelCard.model_validate(raw).model_dump(mode="json")["classes"] == raw["classes"]


def test_class_offsets_fold_into_the_output_layer_of_a_network_and_of_each_member_of_an_average() -> None:
    images = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    offsets = (0.0, 1.0, -0.5)
    members = [build_model(("a", "b", "c"), image_size=32, filters=(4, 8, 8, 8)) for _ in range(2)]
    before = [np.asarray(member(images)) for member in members]
    average = ensemble(members, name="average")
    add_class_offsets(average, offsets)
    expected = [shift_probabilities(p, np.array(offsets)) for p in before]
    np.testing.assert_allclose(np.asarray(average(images)[0]), np.mean(expected, axis=0), atol=1e-5)
    single = build_model(("a", "b", "c"), image_size=32, filters=(4, 8, 8, 8))
    raw = np.asarray(single(images))
    add_class_offsets(single, offsets)
    np.testing.assert_allclose(np.asarray(single(images)), shift_probabilities(raw, np.array(offsets)), atol=1e-5)


def test_build_model_attention_map_is_one_eighth_of_input() -> None:
    model = build_model(("a", "b", "c"), image_size=96)
    _, attention = with_attention(model)(np.zeros((1, 96, 96, 1), "float32"))
    assert attention.shape == (1, 12, 12, 1)


def test_images_load_as_preprocessed_and_an_unreadable_one_is_named(kaggle_folder: Path, tmp_path: Path) -> None:
    from classifier.data import UnreadableImageError, load_images
    from classifier.preprocessing import preprocess

    paths = sorted((kaggle_folder / "train" / "NORMAL").glob("*.jpeg"))[:5]
    images = load_images(paths, 64)
    assert images.shape == (5, 64, 64, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[3], preprocess(paths[3].read_bytes(), 64))
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(paths[0].read_bytes()[:200])
    with pytest.raises(UnreadableImageError, match=r"broken\.jpeg: .*remove or replace"):
        load_images([*paths, broken, tmp_path / "missing.png"], 64)


def test_corrupt_training_image_is_named(kaggle_folder: Path, tmp_path: Path) -> None:
    import shutil

    from classifier.data import UnreadableImageError
    from classifier.train import Train

    data = shutil.copytree(kaggle_folder.parent, tmp_path / "data")
    broken = data / "chest_xray" / "train" / "NORMAL" / "IM-0003-0007.jpeg"
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(UnreadableImageError, match=r"IM-0003-0007\.jpeg"):
        Train("pneumonia", data_dir=data, epochs=1, batch_size=16, weights_dir=tmp_path / "w").run()
