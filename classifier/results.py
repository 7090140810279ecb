"""Uploaded images -> the API's prediction answers (CPU-bound: run it in the inference pool).

Each image is decoded and preprocessed exactly as in training (`classifier.preprocessing.preprocess`), the input
check looks at the same decoded image and tensor (`classifier.input_check`), the good ones are classified in one
batch, and a bad one -- undecodable, or refused by the check -- becomes its own `ServiceError`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence

import numpy as np

from classifier.errors import NotAChestXrayError, ServiceError, from_image_error
from classifier.imaging import DecodedImage, ImageError, decode_image
from classifier.inference import LoadedModel, Prediction
from classifier.input_check import InputCheck, InputChecker
from classifier.overlay import OVERLAY_SIDE, overlay_png
from classifier.preprocessing import decode_side, preprocess
from classifier.schemas import AttentionMap, ImageInfo, InputCheckResult, PredictionAnswer

log = logging.getLogger(__name__)


def classify(
    answer: type[PredictionAnswer],
    model: LoadedModel,
    images: Sequence[bytes],
    *,
    max_pixels: int,
    attention: bool,
    check: InputChecker | None = None,
    refuse: bool = True,
) -> list[PredictionAnswer | ServiceError]:
    """One answer per image, in order: a prediction of `model` in its `answer` schema, or the error that image
    caused. With a `check`, every answer carries its verdict; an image it refuses is a `NotAChestXrayError`
    when `refuse`, else classified anyway."""
    decoded = [_decode(data, decode_side(model.image_size), max_pixels) for data in images]
    good = [image for image in decoded if isinstance(image, DecodedImage)]
    if not good:
        return decoded
    tensors = np.stack([preprocess(image, model.image_size) for image in good])
    verdicts: list[InputCheck | None] = [None] * len(good)
    if check is not None:
        verdicts = list(check.check(good, tensors if check.image_size == model.image_size else None))
    classified = [v is None or v.chest_xray or not refuse for v in verdicts]
    predictions = iter(model.predict(tensors[classified]) if any(classified) else [])
    checked = iter(zip(verdicts, classified, strict=True))
    answers: list[PredictionAnswer | ServiceError] = []
    for image, data in zip(decoded, images, strict=True):
        if isinstance(image, ServiceError):
            answers.append(image)
            continue
        verdict, chosen = next(checked)
        if not chosen:
            answers.append(NotAChestXrayError(verdict.reason, verdict.score, input_check_result(verdict, None)))
            continue
        prediction = next(predictions)
        answers.append(
            answer.build(
                prediction.predicted_class,
                prediction.probabilities,
                ImageInfo(width=image.width, height=image.height, format=image.format),
                _attention_map(data, prediction.attention, max_pixels) if attention else None,
                input_check_result(verdict, prediction) if verdict is not None else None,
            )
        )
    return answers


def input_check_result(verdict: InputCheck, prediction: Prediction | None) -> InputCheckResult:
    """The verdict as an answer carries it, with the model's typicality when the image was classified."""
    return InputCheckResult(
        chest_xray=verdict.chest_xray,
        score=verdict.score,
        threshold=verdict.threshold,
        reason=verdict.reason or None,
        model_typicality=None if prediction is None else prediction.typicality,
    )


def _decode(data: bytes, min_side: int, max_pixels: int) -> DecodedImage | ServiceError:
    """The decoded image, or the 4xx it deserves: an upload never causes a 500, even through a decoder bug."""
    try:
        return decode_image(data, min_side=min_side, max_pixels=max_pixels)
    except ImageError as exc:
        return from_image_error(exc)
    except Exception:
        log.exception("the decoder failed unexpectedly")
        return ServiceError(400, "undecodable_image", "the image could not be decoded")


def _attention_map(data: bytes, attention: np.ndarray, max_pixels: int) -> AttentionMap:
    """The overlay, drawn on the image decoded again at display size (the model's decode is smaller)."""
    pixels = decode_image(data, min_side=OVERLAY_SIDE, max_pixels=max_pixels).pixels
    return AttentionMap(
        overlay_png=base64.b64encode(overlay_png(pixels, attention)).decode("ascii"),
        grid=np.round(attention.astype(float), 4).tolist(),
    )
