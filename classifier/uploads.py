"""Uploaded images, read from the raw request stream.

Nothing is spooled to disk: multipart bodies go through python-multipart's streaming parser into memory,
and a body is refused (413) as soon as it passes the size limit -- before reading it when its
Content-Length says so -- instead of after buffering it all.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, Field, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from classifier.errors import ServiceError

IMAGE_FIELD = "image_file"
MAX_OTHER_PARTS = 16
"""Form fields besides the images that are read (and ignored) before the form is refused."""
HOW_TO_SEND = f"send the image as the multipart/form-data field {IMAGE_FIELD!r} or as JSON {{'image': '<data URL>'}}"


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None


class DataUrlImage(BaseModel):
    """The JSON body the article's web page sent."""

    image: str = Field(
        description="the image as a data URL (`data:image/png;base64,...`) or as bare base64",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_images: int
    timeout_s: float


async def read_images(request: Request, limits: UploadLimits, *, allow_json: bool = True) -> list[Upload]:
    """Every `image_file` part of a multipart body, or the one image of a JSON body."""
    media_type, params = parse_options_header(request.headers.get("content-type"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)
    if media_type == b"multipart/form-data":
        return await _read_multipart(request, params.get(b"boundary"), limits)
    if allow_json and (media_type == b"application/json" or media_type.endswith(b"+json")):
        return [await _read_json(request, limits)]
    if not media_type and not await _read(request, limits):
        raise ServiceError(400, "empty_body", f"the request body is empty: {HOW_TO_SEND}")
    shown = media_type.decode("latin-1") or "none"
    expected = HOW_TO_SEND if allow_json else f"send the images as multipart/form-data fields {IMAGE_FIELD!r}"
    raise ServiceError(415, "unsupported_media_type", f"unsupported Content-Type {shown}: {expected}")


def _too_large(limits: UploadLimits) -> ServiceError:
    return ServiceError(413, "body_too_large", f"the request body is over the {limits.max_bytes / 2**20:g} MiB limit")


async def _receive(request: Request, feed: Callable[[bytes], object], limits: UploadLimits) -> int:
    """Feed the body to `feed` chunk by chunk, refusing it once it passes the limit or the time allowed."""
    received = 0
    try:
        with anyio.fail_after(limits.timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limits.max_bytes:
                    raise _too_large(limits)
                feed(chunk)
    except TimeoutError:
        raise ServiceError(408, "upload_timeout", f"the body did not arrive within {limits.timeout_s:g} s") from None
    return received


async def _read(request: Request, limits: UploadLimits) -> bytes:
    body = bytearray()
    await _receive(request, body.extend, limits)
    return bytes(body)


async def _read_json(request: Request, limits: UploadLimits) -> Upload:
    body = await _read(request, limits)
    if not body:
        raise ServiceError(400, "empty_body", f"the request body is empty: {HOW_TO_SEND}")
    try:
        payload = DataUrlImage.model_validate_json(body)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]["msg"]
        raise ServiceError(422, "invalid_json", f"the JSON body must be {{'image': '<data URL>'}}: {problem}") from None
    return Upload(data=decode_data_url(payload.image))


def decode_data_url(text: str) -> bytes:
    """The bytes of a base64 data URL (``data:image/png;base64,...``) or of bare base64."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ServiceError(400, "invalid_data_url", "the data URL must be base64: data:<type>;base64,<data>")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(400, "invalid_data_url", "the image is not valid base64") from None


async def _read_multipart(request: Request, boundary: bytes | None, limits: UploadLimits) -> list[Upload]:
    if not boundary:
        raise ServiceError(400, "malformed_body", "the multipart Content-Type has no boundary")
    form = _ImageParts(limits.max_images)
    try:
        parser = MultipartParser(boundary, form.callbacks())
        received = await _receive(request, parser.write, limits)
        parser.finalize()
    except FormParserError as exc:
        raise ServiceError(400, "malformed_body", f"the multipart body is malformed: {exc}") from None
    if not received:
        raise ServiceError(400, "empty_body", f"the request body is empty: {HOW_TO_SEND}")
    if not form.complete:
        raise ServiceError(400, "malformed_body", "the multipart body ends before its closing boundary")
    if not form.images:
        raise ServiceError(422, "missing_field", f"the form has no {IMAGE_FIELD!r} field: {HOW_TO_SEND}")
    return form.images


class _ImageParts:
    """python-multipart callbacks keeping the `image_file` parts in memory and skipping the others."""

    def __init__(self, max_images: int):
        self.max_images = max_images
        self.images: list[Upload] = []
        self.complete = False
        self._parts = 0
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._data: bytearray | None = None
        self._filename: str | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self.max_images + MAX_OTHER_PARTS:
            raise ServiceError(413, "too_many_parts", f"the form has over {self.max_images + MAX_OTHER_PARTS} parts")
        self._disposition, self._data, self._filename = b"", None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name", b"").decode("utf-8", "replace") == IMAGE_FIELD:
            if len(self.images) == self.max_images:
                raise ServiceError(
                    413, "too_many_images", f"at most {self.max_images} {IMAGE_FIELD!r} part(s) per request"
                )
            self._data = bytearray()
            filename = options.get(b"filename")
            self._filename = None if filename is None else filename.decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None:
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._data is not None:
            self.images.append(Upload(data=bytes(self._data), filename=self._filename))
            self._data = None

    def on_end(self) -> None:
        self.complete = True
