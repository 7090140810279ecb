"""Validation scores (accuracy, ROC AUC, confusion matrix, ...) and the decision threshold, as in model cards."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics

from classifier.card import CrossValidation, FoldScores, Scores, ValidationScores, predicted_classes

MIN_SENSITIVITY = 0.95
"""The threshold rule's floor on validation sensitivity for screening models."""
OFFSET_GRID = np.arange(-3.0, 3.01, 0.25)
"""The class offsets tried (log-probability units, against the first class's 0)."""
_SINGLE_NUMBERS = [name for name, field in Scores.model_fields.items() if field.annotation in (float, float | None)]
"""The scores that are one number: accuracy, balanced accuracy, ROC AUC, ..."""


@dataclass(frozen=True)
class ClassOffsets:
    """Offsets added to the log-probabilities of an argmax model's classes (a shift of its class priors), which
    `classifier.model.add_class_offsets` folds into the network's output layer."""

    offsets: tuple[float, ...]
    """One per class, in order; the first is 0."""
    rule: str

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """The probabilities the shifted network gives where the original one gave `probabilities`."""
        return shift_probabilities(probabilities, np.array(self.offsets))


def shift_probabilities(probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """softmax(log(probabilities) + offsets), row by row."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) + offsets
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def choose_class_offsets(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: Sequence[str],
    classes: tuple[str, ...],
    recall_floors: Mapping[str, float] | None = None,
) -> ClassOffsets:
    """The class offsets (the first class's 0, the others from `OFFSET_GRID`) under which the lowest recall of any
    class within any of the `groups` (age groups) that holds it, less that class's floor in `recall_floors` (0
    for a class not named), is highest; ties go to the higher mean of those margins, then to the smaller offsets.

    A network trained on children and adults together can be sure of the children's classes and unsure of the
    adults' (whose images are fewer and noisier); argmax then favours whichever class the unsure cases lean to, and
    one group's recall of a class collapses. The offsets trade a little of the easy recalls for the worst one; the
    floors say which recalls matter more (missing COVID-19 costs more than calling a normal image sick).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    floors = recall_floors or {}
    cells = [
        (cell, floors.get(classes[label], 0.0), label)
        for group in np.unique(groups)
        for label in range(len(classes))
        if (cell := (groups == group) & (labels == label)).any()
    ]
    log_probabilities = np.log(np.clip(probabilities, 1e-12, 1.0))
    best, best_key = np.zeros(len(classes)), None
    for tail in itertools.product(OFFSET_GRID, repeat=len(classes) - 1):
        offsets = np.array([0.0, *tail])
        predicted = (log_probabilities + offsets).argmax(axis=1)
        margins = [float((predicted[cell] == label).mean()) - floor for cell, floor, label in cells]
        key = (min(margins), float(np.mean(margins)), -float(np.abs(offsets).sum()))
        if best_key is None or key > best_key:
            best, best_key = offsets, key
    stated = ", ".join(f"{name} {floor:.2f}" for name, floor in floors.items())
    rule = (
        "log-probability offsets (a shift of the class priors) that maximise the lowest recall of any class within "
        f"any age group{f' less its floor ({stated})' if floors else ''}, on the validation split; the figures "
        "here include them (chosen on the same split: slightly optimistic)"
    )
    return ClassOffsets(tuple(round(float(o), 2) for o in best), rule)


@dataclass(frozen=True)
class Validation:
    """What validating a trained model decided and found: the card's threshold and validation section."""

    threshold: float | None
    """Decision threshold on the positive class's probability; None for an argmax model."""
    threshold_rule: str | None
    scores: ValidationScores
    class_offsets: ClassOffsets | None = None
    """An argmax model's class offsets, already in the scored probabilities."""


def validate(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    positive_class: str | None,
    folds: Sequence[FoldScores] = (),
    *,
    sources: Sequence[str] | None = None,
    age_groups: Sequence[str] | None = None,
    class_offsets: ClassOffsets | None = None,
) -> Validation:
    """Choose the threshold of a screening model (one with a `positive_class`) and score the validation (or
    out-of-fold) predictions at it, overall and within each of the images' `sources` and `age_groups`; with
    `folds`, add each fold's scores and their spread. `class_offsets` (`choose_class_offsets`) are recorded as
    the decision rule of an argmax model whose `probabilities` include them."""
    sources = np.asarray(sources if sources is not None else ["all"] * len(labels))
    threshold, rule = None, None
    if positive_class:
        positive = classes.index(positive_class)
        threshold, rule = choose_threshold(labels == positive, probabilities[:, positive])
    report = classification_report(labels, probabilities, classes, threshold)
    scores = ValidationScores(
        **dict(report),
        cross_validation=fold_summary(folds) if folds else None,
        by_source=subset_scores(labels, probabilities, classes, threshold, sources) if len(set(sources)) > 1 else None,
        by_age_group=None
        if age_groups is None
        else subset_scores(labels, probabilities, classes, threshold, age_groups),
    )
    return Validation(threshold, rule, scores, class_offsets)


def subset_scores(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    threshold: float | None,
    subsets: Sequence[str],
) -> dict[str, Scores]:
    """The scores within each subset of the images (a source, an age group), at the same threshold; the recall
    (sensitivity, specificity) only of the classes a subset holds."""
    subsets = np.asarray(subsets)
    found = {}
    for name in sorted(set(subsets.tolist())):
        rows = subsets == name
        report = classification_report(labels[rows], probabilities[rows], classes, threshold).model_dump()
        present = {classes[label] for label in labels[rows]}
        report["recall"] = {c: r for c, r in report["recall"].items() if c in present}
        if len(classes) == 2:
            report["sensitivity"] = report["recall"].get(classes[1])
            report["specificity"] = report["recall"].get(classes[0])
        found[name] = Scores(**report)
    return found


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC: binary on the positive (last) column, else macro one-vs-rest; NaN when a class is missing."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    if probabilities.shape[1] == 2:
        return float(metrics.roc_auc_score(labels, probabilities[:, 1]))
    present = np.unique(labels)
    if len(present) < probabilities.shape[1]:
        return float("nan")
    return float(metrics.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))


