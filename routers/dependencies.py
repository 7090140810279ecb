"""What the routes get injected: the settings, models, input check, inference pool and metrics the app was built
with, and the API key check.

The getters are coroutines: FastAPI runs a plain function dependency in a worker thread, a hop per
dependency per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from classifier.errors import ServiceError
from classifier.input_check import InputChecker
from classifier.pool import InferencePool
from classifier.registry import ModelRegistry
from classifier.settings import Settings
from classifier.telemetry import PrometheusMetrics


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_input_check(request: Request) -> InputChecker | None:
    """The input check, or None with ``CLASSIFIER_INPUT_CHECK=off``."""
    return request.app.state.input_check


async def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


async def get_metrics(request: Request) -> PrometheusMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
InputCheckDep = Annotated[InputChecker | None, Depends(get_input_check)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
MetricsDep = Annotated[PrometheusMetrics, Depends(get_metrics)]


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="one of the server's keys (`CLASSIFIER_API_KEYS`, `CLASSIFIER_API_KEYS_FILE`)",
)


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """401 with ``WWW-Authenticate: Bearer`` unless ``Authorization: Bearer <key>`` carries one of the server's
    keys. Compared in constant time with every key, so the time taken tells nothing about which nearly matched."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ServiceError(
            401, "missing_api_key", "this server needs an API key: send Authorization: Bearer <key>", challenge
        )
    given = credentials.credentials.encode()
    matches = [hmac.compare_digest(given, key) for key in request.app.state.api_keys]
    if not any(matches):
        raise ServiceError(401, "invalid_api_key", "the API key is not valid", challenge)
