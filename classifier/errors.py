"""The project's own errors: `UserError` for the CLI and the training pipeline, `ServiceError` for the API.

A `UserError` is something the user can put right; the CLI prints it as one line. A `ServiceError` is a
request the service refuses, answered with its status code and JSON ``{"detail": "..."}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def from_image_error(exc: ImageError) -> ServiceError:
    """The refusal of an image that cannot be decoded, with the decoder's status and message."""
    return ServiceError(exc.status_code, IMAGE_ERROR_KINDS.get(exc.status_code, "invalid_image"), str(exc))
