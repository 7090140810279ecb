"""Uploaded images -> the API's prediction answers (CPU-bound: run it in the inference pool).

Each image is decoded and preprocessed exactly as in training (`classifier.preprocessing.preprocess`),
the good ones are classified in one batch, and a bad one becomes its own `ServiceError`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from classifier.errors import ServiceError, from_image_error
from classifier.imaging import DecodedImage, ImageError, decode_image
from classifier.inference import LoadedModel, Prediction
from classifier.overlay import OVERLAY_SIDE, overlay_png
from classifier.preprocessing import decode_side, preprocess
from classifier.registry import ServedModel

log = logging.getLogger(__name__)


def classify(
    served: ServedModel, model: LoadedModel, images: Sequence[bytes], *, max_pixels: int, attention: bool
) -> list[dict[str, Any] | ServiceError]:
    """One answer per image, in order: a prediction, or the error that image caused."""
    decoded = [_decode(data, decode_side(model.image_size), max_pixels) for data in images]
    good = [image for image in decoded if isinstance(image, DecodedImage)]
    if not good:
        return decoded
    predictions = iter(model.predict(np.stack([preprocess(image, model.image_size) for image in good])))
    return [
        _answer(served, image, next(predictions), data if attention else None, max_pixels)
        if isinstance(image, DecodedImage)
        else image
        for image, data in zip(decoded, images, strict=True)
    ]


def _decode(data: bytes, min_side: int, max_pixels: int) -> DecodedImage | ServiceError:
    """The decoded image, or the 4xx it deserves: an upload never causes a 500, even through a decoder bug."""
    try:
        return decode_image(data, min_side=min_side, max_pixels=max_pixels)
    except ImageError as exc:
        return from_image_error(exc)
    except Exception:
        log.exception("the decoder failed unexpectedly")
        return ServiceError(400, "undecodable_image", "the image could not be decoded")


def _answer(
    served: ServedModel, image: DecodedImage, prediction: Prediction, overlay_source: bytes | None, max_pixels: int
) -> dict[str, Any]:
    answer: dict[str, Any] = {"predicted_class": prediction.predicted_class, "probabilities": prediction.probabilities}
    if served.positive_class:
        answer[f"{served.positive_class}_probability"] = prediction.probabilities[served.positive_class]
    answer |= {
        "threshold": served.card.threshold,
        "model": {"name": served.name, "version": served.card.version},
        "image": {"width": image.width, "height": image.height, "format": image.format},
    }
    if overlay_source is not None:
        answer["attention_map"] = _attention_map(overlay_source, prediction.attention, max_pixels)
    return answer


def _attention_map(data: bytes, attention: np.ndarray, max_pixels: int) -> dict[str, Any]:
    """The overlay, drawn on the image decoded again at display size (the model's decode is smaller)."""
    pixels = decode_image(data, min_side=OVERLAY_SIDE, max_pixels=max_pixels).pixels
    return {
        "overlay_png": base64.b64encode(overlay_png(pixels, attention)).decode("ascii"),
        "grid": np.round(attention.astype(float), 4).tolist(),
    }
