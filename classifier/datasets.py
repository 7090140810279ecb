"""The datasets a model can be trained on: the one place where they are configured.

Adding a dataset means adding a `DatasetSpec` to `DATASETS`; the training and
evaluation code read everything they need from it (the service reads model cards instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from classifier.preprocessing import IMAGE_SIZE

AgeGroup = Literal["child", "adult", "unknown"]
AGE_GROUPS: tuple[AgeGroup, ...] = ("child", "adult", "unknown")
ADULT_AGE = 18
"""Years from which a patient counts as an adult."""


@dataclass(frozen=True)
class Source:
    """One collection of labelled radiographs, in its own folder of the data root (`folder`).

    Two layouts. A Kaggle dataset (`kaggle_slug`, downloaded into the folder when it is missing) holds
    ``train/<CLASS>/<image>``; `labels` maps a glob over paths relative to ``train/`` (e.g. ``PNEUMONIA/*virus*``)
    to a class, the first matching pattern winning, and `group_pattern` is a regular expression whose first match
    in a file name is the patient (without one, near-duplicate images are grouped instead). A local folder (no
    `kaggle_slug`) holds a ``metadata.csv`` with a row per image: ``file`` (relative to the folder), ``label``
    (mapped to a class by `labels`), ``patient``, ``age`` (years, may be blank) and ``source`` (where the image
    comes from, named for the figures by `origins`). Files matching no pattern, or labels not in `labels`, are
    left out.
    """

    name: str
    """Short name used in the model card's figures per source."""
    folder: str
    labels: Mapping[str, str]
    kaggle_slug: str | None = None
    group_pattern: str | None = None
    age_groups: Mapping[str, AgeGroup] = field(default_factory=dict)
    """Kaggle layout: glob over relative paths -> age group of those images (first match wins)."""
    age_group: AgeGroup = "unknown"
    """The age group of images no pattern names and of metadata rows without an age."""
    origins: Mapping[str, str] = field(default_factory=dict)
    """Local folder: prefix of the ``source`` column -> the source name its images are reported under."""
    citation: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A model's training data: one or more sources whose images map to the same classes.

    Patients (or near-duplicate groups) never straddle the training and validation parts, and every
    source and class is represented in both, so the model card can report validation figures per source
    and per age group.
    """

    name: str
    classes: tuple[str, ...]
    sources: tuple[Source, ...]
    positive_class: str | None = None
    """For a screening model: the class whose probability is thresholded."""
    description: str = ""
    intended_use: str = ""
    not_for: str = ""
    """What the model must not be used for, in plain words: the card says it beside `intended_use`."""
    epochs: int = 40
    epoch_size: int | None = None
    """Images drawn for each epoch (None: as many as the training part holds)."""
    balance: Literal["class", "source"] = "class"
    """How training draws images: each class equally often, or each (source, class) pair equally often
    (within `max_oversampling`), so that no source's share of a class can stand in for the class."""
    max_oversampling: float = 10.0
    """With ``balance="source"``: the most an image can be drawn more often than under plain class balance."""
    recall_floors: Mapping[str, float] = field(default_factory=dict)
    """An argmax model's wanted recall of each class within every age group: the class offsets chosen on validation
    (`classifier.scores.choose_class_offsets`) keep the smallest margin over them largest (0 for a class not named)."""
    init_from: str | None = None
    """Name of a shipped model whose convolutional layers start training."""
    folds: int = 0
    """Cross-validation folds for small datasets (0: one patient-grouped validation split)."""
    image_size: int = IMAGE_SIZE
    monitor: str = "val_auc"
    """Validation metric that picks the kept epoch and stops training: `val_auc`, `val_worst_group_auc` (the
    lowest of the age groups' ROC AUCs) or `val_loss`."""
    patience: int = 10
    """Epochs without improvement of `monitor` before training stops."""
    notes: str = ""
    """Design choices made on validation, recorded in the model card."""


PNEUMONIA_GROUPS = r"^(person\d+|NORMAL2-IM-\d+|IM-\d+)"

KERMANY = Source(
    name="kermany",
    folder="chest_xray",
    kaggle_slug="paultimothymooney/chest-xray-pneumonia",
    labels={"NORMAL/*": "normal", "PNEUMONIA/*": "pneumonia"},
    group_pattern=PNEUMONIA_GROUPS,
    age_group="child",
    citation="Kermany et al., Cell 2018 (Guangzhou Women and Children's Medical Center): children aged one to five",
)
KAGGLE_COVID = Source(
    name="kaggle-covid",
    folder="covid19",
    kaggle_slug="pranavraikokte/covid19-image-dataset",
    labels={"Covid/*": "covid", "Normal/*": "normal", "Viral Pneumonia/*": "pneumonia"},
    age_groups={"Covid/*": "adult", "Normal/*": "child", "Viral Pneumonia/*": "child"},
    citation="Kaggle covid19-image-dataset: COVID-19 images of adults (COVID-19 image data collection), normal "
    "and viral pneumonia images of children",
)
ADULT_CXR = Source(
    name="adult-cxr",
    folder="adult_cxr",
    labels={"normal": "normal", "pneumonia": "pneumonia", "covid": "covid"},
    age_group="adult",
    origins={"NIH": "nih", "ieee8023": "cohen"},
    citation="Adults' frontal radiographs: NIH ChestX-ray8/14 (Wang et al. 2017; labels mined from reports) and "
    "the COVID-19 image data collection (Cohen et al. 2020), with a metadata.csv",
)


def relabelled(source: Source, labels: Mapping[str, str]) -> Source:
    """`source` with its images mapped to other classes."""
    return replace(source, labels=labels)


PNEUMONIA_NOTES = (
    "Chosen on a patient-grouped validation split (about 1,230 images, 165 adults'), one run each, 64x64: "
    "adults' ROC AUC 0.824 with class-balanced draws and the base augmentation for 20 epochs of 3,072 images, "
    "0.835 with (source, class)-balanced draws and scanner artefacts added (noise, borders, markers), 0.830 "
    "source-balanced without them, 0.824 class-balanced with them, 0.883 class-balanced with them for 30 epochs "
    "(children's 0.996). Source-balanced draws made the children's pneumonias less sure, so the threshold that "
    "keeps sensitivity at 0.95 fell to 0.07-0.09 and the adults' specificity to 0.02-0.06: kept class balance, the "
    "artefacts and 30 epochs. The kept epoch is the best of the lowest age group's ROC AUC (the pooled AUC is "
    "the children's). A 96x96 input gave adults' ROC AUC 0.822 against 0.916 at 64x64: kept 64x64. (Source, "
    "class)-balanced draws within 3x class balance gave adults' ROC AUC 0.942 (sensitivity 0.826, specificity "
    "0.927) but children's specificity 0.933 against 0.982: kept class balance, as children's normals elsewhere "
    "are called pneumonia more often than in validation already."
)

COVID_NOTES = (
    "Started from the pneumonia model; 3,072 images an epoch with scanner artefacts; the kept epoch is the best of "
    "the adults' macro ROC AUC (children have no COVID-19 class). Chosen on validation (161 adults), adults' macro "
    "ROC AUC: at 64x64, class-balanced draws 0.896 (argmax recall covid 0.957, normal 0.929, other pneumonia "
    "0.237), (source, class)-balanced draws capped at 10x class balance 0.919 and 0.915 (two seeds), capped at 3x "
    "0.923 and 0.920, averages of two to four of these networks 0.920-0.927 (not worth two to four times the "
    "network's cost); at 96x96, capped at 3x, 0.940 and 0.945 (the network takes 1.0 ms an image instead of 0.44 "
    "ms). Kept: 96x96, (source, class) balance capped at 3x, and class offsets chosen on validation with recall "
    "floors covid 0.90, normal 0.85, other pneumonia 0.70 (the project's targets for adults): plain argmax left "
    "adults' COVID-19 recall at 0.79-0.83. COVID-19 images come from one collection of many hospitals and adults' "
    "normals mostly from NIH: the by_source figures show how far the source still decides."
)

ANY_PNEUMONIA = {"covid": "pneumonia", "normal": "normal", "pneumonia": "pneumonia"}
"""COVID-19 is a pneumonia: the screening model's positive class takes it in."""

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="pneumonia",
            classes=("normal", "pneumonia"),
            sources=(
                KERMANY,
                relabelled(
                    KAGGLE_COVID, {"Covid/*": "pneumonia", "Normal/*": "normal", "Viral Pneumonia/*": "pneumonia"}
                ),
                relabelled(ADULT_CXR, ANY_PNEUMONIA),
            ),
            positive_class="pneumonia",
            description="Frontal chest X-rays of children and adults: normal vs pneumonia (bacterial, viral, "
            "fungal or COVID-19).",
            intended_use="Research and teaching: screening-style triage of frontal chest X-rays of children and "
            "adults. Not a diagnostic device.",
            not_for="Diagnosis or ruling pneumonia out; lateral views, other body parts or modalities; a source "
            "whose figures below are poor (see by_source).",
            epochs=30,
            epoch_size=3072,
            monitor="val_worst_group_auc",
            notes=PNEUMONIA_NOTES,
        ),
        DatasetSpec(
            name="pneumonia-type",
            classes=("normal", "bacterial", "viral"),
            sources=(
                relabelled(
                    KERMANY, {"NORMAL/*": "normal", "PNEUMONIA/*bacteria*": "bacterial", "PNEUMONIA/*virus*": "viral"}
                ),
            ),
            description="Children's chest X-rays (the Kermany dataset) with the pneumonia class split by cause, as "
            "its file names record it: normal vs bacterial vs viral pneumonia.",
            intended_use="Research only, on children's radiographs: whether a 64x64 CNN can tell bacterial from "
            "viral pneumonia.",
            not_for="Adults (it has never seen one); diagnosis: the cause of a pneumonia is not decided from a "
            "radiograph alone.",
        ),
        DatasetSpec(
            name="covid",
            classes=("covid", "normal", "other_pneumonia"),
            sources=(
                relabelled(KERMANY, {"NORMAL/*": "normal", "PNEUMONIA/*": "other_pneumonia"}),
                relabelled(
                    KAGGLE_COVID, {"Covid/*": "covid", "Normal/*": "normal", "Viral Pneumonia/*": "other_pneumonia"}
                ),
                relabelled(ADULT_CXR, {"covid": "covid", "normal": "normal", "pneumonia": "other_pneumonia"}),
            ),
            description="Frontal chest X-rays of children and adults: COVID-19 vs normal vs pneumonia other than "
            "COVID-19 (bacterial, viral, fungal or unspecified).",
            intended_use="Research and teaching only: COVID-19 images come from one public collection of many "
            "hospitals. Not a diagnostic device.",
            not_for="Ruling COVID-19 in or out (use a PCR or antigen test); children's COVID-19 (none in training).",
            init_from="pneumonia",
            balance="source",
            max_oversampling=3.0,
            image_size=96,
            recall_floors={"covid": 0.90, "normal": 0.85, "other_pneumonia": 0.70},
            epochs=25,
            epoch_size=3072,
            monitor="val_worst_group_auc",
            notes=COVID_NOTES,
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
