"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response

from classifier.schemas import Readiness
from routers.dependencies import RegistryDep

router = APIRouter(tags=["health"])


@router.get(
    "/healthcheck",
    summary="Liveness: the process answers",
    responses={200: {"content": {"application/json": {"example": "Good to go"}}}},
)
async def healthcheck() -> str:
    return "Good to go"


@router.get(
    "/readyz",
    summary="Readiness: 200 once every model is loaded, else 503",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a model is still loading, failed, or none was found"}},
)
async def readyz(registry: RegistryDep, response: Response) -> Readiness:
    if not registry.ready:
        response.status_code = 503
    return Readiness(ready=registry.ready, models={m.name: m.status for m in registry})
