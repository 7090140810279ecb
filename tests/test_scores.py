"""The validation scores a model card records: the threshold rule, the classification report, the fold summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.card import FoldScores, ModelCard
from classifier.input_check import CHECK_NAME
from classifier.paths import WEIGHTS_DIR
from classifier.scores import (
    MIN_SENSITIVITY,
    choose_class_offsets,
    choose_threshold,
    classification_report,
    fold_summary,
    shift_probabilities,
    validate,
)

BINARY = ("normal", "pneumonia")
THREE = ("covid", "normal", "viral_pneumonia")


def binary(positive: list[float], negative: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (normal, pneumonia) probabilities of positives and negatives with these pneumonia probabilities."""
    scores = np.array(positive + negative)
    labels = np.array([1] * len(positive) + [0] * len(negative))
    return labels, np.stack([1 - scores, scores], axis=1)


def test_threshold_is_the_highest_that_keeps_the_sensitivity_floor() -> None:
    # 1,000 positives spread evenly over (0.5, 1]; normals below 0.5. Sensitivity at t is 2 * (1 - t).
    positives = list(np.linspace(1.0, 0.5, 1000, endpoint=False))
    labels, probabilities = binary(positives, list(np.linspace(0.0, 0.5, 500, endpoint=False)))
    threshold, rule = choose_threshold(labels == 1, probabilities[:, 1])
    assert (probabilities[labels == 1, 1] >= threshold).mean() == pytest.approx(0.95)
    higher = probabilities[labels == 1, 1][probabilities[labels == 1, 1] > threshold].min()
    assert (probabilities[labels == 1, 1] >= higher).mean() < MIN_SENSITIVITY
    assert f"sensitivity >= {MIN_SENSITIVITY:.2f}" in rule and "never on a test" in rule
    report = classification_report(labels, probabilities, BINARY, threshold)
    assert report.specificity == 1.0


def test_threshold_without_enough_positives_keeps_them_all() -> None:
    """With three positives, missing one drops sensitivity to 0.67: the highest threshold that finds them all."""
    labels, probabilities = binary([0.8, 0.7, 0.6], [0.4, 0.2, 0.65])
    threshold, _ = choose_threshold(labels == 1, probabilities[:, 1])
    assert threshold == pytest.approx(0.6)


def test_validate_scores_each_source_and_age_group_at_the_same_threshold() -> None:
    labels = np.array([0, 1, 0, 1, 1, 1])
    probabilities = np.column_stack([1 - (p := np.array([0.2, 0.9, 0.7, 0.8, 0.95, 0.6])), p])
    result = validate(
        labels, probabilities, BINARY, "pneumonia", sources=list("aabbcc"), age_groups=["child"] * 2 + ["adult"] * 4
    )
    assert set(result.scores.by_source) == {"a", "b", "c"} and set(result.scores.by_age_group) == {"adult", "child"}
    only_positives = result.scores.by_source["c"]
    assert only_positives.n == 2 and set(only_positives.recall) == {"pneumonia"} and only_positives.specificity is None
    assert result.scores.by_source["b"].confusion_matrix[0] == [
        int(result.threshold > 0.7),
        int(result.threshold <= 0.7),
    ]


def test_binary_report_at_a_threshold() -> None:
    labels, probabilities = binary([0.9, 0.6, 0.4, 0.2], [0.6, 0.3, 0.1, 0.05])
    report = classification_report(labels, probabilities, BINARY, threshold=0.6)  # a score at the threshold is positive
    assert report.confusion_matrix == [[3, 1], [2, 2]]  # rows: true normal, true pneumonia
    assert report.n == 8 and report.accuracy == 5 / 8
    assert report.recall == {"normal": 0.75, "pneumonia": 0.5}
    assert report.sensitivity == 0.5 and report.specificity == 0.75
    assert report.balanced_accuracy == pytest.approx(0.625)
    assert report.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # 2 TP, 1 FP, 2 FN
    assert report.roc_auc == pytest.approx(12.5 / 16)  # pairs ranked right, a tie counting half
    assert "f1_macro" not in report.model_dump()


def test_binary_report_without_a_threshold_takes_the_argmax() -> None:
    labels, probabilities = binary([0.9, 0.3], [0.45, 0.2])
    report = classification_report(labels, probabilities, BINARY, threshold=None)
    assert report.confusion_matrix == [[2, 0], [1, 1]]


def test_multi_class_report() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7], [0.5, 0.2, 0.3]]
    )
    report = classification_report(labels, probabilities, THREE, threshold=None)
    assert report.confusion_matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report.recall == {"covid": 0.5, "normal": 1.0, "viral_pneumonia": 0.5}
    assert report.accuracy == pytest.approx(4 / 6) and report.balanced_accuracy == pytest.approx(2 / 3)
    assert report.f1_macro == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert 0.5 < report.roc_auc <= 1.0
    assert set(report.model_dump()) >= {"f1_macro"} and not {"sensitivity", "specificity", "f1"} & set(
        report.model_dump()
    )


