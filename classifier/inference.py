"""A deployed model loaded once, with its card: image -> class, probabilities and attention map.

Two runtimes give the same predictions. LiteRT (``ai-edge-litert``) runs ``<name>.tflite``, written beside the
weights by `classifier.export`: it needs neither TensorFlow nor Keras, starts in a fraction of a second and runs
the network several times faster. Keras/TensorFlow runs ``<name>.keras`` when there is no export, or on request.
The input check (`classifier.input_check`) loads its network the same way.
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
from classifier.density import FeatureDensity
from classifier.errors import UserError
from classifier.imaging import DecodedImage
from classifier.preprocessing import preprocess

Runtime = Literal["auto", "litert", "keras"]

Network = Callable[[np.ndarray], dict[str, np.ndarray]]
"""Preprocessed batch (n, size, size, 1) -> the network's named outputs (`classifier.model.SERVED_OUTPUTS` for a
classifier: probabilities (n, classes), attention maps (n, h, w, 1), pooled features (n, d))."""

TYPICALITY_SUFFIX = ".typicality.npz"
"""``<name>.typicality.npz`` beside a model: the Gaussian of its training set's pooled features
(`classifier.density.FeatureDensity`), written by training or by ``python -m classifier typicality``."""


class ModelFileError(UserError):
    """A model file or its card is missing or unreadable."""


@dataclass(frozen=True)
class Prediction:
    predicted_class: str
    probabilities: dict[str, float]
    attention: np.ndarray
    """Attention map, 2-D in [0, 1], at 1/8 of the input's resolution."""
    typicality: float | None = None
    """The share of the model's training images less typical of its training set than this one (by the
    Mahalanobis distance of its pooled features); None without the statistics (`TYPICALITY_SUFFIX`)."""


class LoadedModel:
    """A network and its card; call `predict` on preprocessed batches or `predict_bytes` on files.

    Safe to call from several threads at once.
    """

    def __init__(self, network: Network, card: ModelCard, runtime: Runtime, density: FeatureDensity | None = None):
        self.card = card
        self.classes = tuple(card.classes)
        self.image_size = card.input.size
        self.runtime = runtime
        self.density = density
        self._network = network

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for a batch of preprocessed images (n, size, size, 1)."""
        outputs = self._network(np.ascontiguousarray(images, dtype=np.float32))
        probabilities, attention = outputs["probabilities"], outputs["attention"]
        chosen = predicted_classes(probabilities, self.card.threshold)
        typicality = self._typicality(outputs.get("features"), len(images))
        return [
            Prediction(
                predicted_class=self.classes[c],
                probabilities={name: float(p) for name, p in zip(self.classes, row, strict=True)},
                attention=att[..., 0],
                typicality=typical,
            )
            for c, row, att, typical in zip(chosen, probabilities, attention, typicality, strict=True)
        ]

    def predict_bytes(self, image: bytes | DecodedImage) -> Prediction:
        return self.predict(preprocess(image, self.image_size)[np.newaxis])[0]

    def _typicality(self, features: np.ndarray | None, n: int) -> list[float | None]:
        if self.density is None or features is None or features.shape[1] != self.density.mean.shape[0]:
            return [None] * n
        return [float(t) for t in self.density.typicality(features)]


class LiteRTNetwork:
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

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self._runner()(image=images)


def keras_network(path: Path) -> Network:
    """``<name>.keras`` as one compiled TensorFlow function (much faster per call than ``model.predict``)."""
    import keras
    import tensorflow as tf

    from classifier.model import serving_network

    network = serving_network(keras.saving.load_model(path))
    size = network.input_shape[1]
    function = tf.function(
        lambda x: network(x, training=False), input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)]
    )

    def forward(images: np.ndarray) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in function(tf.convert_to_tensor(images)).items()}

    return forward


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def load_network(path: Path, runtime: Runtime = "auto", threads: int = 1) -> tuple[Network, Runtime]:
    """The network ``<name>.keras`` or its export ``<name>.tflite``, and the runtime that runs it.

    `runtime` "auto" takes LiteRT when the export exists and ``ai-edge-litert`` is installed, else Keras;
    `threads` is the number of threads one LiteRT inference may use.
    """
    export = path.with_suffix(".tflite")
    if runtime == "auto":
        runtime = "litert" if export.is_file() and litert_available() else "keras"
    model_path = export if runtime == "litert" else path.with_suffix(".keras")
    if not model_path.is_file():
        raise ModelFileError(f"{model_path} not found: train a model first (python -m classifier train)")
    try:
        return (LiteRTNetwork(model_path, threads) if runtime == "litert" else keras_network(model_path)), runtime
    except Exception as exc:
        raise ModelFileError(f"cannot load {model_path}: {exc}") from exc


def load_model(path: Path, runtime: Runtime = "auto", threads: int = 1) -> LoadedModel:
    """Load the model ``<name>.keras`` (or its export ``<name>.tflite``), its card ``<name>.json`` and, when
    present, its training set's feature statistics ``<name>.typicality.npz``."""
    network, runtime = load_network(path, runtime, threads)
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        raise ModelFileError(f"{card_path} not found: train a model first (python -m classifier train)")
    statistics = path.with_name(path.stem + TYPICALITY_SUFFIX)
    try:
        card = ModelCard.load(card_path)
        density = FeatureDensity.load(statistics) if statistics.is_file() else None
    except Exception as exc:
        raise ModelFileError(f"cannot load {card_path} or {statistics}: {exc}") from exc
    return LoadedModel(network, card, runtime, density)
