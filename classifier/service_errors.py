"""Requests the service refuses, each answered with its status code and JSON ``{"detail": "..."}``."""

from __future__ import annotations

from classifier.imaging import ImageError

IMAGE_ERROR_KINDS = {400: "invalid_image", 413: "image_too_large", 415: "unsupported_image"}


class ServiceError(Exception):
    """A refusal: `kind` labels it in the metrics, `detail` tells the client what was wrong."""

    def __init__(self, status_code: int, kind: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.kind = kind
        self.detail = detail
        self.headers = headers


def from_image_error(exc: ImageError) -> ServiceError:
    return ServiceError(exc.status_code, IMAGE_ERROR_KINDS.get(exc.status_code, "invalid_image"), str(exc))
