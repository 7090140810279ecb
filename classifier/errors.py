"""The project's own errors: `UserError` for the CLI and the training pipeline, `ServiceError` for the API.

A `UserError` is something the user can put right; the CLI prints it as one line. A `ServiceError` is a
request the service refuses, answered with its status code and JSON ``{"detail": "..."}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifier.imaging import ImageError

IMAGE_ERROR_KINDS = {400: "invalid_image", 413: "image_too_large", 415: "unsupported_image"}


class UserError(Exception):
    """Something the user can put right: the message says what and how."""


class ServiceError(Exception):
    """A refusal: `kind` labels it in the metrics, `detail` tells the client what was wrong."""

    def __init__(self, status_code: int, kind: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.kind = kind
        self.detail = detail
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The JSON answer (a batch's error entry adds it to its own fields)."""
        return {"detail": self.detail}


class NotAChestXrayError(ServiceError):
    """An image the input check refused (`classifier.input_check`): 422 with the reason and the score."""

    def __init__(self, reason: str, score: float, input_check: object):
        super().__init__(422, "not_a_chest_xray", f"The image does not look like a frontal chest X-ray ({reason}).")
        self.score = score
        self.input_check = input_check
        """The verdict as a prediction answer carries it (`classifier.schemas.InputCheckResult`): audited."""

    def body(self) -> dict[str, Any]:
        return {**super().body(), "kind": self.kind, "score": self.score}


def from_image_error(exc: ImageError) -> ServiceError:
    """The refusal of an image that cannot be decoded, with the decoder's status and message."""
    return ServiceError(exc.status_code, IMAGE_ERROR_KINDS.get(exc.status_code, "invalid_image"), str(exc))
