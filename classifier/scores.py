"""Validation scores (accuracy, ROC AUC, confusion matrix, ...) and the decision threshold, as in model cards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics

from classifier.card import CrossValidation, FoldScores, Scores, ValidationScores, predicted_classes

MIN_SENSITIVITY = 0.95
"""The threshold rule's floor on validation sensitivity for screening models."""
_SINGLE_NUMBERS = [name for name, field in Scores.model_fields.items() if field.annotation in (float, float | None)]
"""The scores that are one number: accuracy, balanced accuracy, ROC AUC, ..."""


@dataclass(frozen=True)
class Validation:
    """What validating a trained model decided and found: the card's threshold and validation section."""

    threshold: float | None
    """Decision threshold on the positive class's probability; None for an argmax model."""
    threshold_rule: str | None
    scores: ValidationScores


def validate(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    positive_class: str | None,
    folds: Sequence[FoldScores] = (),
) -> Validation:
    """Choose the threshold of a screening model (one with a `positive_class`) and score the validation (or
    out-of-fold) predictions at it; with `folds`, add each fold's scores and their spread."""
    threshold, rule = None, None
    if positive_class:
        positive = classes.index(positive_class)
        threshold, rule = choose_threshold(labels == positive, probabilities[:, positive])
    report = classification_report(labels, probabilities, classes, threshold)
    scores = ValidationScores(**dict(report), cross_validation=fold_summary(folds) if folds else None)
    return Validation(threshold, rule, scores)


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
    """The threshold with the best balanced accuracy among those keeping sensitivity >= the floor (or, when
    none does, among those with the highest sensitivity), and the rule in words."""
    fpr, tpr, thresholds = metrics.roc_curve(labels, positive_probability)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    eligible = tpr >= MIN_SENSITIVITY
    if not eligible.any():
        eligible = tpr == tpr.max()
    balanced = np.where(eligible, (tpr + 1 - fpr) / 2, -1)
    best = int(np.argmax(balanced))
    rule = (
        f"highest balanced accuracy on the validation split among thresholds keeping validation "
        f"sensitivity >= {MIN_SENSITIVITY:.2f}; never chosen on a test split"
    )
    return float(thresholds[best]), rule


def classification_report(
    labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], threshold: float | None
) -> Scores:
    """Accuracy, per-class recall, F1, ROC AUC and the confusion matrix (rows: true class) of the classes
    predicted at `threshold` (see `classifier.card.predicted_classes`)."""
    predicted = predicted_classes(probabilities, threshold)
    everyone = range(len(classes))
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
