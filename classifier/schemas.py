"""The API's response models: what `/docs` shows and what every answer is validated against.

A prediction's schema is built from its model's card, so that `predicted_class` lists the model's classes
and a binary model's answer carries ``<positive class>_probability`` (``pneumonia_probability``); the service
makes every answer, and `/docs` its example, with that schema's `PredictionAnswer.build`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from classifier.card import ModelCard, ValidationScores
from classifier.registry import ModelStatus, ServedModel


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong", examples=["the data is not an image in a supported format"])


class Refusal(ErrorResponse):
    """A refused image: `kind` and `score` only when the input check refused it."""

    kind: str | None = Field(None, description="`not_a_chest_xray` when the input check refused the image")
    score: float | None = Field(None, description="the input check's score (see `input_check.score`)")


class InputCheckResult(BaseModel):
    """The input check's verdict (`CLASSIFIER_INPUT_CHECK`): is this a frontal chest X-ray like the training
    ones? With ``refuse`` (the default) an answer always has ``chest_xray`` true: a refused image is a 422."""

    chest_xray: bool = Field(description="false: the check would refuse it (only answered with `flag`)")
    score: float = Field(
        ge=0,
        le=1,
        description="how typical of the training radiographs, higher = more typical: the share of held-out "
        "radiographs less typical than this image; 0 when a hard rule (colour, DICOM modality or view) refused it",
    )
    threshold: float = Field(description="a score below it is refused")
    reason: str | None = Field(None, description="why the check refused it, in plain words; null when accepted")
    model_typicality: float | None = Field(
        None,
        ge=0,
        le=1,
        description="how typical of this model's own training images (the share of its held-out training-like "
        "images less typical); null without the model's statistics. Low: the model saw few like it -- not that "
        "the image is bad",
    )


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


class BatchError(Refusal):
    """An image of a batch that could not be classified; the other images still are."""

    filename: str | None = Field(None, description="the part's file name")
    status_code: int = Field(description="the status a single prediction of this image would have had")
    detail: str = Field(examples=["the JPEG image is truncated or corrupt"])


class Readiness(BaseModel):
    ready: bool
    models: dict[str, ModelStatus] = Field(examples=[{"pneumonia": "ready"}])


class InputCheckRef(BaseModel):
    """The input check that guards a model's answers (`classifier.input_check`)."""

    name: str
    version: str
    mode: str = Field(description="CLASSIFIER_INPUT_CHECK: refuse (422) or flag (classified, chest_xray false)")
    threshold: float = Field(description="an image whose score is below it is refused or flagged")
    card_url: str = Field(examples=["/models/input-check"], description="the check's full card")


class ModelInfo(BaseModel):
    name: str
    version: str
    status: ModelStatus
    predict_url: str = Field(examples=["/pneumonia/predict"])
    description: str
    intended_use: str
    not_for: str = Field(description="what the model must not be used for")
    classes: list[str]
    positive_class: str | None = Field(description="the class whose probability is thresholded, if binary")
    threshold: float | None = Field(description="decision threshold on the positive class's probability")
    class_offsets: dict[str, float] | None = Field(
        description="a multi-class model's offsets to the classes' log-probabilities, chosen on validation and "
        "already in its probabilities (it answers the most probable class)"
    )
    input_size: int = Field(description="side of the square grayscale model input, in pixels")
    validation: ValidationScores
    input_check: InputCheckRef | None = Field(
        description="the check every image passes before this model classifies it; null when it is off"
    )


def model_info(served: ServedModel, check: InputCheckRef | None) -> ModelInfo:
    card = served.card
    return ModelInfo(
        name=served.name,
        version=card.version,
        status=served.status,
        predict_url=f"/{served.name}/predict",
        description=card.description,
        intended_use=card.intended_use,
        not_for=card.not_for,
        classes=card.classes,
        positive_class=served.positive_class,
        threshold=card.threshold,
        class_offsets=card.class_offsets,
        input_size=card.input.size,
        validation=card.validation,
        input_check=check,
    )


class PredictionAnswer(BaseModel):
    """One image's answer from one model: `prediction_schema` derives each served model's own class, and
    `build` is the one way to make an answer, so that what is answered is what `/docs` shows."""

    model_config = ConfigDict(json_schema_extra=lambda schema, cls: schema.update(examples=[cls.example()]))

    served_name: ClassVar[str]
    card: ClassVar[ModelCard]
    positive_class: ClassVar[str | None] = None

    @classmethod
    def build(
        cls,
        predicted_class: str,
        probabilities: dict[str, float],
        image: ImageInfo,
        attention_map: AttentionMap | None = None,
        input_check: InputCheckResult | None = None,
    ) -> PredictionAnswer:
        """The answer for one image; `attention_map` and `input_check` are left out (unset) unless given."""
        values: dict[str, Any] = {"predicted_class": predicted_class, "probabilities": probabilities}
        if cls.positive_class:
            values[positive_field(cls.positive_class)] = probabilities[cls.positive_class]
        values |= {
            "threshold": cls.card.threshold,
            "model": ModelRef(name=cls.served_name, version=cls.card.version),
            "image": image,
        }
        if input_check is not None:
            values["input_check"] = input_check
        if attention_map is not None:
            values["attention_map"] = attention_map
        return cls(**values)

    @classmethod
    def example(cls) -> dict[str, Any]:
        """An answer as `/docs` shows it: the last class chosen with probability 0.9."""
        classes = cls.card.classes
        probabilities = {c: round(0.1 / (len(classes) - 1), 4) for c in classes[:-1]} | {classes[-1]: 0.9}
        check = InputCheckResult(chest_xray=True, score=0.62, threshold=0.005, model_typicality=0.48)
        answer = cls.build(
            classes[-1], probabilities, ImageInfo(width=1024, height=896, format="JPEG"), input_check=check
        )
        return answer.model_dump(mode="json", exclude_unset=True)


def prediction_schema(served: ServedModel) -> type[PredictionAnswer]:
    """The answer of ``/<name>/predict``: `predicted_class` is one of the model's classes, and a binary model
    adds its positive class's probability."""
    card = served.card
    fields: dict[str, Any] = {
        "predicted_class": (Literal[tuple(card.classes)], Field(description="the class the model chose")),
        "probabilities": (dict[str, float], Field(description="each class's probability; they sum to 1")),
    }
    if served.positive_class:
        fields[positive_field(served.positive_class)] = (
            float,
            Field(ge=0, le=1, description=f"the probability of {served.positive_class}, compared with `threshold`"),
        )
    fields |= {
        "threshold": (float | None, Field(description="decision threshold on the positive class's probability")),
        "model": (ModelRef, ...),
        "image": (ImageInfo, ...),
        "input_check": (
            InputCheckResult | None,
            Field(None, description="the input check's verdict; absent with CLASSIFIER_INPUT_CHECK=off"),
        ),
        "attention_map": (AttentionMap | None, Field(None, description="only with `?attention=true`")),
    }
    schema = create_model(
        f"{served.name.title().replace('-', '').replace('_', '')}Prediction", __base__=PredictionAnswer, **fields
    )
    schema.served_name, schema.card, schema.positive_class = served.name, card, served.positive_class
    return schema


def positive_field(positive_class: str) -> str:
    """The field a binary model's answer adds: ``pneumonia_probability``."""
    return f"{positive_class}_probability"


def batch_item_schema(prediction: type[PredictionAnswer]) -> type[PredictionAnswer]:
    """A prediction within a batch answer: the single answer plus the part's file name."""
    return create_model(
        f"Batch{prediction.__name__}",
        __base__=prediction,
        filename=(str | None, Field(None, description="the part's file name")),
    )
