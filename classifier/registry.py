"""The served models: found in the models folder when the app is built, loaded once in the background.

Their cards are read up front, so each model's routes and response schema exist from the start; the weights
load in a worker thread after startup, and `/readyz` answers 200 once every model is loaded and warmed up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import numpy as np

from classifier.card import ModelCard
from classifier.errors import ServiceError, UserError
from classifier.inference import LoadedModel, ModelFileError, Runtime, load_model
from classifier.input_check import CHECK_NAME

log = logging.getLogger(__name__)

_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

ModelStatus = Literal["loading", "ready", "failed"]


@dataclass
class ServedModel:
    name: str
    path: Path
    card: ModelCard
    model: LoadedModel | None = None
    error: str | None = None

    @property
    def status(self) -> ModelStatus:
        if self.model is not None:
            return "ready"
        return "failed" if self.error else "loading"

    @property
    def positive_class(self) -> str | None:
        """The class whose probability a binary model thresholds; None for an argmax model."""
        return self.card.positive_class if len(self.card.classes) == 2 else None

    def require(self, retry_after_s: int) -> LoadedModel:
        """The loaded model, or a 503 saying why there is none yet."""
        if self.model is not None:
            return self.model
        if self.error:
            raise ServiceError(503, "model_failed", f"the {self.name} model failed to load; see the server log")
        raise ServiceError(
            503, "model_loading", f"the {self.name} model is still loading", {"Retry-After": str(retry_after_s)}
        )


class ModelRegistry:
    def __init__(self, models: list[ServedModel]):
        self._models = {m.name: m for m in models}

    @classmethod
    def discover(cls, folder: Path, names: list[str]) -> ModelRegistry:
        """`names` from `folder`, or every model there: a card ``<name>.json`` with ``<name>.keras`` or ``.tflite``."""
        found = sorted(
            card.stem for card in folder.glob("*.json") if card.stem != CHECK_NAME and _has_network(folder, card.stem)
        )
        models = []
        for name in names or found:
            if not _MODEL_NAME.fullmatch(name) or name == CHECK_NAME:
                raise UserError(
                    f"model name {name!r} must be lower-case letters, digits, '-' or '_', and not {CHECK_NAME}"
                )
            path, card_path = folder / f"{name}.keras", folder / f"{name}.json"
            if not (card_path.is_file() and _has_network(folder, name)):
                raise ModelFileError(f"no model {name!r}: {folder} needs {name}.json and {name}.keras or .tflite")
            try:
                card = ModelCard.load(card_path)
            except ValueError as exc:
                raise ModelFileError(f"cannot read the model card {card_path}: {exc}") from exc
            models.append(ServedModel(name, path, card))
        if not models:
            log.warning("no models in %s: train one with python -m classifier train", folder)
        return cls(models)

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    @property
    def ready(self) -> bool:
        return bool(self._models) and all(m.status == "ready" for m in self)

    async def load(self, runtime: Runtime, threads: int, on_change: Callable[[ServedModel], None]) -> None:
        """Load and warm up each model in a worker thread, one after another (`threads`: per LiteRT inference)."""
        for served in self:
            try:
                served.model = await anyio.to_thread.run_sync(_load_warm, served.path, runtime, threads)
                log.info("loaded model %s %s", served.name, served.card.version, extra={"model": served.name})
            except Exception as exc:
                served.error = str(exc)
                log.exception("cannot load model %s", served.name, extra={"model": served.name})
            on_change(served)


def _has_network(folder: Path, name: str) -> bool:
    return (folder / f"{name}.keras").is_file() or (folder / f"{name}.tflite").is_file()


def _load_warm(path: Path, runtime: Runtime, threads: int) -> LoadedModel:
    """Load a model and run one dummy prediction (tracing its graph), so the first request is not slow."""
    model = load_model(path, runtime, threads)
    model.predict(np.zeros((1, model.image_size, model.image_size, 1), np.float32))
    return model
