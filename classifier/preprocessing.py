"""The one preprocessing function: image -> model input.

Training, evaluation and the service all call `preprocess`, so a model always
sees its inputs prepared exactly as during training.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from classifier.imaging import DecodedImage, decode_image, reduce_pixels

IMAGE_SIZE = 64
"""Side of the square grayscale model input, in pixels, unless a dataset asks for another."""
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5

DESCRIPTION = (
    f"decode (JPEG DCT-domain reduction, EXIF orientation, DICOM windowing), grayscale in [0, 1], "
    f"squash to a square with an antialiased bilinear filter, stretch the {LOW_PERCENTILE}-{HIGH_PERCENTILE} "
    f"percentile range to [0, 1] (classifier.preprocessing.preprocess)"
)
"""`preprocess` in words, as model cards record it."""


def decode_side(size: int) -> int:
    """The shortest side an image is decoded at for a `size` x `size` input: twice the input's, so that the
    antialiased squash still has pixels to average however the decoder reduced the image."""
    return 2 * size


def resize_gray(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 2-D intensity array resized to `width` x `height` with an antialiased bilinear filter."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def normalize_intensity(pixels: np.ndarray) -> np.ndarray:
    """Stretch the image's own 0.5-99.5 percentile range to [0, 1].

    This makes the input independent of bit depth, exposure and windowing, so a
    16-bit PNG, a DICOM and an 8-bit JPEG of one radiograph look alike.
    """
    low, high = np.percentile(pixels, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high - low < 1e-6:
        return np.zeros_like(pixels, dtype=np.float32)
    return np.clip((pixels - low) / (high - low), 0.0, 1.0).astype(np.float32)


def preprocess(image: bytes | DecodedImage | np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Image bytes, a decoded image or a 2-D intensity array -> float32 array (size, size, 1)."""
    if isinstance(image, bytes):
        image = decode_image(image, min_side=decode_side(size))
    pixels = image.pixels if isinstance(image, DecodedImage) else image
    # full-size pixels are reduced as decode_image reduces, so they give the same input as their bytes
    pixels = reduce_pixels(pixels, decode_side(size))
    return normalize_intensity(resize_gray(pixels, size, size))[..., np.newaxis]
