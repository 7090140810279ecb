"""Prediction routes, written once and mounted per model: ``/pneumonia/predict``, ``/covid/predict``, ...

When the inference pool is full a request is refused with 503 before its body is read. Otherwise the body is
read from the raw request stream (`classifier.uploads`), the decoding, input check and inference run in the
bounded inference pool, and a refused upload is a 4xx with ``{"detail": "..."}``. Each image classified or
refused leaves an audit record (`classifier.audit`).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from classifier.audit import Fingerprint, audit
from classifier.errors import ServiceError
from classifier.input_check import InputChecker
from classifier.pool import InferencePool
from classifier.registry import ServedModel
from classifier.results import classify
from classifier.schemas import (
    BatchError,
    ErrorResponse,
    PredictionAnswer,
    Refusal,
    batch_item_schema,
    prediction_schema,
)
from classifier.settings import Settings
from classifier.telemetry import PrometheusMetrics
from classifier.uploads import IMAGE_FIELD, DataUrlImage, Upload, UploadLimits, read_images
from routers.dependencies import InputCheckDep, MetricsDep, PoolDep, SettingsDep

Attention = Annotated[
    bool, Query(description="also return `attention_map`: the heatmap overlaid on the image, and its raw grid")
]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Refusal if status == 422 else ErrorResponse, "description": description}
    for status, description in {
        400: "empty body, not an image, a truncated or corrupt image, or a malformed form",
        408: "the body did not arrive in time",
        413: "the body, the image (in pixels) or the number of images is over its limit",
        415: "the body or the image is of an unsupported type",
        422: "the image does not look like a frontal chest X-ray (`kind`: `not_a_chest_xray`, with the input "
        f"check's `score`; with CLASSIFIER_INPUT_CHECK=refuse), no {IMAGE_FIELD!r} field, or a JSON body without an "
        "image data URL",
        503: "busy (too many predictions in flight) or the model is still loading; see Retry-After",
    }.items()
}


def _request_body(batch: bool) -> dict[str, Any]:
    file = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
    if batch:
        form = {"type": "array", "items": file, "description": "the images, in order"}
        content = {"multipart/form-data": {"schema": _form(form)}}
    else:
        form = {**file, "description": "a chest X-ray: JPEG, PNG, ..."}
        json_body = DataUrlImage.model_json_schema()
        content = {"multipart/form-data": {"schema": _form(form)}, "application/json": {"schema": json_body}}
    return {"requestBody": {"required": True, "content": content}}


def _form(field: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {IMAGE_FIELD: field}, "required": [IMAGE_FIELD]}


def prediction_router(served: ServedModel) -> APIRouter:
    """The routes of one model, under ``/<name>``."""
    name = served.name
    Prediction = prediction_schema(served)
    BatchPrediction = batch_item_schema(Prediction)
    router = APIRouter(prefix=f"/{name}", tags=[name])
    card = served.card
    about = f"{card.description}\n\n**For**: {card.intended_use}\n\n**Not for**: {card.not_for or '-'}\n\n"

    async def run(
        request: Request,
        uploads: list[Upload],
        attention: bool,
        settings: Settings,
        check: InputChecker | None,
        pool: InferencePool,
        metrics: PrometheusMetrics,
    ) -> list[PredictionAnswer | ServiceError]:
        """Check and classify the uploads in the pool, counting predictions by class and auditing each image."""
        model = served.require(settings.retry_after_s)
        images = [u.data for u in uploads]
        refuse = settings.input_check == "refuse"

        def job() -> tuple[list[PredictionAnswer | ServiceError], list[Fingerprint]]:
            answers = classify(
                Prediction,
                model,
                images,
                max_pixels=settings.max_pixels,
                attention=attention,
                check=check,
                refuse=refuse,
            )
            return answers, [Fingerprint.of(image) for image in images]

        started = time.perf_counter()
        answers, fingerprints = await pool.run(job)
        metrics.inference_latency.labels(name).observe(time.perf_counter() - started)
        for answer in answers:
            if isinstance(answer, PredictionAnswer):
                metrics.predictions.labels(name, answer.predicted_class).inc()
        client = request.client.host if request.client else "-"
        audit(answers, fingerprints, name, served.card.version, client)
        return answers

    @router.post(
        "/predict",
        summary=f"Classify one image with the {name} model",
        description=f"{about}Send the image as the multipart field `{IMAGE_FIELD}`, or as JSON "
        '`{"image": "data:image/png;base64,..."}`.',
        response_model=Prediction,
        response_model_exclude_unset=True,
        responses=ERRORS,
        openapi_extra=_request_body(batch=False),
    )
    async def predict(
        request: Request,
        settings: SettingsDep,
        check: InputCheckDep,
        pool: PoolDep,
        metrics: MetricsDep,
        attention: Attention = False,
    ) -> Any:
        pool.check_capacity()  # a busy refusal before reading the body costs no parsing
        uploads = await read_images(request, _limits(settings, max_images=1))
        [answer] = await run(request, uploads, attention, settings, check, pool, metrics)
        if isinstance(answer, ServiceError):
            raise answer
        return answer

    @router.post(
        "/predict/batch",
        summary=f"Classify several images with the {name} model",
        description=f"{about}Send each image as a multipart field `{IMAGE_FIELD}`. The answer lists one result per "
        "image, in order; an image that cannot be classified gets an error entry and the others are still "
        "classified.",
        response_model=list[BatchPrediction | BatchError],
        response_model_exclude_unset=True,
        responses=ERRORS,
        openapi_extra=_request_body(batch=True),
    )
    async def predict_batch(
        request: Request,
        settings: SettingsDep,
        check: InputCheckDep,
        pool: PoolDep,
        metrics: MetricsDep,
        attention: Attention = False,
    ) -> Any:
        pool.check_capacity()  # a busy refusal before reading the body costs no parsing
        uploads = await read_images(request, _limits(settings, settings.max_batch_images), allow_json=False)
        answers = await run(request, uploads, attention, settings, check, pool, metrics)
        results = []
        for upload, answer in zip(uploads, answers, strict=True):
            if isinstance(answer, ServiceError):
                metrics.errors.labels(answer.kind).inc()
                item = BatchError(filename=upload.filename, status_code=answer.status_code, **answer.body())
            else:
                item = BatchPrediction(**answer.model_dump(exclude_unset=True), filename=upload.filename)
            results.append(item)
        return results

    return router


def _limits(settings: Settings, max_images: int) -> UploadLimits:
    return UploadLimits(settings.max_upload_bytes, max_images, settings.upload_timeout_s)
