"""What the routes get injected: the settings, models, inference pool and metrics the app was built with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from classifier.pool import InferencePool
from classifier.registry import ModelRegistry
from classifier.settings import Settings
from classifier.telemetry import Metrics


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
