"""What the routes get injected: the settings, models, inference pool and metrics the app was built with.

The getters are coroutines: FastAPI runs a plain function dependency in a worker thread, a hop per
dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from classifier.pool import InferencePool
from classifier.registry import ModelRegistry
from classifier.settings import Settings
from classifier.telemetry import PrometheusMetrics


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


async def get_metrics(request: Request) -> PrometheusMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
MetricsDep = Annotated[PrometheusMetrics, Depends(get_metrics)]