def test_class_offsets_lift_the_worst_recall_of_any_class_in_any_group() -> None:
    # the children's classes are sure; the adults' normals lean to covid by a log-probability of about 1
    child = [([0.02, 0.95, 0.03], 1), ([0.02, 0.03, 0.95], 2)] * 20
    adult = [([0.6, 0.3, 0.1], 1), ([0.55, 0.25, 0.2], 1), ([0.8, 0.1, 0.1], 0), ([0.2, 0.1, 0.7], 2)] * 5
    rows = child + adult
    probabilities = np.array([p for p, _ in rows])
    labels = np.array([label for _, label in rows])
    groups = ["child"] * len(child) + ["adult"] * len(adult)
    assert classification_report(labels[40:], probabilities[40:], THREE, None).recall["normal"] == 0.0
    offsets = choose_class_offsets(labels, probabilities, groups, THREE)
    assert offsets.offsets[0] == 0.0 and len(offsets.offsets) == 3
    shifted = offsets.apply(probabilities)
    np.testing.assert_allclose(shifted.sum(axis=1), 1.0, rtol=1e-6)
    for group in ("child", "adult"):
        rows_of_group = np.array(groups) == group
        recall = classification_report(labels[rows_of_group], shifted[rows_of_group], THREE, None).recall
        assert min(r for c, r in recall.items() if c != "covid" or group == "adult") == 1.0, (group, recall)
    assert "lowest recall" in offsets.rule


def test_class_offsets_of_a_balanced_model_are_none() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]] * 3)
    labels = np.array([0, 1, 2] * 3)
    assert choose_class_offsets(labels, probabilities, ["adult"] * 9, THREE).offsets == (0.0, 0.0, 0.0)


def test_recall_floors_say_which_class_matters_more() -> None:
    # normal and viral pneumonia overlap: a floor on viral pneumonia's recall moves the boundary its way
    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(0, 1, 200), rng.normal(1, 1, 200)])
    probabilities = np.stack([np.full(400, 1e-3), 1 / (1 + np.exp(score)), 1 / (1 + np.exp(-score))], axis=1)
    labels = np.array([1] * 200 + [2] * 200)
    groups = ["adult"] * 400
    even = choose_class_offsets(labels, probabilities, groups, THREE)
    favoured = choose_class_offsets(labels, probabilities, groups, THREE, {"viral_pneumonia": 0.9, "normal": 0.5})
    recall = {
        name: classification_report(labels, offsets.apply(probabilities), THREE, None).recall
        for name, offsets in (("even", even), ("favoured", favoured))
    }
    assert abs(recall["even"]["normal"] - recall["even"]["viral_pneumonia"]) < 0.1
    assert recall["favoured"]["viral_pneumonia"] > recall["even"]["viral_pneumonia"] + 0.1
    assert recall["favoured"]["normal"] < recall["even"]["normal"] - 0.1
    assert "viral_pneumonia 0.90" in favoured.rule


def test_shifted_probabilities_are_a_change_of_class_priors() -> None:
    probabilities = np.array([[0.5, 0.25, 0.25]])
    np.testing.assert_allclose(shift_probabilities(probabilities, np.array([0.0, np.log(2), 0.0])), [[0.4, 0.4, 0.2]])


def test_a_missing_class_has_no_roc_auc() -> None:
    labels = np.array([0, 0, 1, 1])  # no viral_pneumonia
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    report = classification_report(labels, probabilities, THREE, threshold=None)
    assert report.roc_auc is None
    assert json.loads(report.model_dump_json())["roc_auc"] is None


def fold(number: int, accuracy: float, roc_auc: float | None) -> FoldScores:
    return FoldScores(
        fold=number,
        best_epoch=number + 2,
        n=10,
        accuracy=accuracy,
        balanced_accuracy=accuracy,
        roc_auc=roc_auc,
        confusion_matrix=[[5, 0, 0], [0, 5, 0], [0, 0, 0]],
        recall={"covid": accuracy, "normal": accuracy, "viral_pneumonia": 0.0},
        f1_macro=accuracy,
    )


def test_fold_summary_gives_the_mean_and_spread_of_each_score() -> None:
    folds = [fold(1, 0.5, 0.6), fold(2, 1.0, None)]
    summary = fold_summary(folds)
    assert summary.folds == 2 and summary.per_fold == folds
    assert set(summary.mean) == set(summary.std) == {"accuracy", "balanced_accuracy", "roc_auc", "f1_macro"}
    assert summary.mean["accuracy"] == pytest.approx(0.75) and summary.std["accuracy"] == pytest.approx(0.25)
    assert summary.mean["roc_auc"] == pytest.approx(0.6) and summary.std["roc_auc"] == 0.0  # the fold without it
    assert fold_summary([fold(1, 0.5, None)]).mean["roc_auc"] is None


def test_validate_thresholds_only_a_screening_model_and_adds_the_folds() -> None:
    labels, probabilities = binary([0.9, 0.8, 0.7], [0.6, 0.2, 0.1])
    screening = validate(labels, probabilities, BINARY, positive_class="pneumonia")
    assert screening.threshold == pytest.approx(0.7) and screening.threshold_rule
    assert screening.scores.cross_validation is None and "cross_validation" not in screening.scores.model_dump()
    argmax = validate(labels, probabilities, BINARY, positive_class=None, folds=[fold(1, 0.5, 0.6)])
    assert argmax.threshold is None and argmax.threshold_rule is None
    assert argmax.scores.cross_validation.folds == 1


@pytest.mark.parametrize(
    "card_path",
    sorted(path for path in WEIGHTS_DIR.glob("*.json") if path.stem != CHECK_NAME),
    ids=lambda path: path.stem,
)
def test_shipped_cards_read_and_write_their_scores_unchanged(card_path) -> None:
    card = ModelCard.load(card_path)
    written = json.loads(card.model_dump_json())
    assert written["validation"] == json.loads(card_path.read_text())["validation"]
    assert ModelCard.model_validate(written) == card
