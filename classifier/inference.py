"""A deployed model loaded once, with its card: image -> class, probabilities and attention map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from classifier.card import ModelCard, predicted_classes
from classifier.errors import UserError
from classifier.imaging import DecodedImage
from classifier.model import with_attention
from classifier.preprocessing import preprocess


class ModelFileError(UserError):
    """A model file or its card is missing or unreadable."""


@dataclass(frozen=True)
class Prediction:
    predicted_class: str
    probabilities: dict[str, float]
    attention: np.ndarray
    """Attention map, 2-D in [0, 1], at 1/8 of the input's resolution."""

    def as_dict(self) -> dict:
        return {"predicted_class": self.predicted_class, "probabilities": self.probabilities}


class LoadedModel:
    """A Keras model and its card; call `predict` on preprocessed batches or `predict_bytes` on files."""

    def __init__(self, model: keras.Model, card: ModelCard):
        self.card = card
        self.classes = tuple(card.classes)
        self.image_size = card.input.size
        network = with_attention(model)
        self._forward = tf.function(
            lambda x: network(x, training=False),
            input_signature=[tf.TensorSpec((None, self.image_size, self.image_size, 1), tf.float32)],
        )

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for a batch of preprocessed images (n, size, size, 1)."""
        probabilities, attention = (t.numpy() for t in self._forward(tf.convert_to_tensor(images, tf.float32)))
        chosen = predicted_classes(probabilities, self.card.threshold)
        return [
            Prediction(
                predicted_class=self.classes[c],
                probabilities={name: float(p) for name, p in zip(self.classes, row, strict=True)},
                attention=att[..., 0],
            )
            for c, row, att in zip(chosen, probabilities, attention, strict=True)
        ]

    def predict_bytes(self, image: bytes | DecodedImage) -> Prediction:
        return self.predict(preprocess(image, self.image_size)[np.newaxis])[0]


def load_model(path: Path) -> LoadedModel:
    """Load ``<name>.keras`` and its card ``<name>.json``."""
    card_path = path.with_suffix(".json")
    for required in (path, card_path):
        if not required.is_file():
            raise ModelFileError(f"{required} not found: train a model first (python -m classifier train)")
    try:
        card = ModelCard.load(card_path)
        model = keras.saving.load_model(path)
    except Exception as exc:
        raise ModelFileError(f"cannot load {path}: {exc}") from exc
    return LoadedModel(model, card)
