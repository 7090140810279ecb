"""The inference service: ``uvicorn classifier.app:app``.

`create_app` builds the FastAPI app from `Settings`: it finds the models, loads the input check (small: at once;
a missing check stops the start unless ``CLASSIFIER_INPUT_CHECK=off``), mounts one prediction router per model,
and loads the weights once when the server starts (see `classifier.registry`): in the background, or, with
several workers, before the worker takes connections (the others serve meanwhile).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.requests import ClientDisconnect

from classifier import __version__
from classifier.errors import ServiceError, from_image_error
from classifier.imaging import ImageError
from classifier.input_check import load_input_check
from classifier.pool import InferencePool
from classifier.registry import ModelRegistry, ServedModel
from classifier.settings import Settings
from classifier.telemetry import REQUEST_ID_HEADER, PrometheusMetrics, RequestTelemetry, configure_logging
from routers import health, metrics, models, prediction, web
from routers.dependencies import require_api_key

DESCRIPTION = """Classifies chest X-rays and shows where the model looked (an attention map).

**Research models trained on small public datasets; not a diagnostic device.**

Every refused request is answered with a 4xx and `{"detail": "..."}` saying what was wrong. An image that does
not look like a frontal chest X-ray is refused with 422 and `"kind": "not_a_chest_xray"` (see `input_check` in
the answers and `CLASSIFIER_INPUT_CHECK`)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    registry = ModelRegistry.discover(settings.models_dir, settings.models)
    input_check = (
        None
        if settings.input_check == "off"
        else load_input_check(settings.models_dir, settings.runtime, settings.model_threads)
    )
    telemetry = PrometheusMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def publish(served: ServedModel) -> None:
            telemetry.models_ready.labels(served.name).set(served.status == "ready")

        load = partial(registry.load, settings.runtime, settings.model_threads, publish)
        async with anyio.create_task_group() as tasks:
            if settings.workers > 1:
                await load()  # the server listens after startup: this worker takes connections once it has its models
            else:
                tasks.start_soon(load)  # alone, answer /healthcheck and /readyz while loading
            yield
            tasks.cancel_scope.cancel()

    app = FastAPIOffline(
        title="Chest X-ray classifier",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.input_check = input_check
    app.state.pool = InferencePool(
        settings.inference_threads, settings.max_in_flight, settings.retry_after_s, telemetry.in_flight.set
    )
    app.state.metrics = telemetry
    app.state.api_keys = [key.get_secret_value().encode() for key in settings.accepted_api_keys()]
    guarded = [Depends(require_api_key)] if app.state.api_keys else []  # without keys, /docs shows no lock
    for served in registry:
        telemetry.models_ready.labels(served.name).set(0)

    app.include_router(web.router)
    app.mount("/static", web.static, name="static")
    app.include_router(health.router)
    app.include_router(models.router, dependencies=guarded)
    app.include_router(metrics.router)
    for served in registry:
        app.include_router(prediction.prediction_router(served), dependencies=guarded)

    _add_error_handlers(app, telemetry)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(RequestTelemetry, metrics=telemetry)
    return app


def _add_error_handlers(app: FastAPI, telemetry: PrometheusMetrics) -> None:
    """Every refusal as ``{"detail": "..."}`` with its status, counted by kind."""

    def refuse(error: ServiceError) -> JSONResponse:
        telemetry.errors.labels(error.kind).inc()
        return JSONResponse(error.body(), error.status_code, headers=error.headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return refuse(exc)

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        return refuse(from_image_error(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return refuse(ServiceError(422, "invalid_request", problems))

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, exc: ClientDisconnect) -> JSONResponse:
        return refuse(ServiceError(400, "client_disconnected", "the client disconnected before sending the body"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        telemetry.errors.labels("internal").inc()
        return JSONResponse({"detail": "internal error; the server log has the details"}, 500)


app = create_app()
