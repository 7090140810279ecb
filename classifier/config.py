"""Datasets and training defaults: the one place where they are configured.

Adding a dataset means adding a `DatasetSpec` to `DATASETS`; the training,
evaluation and serving code read everything they need from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = PROJECT_ROOT / "weights"
DATA_DIR = PROJECT_ROOT / "data"

IMAGE_SIZE = 64
"""Side of the square grayscale model input, in pixels."""


@dataclass(frozen=True)
class DatasetSpec:
    """A Kaggle dataset and how its files map to classes and patients.

    `labels` maps a glob over paths relative to a split folder (e.g.
    ``PNEUMONIA/*virus*``) to a class; the first matching pattern wins and
    files matching none are ignored. `group_pattern` is a regular expression
    whose first match in a file name identifies the patient; without it,
    near-duplicate images are grouped by perceptual hash instead.
    """

    name: str
    kaggle_slug: str
    classes: tuple[str, ...]
    labels: dict[str, str]
    group_pattern: str | None = None
    positive_class: str | None = None
    """For a screening model: the class whose probability is thresholded."""
    description: str = ""
    intended_use: str = ""
    epochs: int = 40
    init_from: str | None = None
    """Name of a shipped model whose convolutional layers start training."""
    extra: dict[str, str] = field(default_factory=dict)


PNEUMONIA_GROUPS = r"^(person\d+|NORMAL2-IM-\d+|IM-\d+)"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="pneumonia",
            kaggle_slug="paultimothymooney/chest-xray-pneumonia",
            classes=("normal", "pneumonia"),
            labels={"NORMAL/*": "normal", "PNEUMONIA/*": "pneumonia"},
            group_pattern=PNEUMONIA_GROUPS,
            positive_class="pneumonia",
            description="Paediatric chest X-rays (Guangzhou Women and Children's Medical Center), "
            "Kermany et al. 2018: normal vs pneumonia (bacterial or viral).",
            intended_use="Research and teaching: screening-style triage of paediatric frontal chest "
            "X-rays. Not a diagnostic device.",
        ),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called `name`, or a `KeyError` naming the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None
