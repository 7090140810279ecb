"""The datasets a model can be trained on: the one place where they are configured.

Adding a dataset means adding a `DatasetSpec` to `DATASETS`; the training and
evaluation code read everything they need from it (the service reads model cards instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.preprocessing import IMAGE_SIZE


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
    folds: int = 0
    """Cross-validation folds for small datasets (0: one patient-grouped validation split)."""
    image_size: int = IMAGE_SIZE
    monitor: str = "val_auc"
    """Validation metric that picks the kept epoch and stops training: `val_auc` or `val_loss`."""
    patience: int = 10
    """Epochs without improvement of `monitor` before training stops."""
    notes: str = ""
    """Design choices made on validation, recorded in the model card."""


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
        DatasetSpec(
            name="pneumonia-type",
            kaggle_slug="paultimothymooney/chest-xray-pneumonia",
            classes=("normal", "bacterial", "viral"),
            labels={"NORMAL/*": "normal", "PNEUMONIA/*bacteria*": "bacterial", "PNEUMONIA/*virus*": "viral"},
            group_pattern=PNEUMONIA_GROUPS,
            description="The pneumonia dataset with the pneumonia class split by cause, as its file names "
            "record it: normal vs bacterial vs viral pneumonia.",
            intended_use="Research only: whether a 64x64 CNN can tell bacterial from viral pneumonia. "
            "Not a diagnostic device; the cause of a pneumonia is not decided from a radiograph alone.",
        ),
        DatasetSpec(
            name="covid",
            kaggle_slug="pranavraikokte/covid19-image-dataset",
            classes=("covid", "normal", "viral_pneumonia"),
            labels={"Covid/*": "covid", "Normal/*": "normal", "Viral Pneumonia/*": "viral_pneumonia"},
            description="Adult and paediatric chest X-rays from several public collections (Kaggle "
            "covid19-image-dataset): COVID-19 vs normal vs other viral pneumonia.",
            intended_use="Research and teaching only, on a 249-image public dataset of mixed sources. "
            "Not a diagnostic device; never use it to rule COVID-19 in or out.",
            epochs=60,
            init_from="pneumonia",
            folds=5,
            monitor="val_loss",  # on 50 validation images AUC can peak where the argmax is badly calibrated
            patience=15,
            notes="Input kept at 64x64: in 5-fold validation (same folds and seed), 128x128 gave fold accuracies "
            "0.92, 0.88, 0.94, 0.86 against 0.96, 0.84, 0.94, 0.90 at 64x64 over the first four folds: no gain, "
            "and 64x64 keeps the pneumonia model's layers at the scale they were trained at. Convolutional layers "
            "start from the shipped pneumonia model. The shipped model averages the five fold networks.",
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
