"""The served models' cards, and the input check's."""

from __future__ import annotations

from fastapi import APIRouter

from classifier.card import ModelCard
from classifier.errors import ServiceError
from classifier.input_check import CHECK_NAME, CheckCard
from classifier.schemas import ErrorResponse, InputCheckRef, ModelInfo, model_info
from routers.dependencies import InputCheckDep, RegistryDep, SettingsDep

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "", summary="Every served model: classes, threshold, input size, validation scores, the input check guarding it"
)
async def list_models(registry: RegistryDep, check: InputCheckDep, settings: SettingsDep) -> list[ModelInfo]:
    guard = None
    if check is not None:
        card = check.card
        guard = InputCheckRef(
            name=card.name,
            version=card.version,
            mode=settings.input_check,
            threshold=card.threshold,
            card_url=f"/models/{CHECK_NAME}",
        )
    return [model_info(served, guard) for served in registry]


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