def choose_threshold(labels: np.ndarray, positive_probability: np.ndarray) -> tuple[float, str]:
    """The decision threshold and its rule in words: the highest threshold at which validation sensitivity is
    still at least `MIN_SENSITIVITY` (with no such threshold, the highest with the best sensitivity).

    Every source's specificity can only grow with the threshold, so the highest threshold that keeps the
    sensitivity floor is also the one with the best specificity in every source, the worst one included.
    """
    labels = np.asarray(labels, bool)
    candidates = np.unique(positive_probability)
    sensitivity = np.array([(positive_probability[labels] >= t).mean() for t in candidates])
    eligible = candidates[sensitivity >= MIN_SENSITIVITY]
    best = eligible.max() if len(eligible) else candidates[sensitivity == sensitivity.max()].max()
    rule = (
        f"the highest threshold keeping validation sensitivity >= {MIN_SENSITIVITY:.2f}, which gives every source "
        "its best specificity at that sensitivity; chosen on the validation split, never on a test split"
    )
    return float(best), rule


def classification_report(
    labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], threshold: float | None
) -> Scores:
    """Accuracy, per-class recall, F1, ROC AUC and the confusion matrix (rows: true class) of the classes
    predicted at `threshold` (see `classifier.card.predicted_classes`)."""
    predicted = predicted_classes(probabilities, threshold)
    everyone = range(len(classes))
    # a subset (a source, an age group) may hold one class only: its scores say so, scikit-learn need not warn
    warnings.filterwarnings("ignore", "(A single label|y_pred contains classes)", UserWarning, "sklearn")
    recall = dict(
        zip(
            classes,
            metrics.recall_score(labels, predicted, labels=everyone, average=None, zero_division=0),
            strict=True,
        )
    )
    if len(classes) == 2:
        binary_or_not = {
            "sensitivity": recall[classes[1]],
            "specificity": recall[classes[0]],
            "f1": metrics.f1_score(labels, predicted, zero_division=0),
        }
    else:
        binary_or_not = {"f1_macro": metrics.f1_score(labels, predicted, average="macro", zero_division=0)}
    return Scores(
        n=len(labels),
        accuracy=metrics.accuracy_score(labels, predicted),
        balanced_accuracy=metrics.balanced_accuracy_score(labels, predicted),
        roc_auc=roc_auc(labels, probabilities),
        confusion_matrix=metrics.confusion_matrix(labels, predicted, labels=everyone).tolist(),
        recall=recall,
        **binary_or_not,
    )


def fold_summary(folds: Sequence[FoldScores]) -> CrossValidation:
    """Mean and standard deviation over cross-validation folds of each single-number score (over the folds that
    have it: a fold may lack a class, and so a ROC AUC), and the folds."""
    applicable = folds[0].model_dump()  # without the scores this kind of model has not (f1_macro of a binary one)
    values = {
        name: np.array([value for f in folds if (value := getattr(f, name)) is not None])
        for name in _SINGLE_NUMBERS
        if name in applicable
    }
    return CrossValidation(
        folds=len(folds),
        mean={name: float(v.mean()) if len(v) else None for name, v in values.items()},
        std={name: float(v.std()) if len(v) else None for name, v in values.items()},
        per_fold=list(folds),
    )
