"""Validation scores (accuracy, ROC AUC, confusion matrix, ...) and the decision threshold, as in model cards."""

from __future__ import annotations

import numpy as np
from sklearn import metrics

from classifier.card import predicted_classes

MIN_SENSITIVITY = 0.95
"""The threshold rule's floor on validation sensitivity for screening models."""


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC: binary on the positive (last) column, else macro one-vs-rest."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    if probabilities.shape[1] == 2:
        return float(metrics.roc_auc_score(labels, probabilities[:, 1]))
    present = np.unique(labels)
    if len(present) < probabilities.shape[1]:
        return float("nan")
    return float(metrics.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))


def choose_threshold(labels: np.ndarray, positive_probability: np.ndarray) -> tuple[float, str]:
    """The threshold with the best balanced accuracy among those keeping sensitivity >= the floor."""
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
) -> dict:
    """Accuracy, per-class recall, F1, ROC AUC and the confusion matrix (rows: true class)."""
    predicted = predicted_classes(probabilities, threshold)
    report: dict = {
        "n": len(labels),
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predicted)),
        "roc_auc": roc_auc(labels, probabilities),
        "confusion_matrix": metrics.confusion_matrix(labels, predicted, labels=range(len(classes))).tolist(),
        "recall": dict(
            zip(
                classes,
                metrics.recall_score(
                    labels, predicted, labels=range(len(classes)), average=None, zero_division=0
                ).tolist(),
                strict=False,
            )
        ),
    }
    if len(classes) == 2:
        report["sensitivity"] = report["recall"][classes[1]]
        report["specificity"] = report["recall"][classes[0]]
        report["f1"] = float(metrics.f1_score(labels, predicted, zero_division=0))
    else:
        report["f1_macro"] = float(metrics.f1_score(labels, predicted, average="macro", zero_division=0))
    return report


def fold_summary(fold_reports: list[dict]) -> dict:
    """Mean and standard deviation over cross-validation folds of each scalar score, and the folds."""
    scalars = [k for k, v in fold_reports[0].items() if isinstance(v, float)]
    values = {k: np.array([r[k] for r in fold_reports], dtype=float) for k in scalars}
    return {
        "folds": len(fold_reports),
        "mean": {k: float(np.nanmean(v)) for k, v in values.items()},
        "std": {k: float(np.nanstd(v)) for k, v in values.items()},
        "per_fold": fold_reports,
    }
