"""Decoding uploaded or stored image bytes into a grayscale intensity array.

This is the first step of the one preprocessing path shared by training,
evaluation and serving: bytes -> `DecodedImage` -> model input
(see `classifier.preprocessing`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps


class ImageError(ValueError):
    """An input that is not a usable image; `status_code` is the HTTP status to answer with."""

    status_code = 400


class UnsupportedImageError(ImageError):
    status_code = 415


class ImageTooLargeError(ImageError):
    status_code = 413


@dataclass(frozen=True)
class DecodedImage:
    """A decoded radiograph.

    `pixels` is a 2-D float32 array in [0, 1], 0 black and 1 white as displayed,
    possibly reduced in size while decoding; `width`, `height` and `format`
    describe the image as received.
    """

    pixels: np.ndarray
    width: int
    height: int
    format: str


def decode_image(data: bytes, *, min_side: int = 0, max_pixels: int = 50_000_000) -> DecodedImage:
    """Decode `data` to grayscale, reducing early so no side drops below `min_side`."""
    if not data:
        raise ImageError("the image is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise UnsupportedImageError("the data is not an image in a supported format") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image has {width * height} pixels; the limit is {max_pixels}")
    fmt = image.format or "unknown"
    try:
        if min_side and fmt == "JPEG":
            image.draft("L", (min_side, min_side))
        image = ImageOps.exif_transpose(image)
        pixels = _to_gray(image)
    except Exception as exc:
        raise ImageError(f"the {fmt} image is truncated or corrupt") from exc
    return DecodedImage(pixels=pixels, width=width, height=height, format=fmt)


def _to_gray(image: Image.Image) -> np.ndarray:
    """Grayscale intensities in [0, 1], whatever the bit depth."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        return array / (65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
