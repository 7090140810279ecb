"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from routers.dependencies import MetricsDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, latency, predictions per class, errors by kind",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(telemetry: MetricsDep) -> Response:
    return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)
