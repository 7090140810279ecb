"""Scoring a deployed model on any folder in the Kaggle layout, at its card's threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.data import list_examples, load_images
from classifier.datasets import get_dataset
from classifier.download import find_dataset_root
from classifier.errors import UserError
from classifier.inference import load_model
from classifier.scores import classification_report


def evaluate_folder(dataset: str, data_dir: Path, model_path: Path, split: str = "test") -> dict:
    """The scores a model card records, for `model_path` on ``<data_dir>/<split>/`` (found inside Kaggle's
    nesting); an unreadable image is named (`classifier.data.UnreadableImageError`)."""
    if not data_dir.exists():
        raise UserError(f"{data_dir} does not exist")
    spec = get_dataset(dataset)
    model = load_model(model_path)
    split_dir = find_dataset_root(data_dir, split) / split
    examples = list_examples(split_dir, spec)
    predictions = model.predict(load_images([e.path for e in examples], model.image_size))
    probabilities = np.array([[p.probabilities[c] for c in model.classes] for p in predictions])
    labels = np.array([e.label for e in examples])
    report = classification_report(labels, probabilities, model.classes, model.card.threshold)
    return {"model": str(model_path), "split": str(split_dir), "threshold": model.card.threshold, **report.model_dump()}
