"""The API's response models: what `/docs` shows and what every answer is validated against.

A prediction's schema is built from its model's card, so that `predicted_class` lists the model's classes
and a binary model's answer carries ``<positive class>_probability`` (``pneumonia_probability``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from classifier.card import ModelCard
from classifier.registry import ModelStatus, ServedModel


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong", examples=["the data is not an image in a supported format"])


class ModelRef(BaseModel):
    name: str = Field(examples=["pneumonia"])
    version: str = Field(examples=["2026.11.23"])


class ImageInfo(BaseModel):
    """The image as received, before any reduction."""

    width: int = Field(examples=[1024])
    height: int = Field(examples=[896])
    format: str = Field(examples=["JPEG"])


class AttentionMap(BaseModel):
    overlay_png: str = Field(
        description="base64 PNG (longest side 384 px): the image with the attention map blended on it as a "
        "blue-to-red heatmap, its colours stretched to the map's own range"
    )
    grid: list[list[float]] = Field(
        description="the raw attention values in [0, 1], rows top to bottom, at 1/8 of the model input's "
        "resolution; the grid covers the whole image"
    )


class BatchError(BaseModel):
    """An image of a batch that could not be classified; the other images still are."""

    filename: str | None = Field(None, description="the part's file name")
    status_code: int = Field(description="the status a single prediction of this image would have had")
    detail: str = Field(examples=["the JPEG image is truncated or corrupt"])


class Readiness(BaseModel):
    ready: bool
    models: dict[str, ModelStatus] = Field(examples=[{"pneumonia": "ready"}])


class ModelInfo(BaseModel):
    name: str
    version: str
    status: ModelStatus
    predict_url: str = Field(examples=["/pneumonia/predict"])
    description: str
    intended_use: str
    classes: list[str]
    positive_class: str | None = Field(description="the class whose probability is thresholded, if binary")
    threshold: float | None = Field(description="decision threshold on the positive class's probability")
    input_size: int = Field(description="side of the square grayscale model input, in pixels")
    validation: dict[str, Any] = Field(description="scores on the patient-grouped validation split")


def model_info(served: ServedModel) -> ModelInfo:
    card = served.card
    return ModelInfo(
        name=served.name,
        version=card.version,
        status=served.status,
        predict_url=f"/{served.name}/predict",
        description=card.description,
        intended_use=card.intended_use,
        classes=card.classes,
        positive_class=served.positive_class,
        threshold=card.threshold,
        input_size=card.input.size,
        validation=card.validation,
    )


def prediction_schema(served: ServedModel) -> type[BaseModel]:
    """The response model of ``/<name>/predict``."""
    card = served.card
    fields: dict[str, Any] = {
        "predicted_class": (Literal[tuple(card.classes)], Field(description="the class the model chose")),
        "probabilities": (dict[str, float], Field(description="each class's probability; they sum to 1")),
    }
    if served.positive_class:
        fields[f"{served.positive_class}_probability"] = (
            float,
            Field(ge=0, le=1, description=f"the probability of {served.positive_class}, compared with `threshold`"),
        )
    fields |= {
        "threshold": (float | None, Field(description="decision threshold on the positive class's probability")),
        "model": (ModelRef, ...),
        "image": (ImageInfo, ...),
        "attention_map": (AttentionMap | None, Field(None, description="only with `?attention=true`")),
    }
    return create_model(
        f"{served.name.title().replace('-', '').replace('_', '')}Prediction",
        __config__=ConfigDict(json_schema_extra={"examples": [_example(served.name, served.positive_class, card)]}),
        **fields,
    )


def batch_item_schema(prediction: type[BaseModel]) -> type[BaseModel]:
    """A prediction within a batch answer: the single answer plus the part's file name."""
    return create_model(
        f"Batch{prediction.__name__}",
        __base__=prediction,
        filename=(str | None, Field(None, description="the part's file name")),
    )


def _example(name: str, positive_class: str | None, card: ModelCard) -> dict[str, Any]:
    others = 0.1 / (len(card.classes) - 1)
    probabilities = {c: round(others, 4) for c in card.classes[:-1]} | {card.classes[-1]: 0.9}
    example: dict[str, Any] = {"predicted_class": card.classes[-1], "probabilities": probabilities}
    if positive_class:
        example[f"{positive_class}_probability"] = probabilities[positive_class]
    return example | {
        "threshold": card.threshold,
        "model": {"name": name, "version": card.version},
        "image": {"width": 1024, "height": 896, "format": "JPEG"},
    }
