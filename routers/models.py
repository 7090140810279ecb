"""The served models' cards, and the input check's."""

from __future__ import annotations

from fastapi import APIRouter

from classifier.card import ModelCard
from classifier.errors import ServiceError
from classifier.input_check import CHECK_NAME, CheckCard
from classifier.schemas import ErrorResponse, ModelInfo, model_info
from routers.dependencies import InputCheckDep, RegistryDep

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", summary="Every served model: classes, threshold, input size, validation scores")
async def list_models(registry: RegistryDep) -> list[ModelInfo]:
    return [model_info(served) for served in registry]


@router.get(
    f"/{CHECK_NAME}",
    summary="The input check's card: what it was trained on, its threshold and its validation figures",
    responses={404: {"model": ErrorResponse, "description": "the check is off (CLASSIFIER_INPUT_CHECK=off)"}},
)
async def input_check_card(check: InputCheckDep) -> CheckCard:
    if check is None:
        raise ServiceError(404, "unknown_model", "the input check is off (CLASSIFIER_INPUT_CHECK=off)")
    return check.card


@router.get(
    "/{name}",
    summary="One model's full card, training record included",
    responses={404: {"model": ErrorResponse, "description": "no such model"}},
)
async def model_card(name: str, registry: RegistryDep) -> ModelCard:
    served = registry.get(name)
    if served is None:
        raise ServiceError(404, "unknown_model", f"no model {name!r}; see /models")
    return served.card
