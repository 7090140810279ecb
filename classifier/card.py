"""The model card: what a shipped model is, how it was trained and how well it did on validation.

Built by `build_card` from a training's results and written by `Train.deploy_model()` beside the weights;
read by the service and the CLI (which need neither TensorFlow nor the training code to read it).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from classifier import preprocessing

if TYPE_CHECKING:
    from classifier.datasets import DatasetSpec, Source
    from classifier.scores import Validation
    from classifier.train import FittedRun


class InputSpec(BaseModel):
    size: int = Field(description="side of the square model input, in pixels")
    channels: int = 1
    preprocessing: str


class SourceRecord(BaseModel):
    """Where a training's images came from."""

    name: str
    data: str = Field(description="the Kaggle dataset, or the local folder with its metadata.csv")
    citation: str = ""


class TrainingRecord(BaseModel):
    dataset: str
    source: str = Field(description="the sources in one line")
    sources: list[SourceRecord] = Field(default_factory=list)
    images: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict,
        description="images by part (training, validation), then by source as reported, then by class",
    )
    train_size: int
    validation_size: int
    groups: int = Field(description="patients or near-duplicate groups; none straddles train and validation")
    file_list_sha256: str
    epochs_run: int
    best_epoch: int
    seed: int
    date: str
    duration_seconds: float
    hyperparameters: dict[str, float | int | str]
    history: dict[str, list[float]] = Field(default_factory=dict)
    notes: str = ""


class Scores(BaseModel):
    """How a model's predictions compare with the labels of one set of images (`classifier.scores`)."""

    n: int = Field(description="images scored")
    accuracy: float
    balanced_accuracy: float = Field(description="the mean of the classes' recalls")
    roc_auc: float | None = Field(
        description="binary: of the positive class; else macro one-vs-rest; null where a class is missing"
    )
    confusion_matrix: list[list[int]] = Field(description="rows: true class, columns: predicted class")
    recall: dict[str, float] = Field(description="per class: the share of its images predicted as it")
    sensitivity: float | None = Field(None, description="binary: the positive class's recall")
    specificity: float | None = Field(None, description="binary: the negative class's recall")
    f1: float | None = Field(None, description="binary: F1 of the positive class")
    f1_macro: float | None = Field(None, description="more than two classes: the mean of the classes' F1")

    @field_validator("roc_auc", mode="before")
    @classmethod
    def _nan_is_null(cls, value: Any) -> Any:
        return None if isinstance(value, float) and math.isnan(value) else value

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler):  # unannotated: the JSON schema keeps the fields
        """Leave out the optional scores that do not apply (a binary model has no `f1_macro`)."""
        fields = type(self).model_fields
        return {k: v for k, v in handler(self).items() if v is not None or fields[k].is_required()}


class FoldScores(Scores):
    """One cross-validation fold's scores on its own validation part."""

    fold: int = Field(description="from 1")
    best_epoch: int = Field(description="the epoch the fold kept (from 1)")


class CrossValidation(BaseModel):
    folds: int
    mean: dict[str, float | None] = Field(description="each score's mean over the folds")
    std: dict[str, float | None] = Field(description="each score's standard deviation over the folds")
    per_fold: list[FoldScores]


class ValidationScores(Scores):
    """Scores on the patient-grouped validation split, or pooled over the out-of-fold predictions of a
    cross-validated model (each image scored by the one fold network that never saw it)."""

    cross_validation: CrossValidation | None = Field(
        None, description="each fold's scores and their spread, at plain argmax (before any class offsets)"
    )
    by_source: dict[str, Scores] | None = Field(
        None,
        description="the same scores (at the same threshold) within each source: a model right for the wrong "
        "reason (the hospital, the scanner) shows here; recall only of the classes a source holds",
    )
    by_age_group: dict[str, Scores] | None = Field(
        None, description="the same scores within each age group (child, adult, unknown)"
    )


class ModelCard(BaseModel):
    name: str
    version: str
    description: str
    intended_use: str
    not_for: str = Field("", description="what the model must not be used for")
    classes: list[str]
    positive_class: str | None = None
    threshold: float | None = Field(None, description="decision threshold on the positive class's probability")
    threshold_rule: str | None = None
    class_offsets: dict[str, float] | None = Field(
        None,
        description="an argmax model's offsets to each class's log-probability (a shift of the class priors), "
        "folded into the network's output layer: the probabilities served and scored here include them",
    )
    class_offsets_rule: str | None = None
    input: InputSpec
    validation: ValidationScores
    training: TrainingRecord
    libraries: dict[str, str]
    plots: dict[str, str] = Field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls.model_validate(json.loads(path.read_text()))


def build_card(
    spec: DatasetSpec,
    run: FittedRun,
    validation: Validation,
    *,
    image_size: int,
    seed: int,
    hyperparameters: dict[str, float | int | str],
    plots: dict[str, str],
) -> ModelCard:
    """The card of the model `run` trained on `spec`'s dataset, validated as `validation` says."""
    today = dt.date.today().isoformat()
    split = run.split
    offsets = validation.class_offsets
    return ModelCard(
        name=spec.name,
        version=today,
        description=spec.description,
        intended_use=spec.intended_use,
        not_for=spec.not_for,
        classes=list(spec.classes),
        positive_class=spec.positive_class,
        threshold=validation.threshold,
        threshold_rule=validation.threshold_rule,
        class_offsets=dict(zip(spec.classes, offsets.offsets, strict=True)) if offsets else None,
        class_offsets_rule=offsets.rule if offsets else None,
        input=InputSpec(size=image_size, preprocessing=preprocessing.DESCRIPTION),
        validation=validation.scores,
        training=TrainingRecord(
            dataset=spec.name,
            source="; ".join(_where(source) for source in spec.sources),
            sources=[SourceRecord(name=s.name, data=_where(s), citation=s.citation) for s in spec.sources],
            images={
                part: split.counts(rows, spec.classes)
                for part, rows in (("training", run.training_rows), ("validation", run.validation_rows))
            },
            train_size=len(run.training_rows),
            validation_size=len(run.validation_rows),
            groups=split.groups,
            file_list_sha256=split.file_list_sha256,
            epochs_run=run.epochs_run,
            best_epoch=run.best_epoch,
            seed=seed,
            date=today,
            duration_seconds=round(run.duration_s, 1),
            hyperparameters=hyperparameters,
            history=run.history,
            notes=spec.notes,
        ),
        libraries=_training_libraries(),
        plots=plots,
    )


def _where(source: Source) -> str:
    return f"kaggle:{source.kaggle_slug} train split" if source.kaggle_slug else f"local folder {source.folder}/"


def _training_libraries() -> dict[str, str]:
    """The versions of what a training ran on (imports TensorFlow: call it from training only)."""
    import keras
    import PIL
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-learn": sklearn.__version__,
    }


def predicted_classes(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Argmax, or for a binary model the positive (second) class when its probability reaches `threshold`."""
    if threshold is not None and probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= threshold).astype(int)
    return probabilities.argmax(axis=1)
