"""A deployed model loaded once, with its card: image -> class, probabilities and attention map.

Two runtimes give the same predictions. LiteRT (``ai-edge-litert``) runs ``<name>.tflite``, written beside the
weights by `classifier.export`: it needs neither TensorFlow nor Keras, starts in a fraction of a second and runs
the network several times faster. Keras/TensorFlow runs ``<name>.keras`` when there is no export, or on request.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from classifier.card import ModelCard, predicted_classes
from classifier.errors import UserError
from classifier.imaging import DecodedImage
from classifier.preprocessing import preprocess

Runtime = Literal["auto", "litert", "keras"]
OUTPUTS = ("probabilities", "attention")
"""The exported network's named outputs."""

Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Preprocessed batch (n, size, size, 1) -> probabilities (n, classes) and attention maps (n, h, w, 1)."""


class ModelFileError(UserError):
    """A model file or its card is missing or unreadable."""


@dataclass(frozen=True)
class Prediction:
    predicted_class: str
    probabilities: dict[str, float]
    attention: np.ndarray
    """Attention map, 2-D in [0, 1], at 1/8 of the input's resolution."""


class LoadedModel:
    """A network and its card; call `predict` on preprocessed batches or `predict_bytes` on files.

    Safe to call from several threads at once.
    """

    def __init__(self, forward: Forward, card: ModelCard, runtime: Runtime):
        self.card = card
        self.classes = tuple(card.classes)
        self.image_size = card.input.size
        self.runtime = runtime
        self._forward = forward

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for a batch of preprocessed images (n, size, size, 1)."""
        probabilities, attention = self._forward(np.ascontiguousarray(images, dtype=np.float32))
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


class LiteRTForward:
    """A ``.tflite`` network run by LiteRT, with one interpreter per calling thread (an interpreter is not
    re-entrant; separate ones run in parallel, as LiteRT releases the GIL while it computes)."""

    def __init__(self, path: Path, threads: int = 1):
        self._content = path.read_bytes()
        self._threads = threads
        self._local = threading.local()
        self._runner()  # a broken file fails at start-up, not on the first request

    def _runner(self) -> Callable[..., dict[str, np.ndarray]]:
        runner = getattr(self._local, "runner", None)
        if runner is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=self._content, num_threads=self._threads)
            runner = self._local.runner = interpreter.get_signature_runner()
        return runner

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self._runner()(image=images)
        return outputs["probabilities"], outputs["attention"]


def keras_forward(path: Path) -> Forward:
    """``<name>.keras`` as one compiled TensorFlow function (much faster per call than ``model.predict``)."""
    import keras
    import tensorflow as tf

    from classifier.model import with_attention

    network = with_attention(keras.saving.load_model(path))
    size = network.input_shape[1]
    function = tf.function(
        lambda x: network(x, training=False), input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)]
    )

    def forward(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, attention = function(tf.convert_to_tensor(images))
        return probabilities.numpy(), attention.numpy()

    return forward


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def load_model(path: Path, runtime: Runtime = "auto", threads: int = 1) -> LoadedModel:
    """Load the model ``<name>.keras`` (or its export ``<name>.tflite``) and its card ``<name>.json``.

    `runtime` "auto" takes LiteRT when the export exists and ``ai-edge-litert`` is installed, else Keras;
    `threads` is the number of threads one LiteRT inference may use.
    """
    card_path, export = path.with_suffix(".json"), path.with_suffix(".tflite")
    if runtime == "auto":
        runtime = "litert" if export.is_file() and litert_available() else "keras"
    model_path = export if runtime == "litert" else path.with_suffix(".keras")
    for required in (model_path, card_path):
        if not required.is_file():
            raise ModelFileError(f"{required} not found: train a model first (python -m classifier train)")
    try:
        card = ModelCard.load(card_path)
        forward = LiteRTForward(model_path, threads) if runtime == "litert" else keras_forward(model_path)
    except Exception as exc:
        raise ModelFileError(f"cannot load {model_path}: {exc}") from exc
    return LoadedModel(forward, card, runtime)
