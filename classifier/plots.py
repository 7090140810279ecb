"""The model card's figures: training curves, ROC curve and confusion matrix, written beside the weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn import metrics

if TYPE_CHECKING:
    from classifier.scores import Validation
    from classifier.train import FittedRun

FILE_SUFFIXES = {"training_curves": "training", "roc": "roc", "confusion_matrix": "confusion"}
"""Each plot's key in the card, and its file ``<model>.<suffix>.png``."""


def write_plots(
    folder: Path, name: str, run: FittedRun, validation: Validation, classes: tuple[str, ...]
) -> dict[str, str]:
    """Draw the three plots of model `name` into `folder`; their file names by key, for the card."""
    files = {key: f"{name}.{suffix}.png" for key, suffix in FILE_SUFFIXES.items()}
    training_curves(run.histories, folder / files["training_curves"], run.best_epoch)
    roc_curves(run.labels, run.probabilities, classes, folder / files["roc"])
    confusion_matrix(validation.scores.confusion_matrix, classes, folder / files["confusion_matrix"])
    return files


def training_curves(histories: Sequence[dict[str, list[float]]], path: Path, best_epoch: int) -> None:
    """Loss and accuracy per epoch for the training and validation splits (one pair per fold)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        for fold, history in enumerate(histories):
            epochs = np.arange(1, len(history[key]) + 1)
            suffix = f" (fold {fold + 1})" if len(histories) > 1 else ""
            ax.plot(epochs, history[key], color="C0", alpha=0.6, label=f"training{suffix}" if fold == 0 else None)
            ax.plot(
                epochs, history[f"val_{key}"], color="C1", alpha=0.6, label=f"validation{suffix}" if fold == 0 else None
            )
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept (epoch {best_epoch})")
        ax.set(title=title, xlabel="epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def roc_curves(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], path: Path) -> None:
    """One-vs-rest ROC curve per class (one curve for a binary model)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    shown = classes[1:] if len(classes) == 2 else classes
    for name in shown:
        index = classes.index(name)
        fpr, tpr, _ = metrics.roc_curve(labels == index, probabilities[:, index])
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(title="ROC, validation split", xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(matrix: list[list[int]], classes: tuple[str, ...], path: Path) -> None:
    """The confusion matrix with counts in the cells."""
    fig, ax = plt.subplots(figsize=(4 + len(classes) * 0.5, 4 + len(classes) * 0.5))
    metrics.ConfusionMatrixDisplay(np.array(matrix), display_labels=classes).plot(ax=ax, colorbar=False)
    ax.set_title("Confusion matrix, validation split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
