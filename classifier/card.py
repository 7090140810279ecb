"""The model card: what a shipped model is, how it was trained and how well it did on validation.

Written by `Train.deploy_model()` beside the weights, read by the service and the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field


class InputSpec(BaseModel):
    size: int = Field(description="side of the square model input, in pixels")
    channels: int = 1
    preprocessing: str


class TrainingRecord(BaseModel):
    dataset: str
    source: str
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


class ModelCard(BaseModel):
    name: str
    version: str
    description: str
    intended_use: str
    classes: list[str]
    positive_class: str | None = None
    threshold: float | None = Field(None, description="decision threshold on the positive class's probability")
    threshold_rule: str | None = None
    input: InputSpec
    validation: dict = Field(description="scores on the patient-grouped validation split")
    training: TrainingRecord
    libraries: dict[str, str]
    plots: dict[str, str] = Field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls.model_validate(json.loads(path.read_text()))


def predicted_classes(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Argmax, or for a binary model the positive (second) class when its probability reaches `threshold`."""
    if threshold is not None and probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= threshold).astype(int)
    return probabilities.argmax(axis=1)
