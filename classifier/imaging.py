"""Decoding uploaded or stored image bytes into a grayscale intensity array.

This is the first step of the one preprocessing path shared by training,
evaluation and serving: bytes -> `DecodedImage` -> model input
(see `classifier.preprocessing`).

The bytes are untrusted: every input either decodes or raises an `ImageError`
whose `status_code` and message can go straight back to the uploader. Image
sizes are checked from the header before any pixel is decoded, and images are
reduced while decoding (JPEG in the DCT domain, others by box averaging) so
that large uploads cost little more than the model's small input needs.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
import pydicom
from PIL import Image, ImageOps
from PIL.BmpImagePlugin import BmpImageFile
from pydicom.encaps import get_frame
from pydicom.errors import BytesLengthException
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, get_decoder, pixel_array
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGTransferSyntaxes,
)
from pydicom.valuerep import VR

# Pillow checks sizes against its own limit, Image.MAX_IMAGE_PIXELS (about 89 megapixels), while opening
# and loading, also for buffers of its own (GIF frames, TIFF tiles); it only warns below twice the limit.
# Make that a refusal too: `decode_image` turns both into an ImageTooLargeError.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
# Uploads are never logged, but pydicom reports what it finds odd in a file as a warning and a log
# record, often quoting the file's bytes; here every problem becomes an ImageError instead.
warnings.filterwarnings("ignore", module="pydicom")
logging.getLogger("pydicom").disabled = True

SUPPORTED_FORMATS = "JPEG, PNG, BMP, TIFF, WebP, GIF or DICOM"
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")
"""Formats opened with Pillow; its JPEG opener also reads MPO, the multi-picture JPEG of some cameras."""

MAX_PIXELS = 50_000_000
"""Largest image decoded by default, in pixels (width x height), checked before decoding."""
MAX_JPEG_SCANS = 100
"""Progressive JPEGs usually have about 10 scans; each one costs a pass over the whole image, so a
small file with thousands of (empty) scans would take minutes to decode."""
_BMP_RUN_LENGTH = (BmpImageFile.COMPRESSIONS["RLE8"], BmpImageFile.COMPRESSIONS["RLE4"])
"""BMP compressions that Pillow decodes in Python, at about a second per megabyte: no radiograph needs them."""

# What Pillow raises for broken or hostile files: OSError (unidentified, truncated or corrupt data),
# ValueError or SyntaxError (malformed headers and chunks).
_PILLOW_ERRORS = (OSError, ValueError, SyntaxError)
_PILLOW_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
# pydicom (reading with `force`, so never InvalidDicomError) parses lazily, and malformed elements surface
# when read: missing ones raise AttributeError or KeyError, malformed ones ValueError, TypeError, IndexError,
# struct.error, EOFError or BytesLengthException; the pixel decoders add NotImplementedError, RuntimeError
# (every plugin failed) and, through Pillow, OSError and its refusals of oversized codestreams.
_DICOM_ERRORS = (
    BytesLengthException,
    AttributeError,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    EOFError,
    OSError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    *_PILLOW_BOMBS,
)

_BARE_SYNTAXES = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
"""Transfer syntax by pydicom's `original_encoding` (implicit VR, little endian) of a bare data set."""


class ImageError(ValueError):
    """An input that is not a usable image; `status_code` is the HTTP status to answer with."""

    status_code = 400


class EmptyImageError(ImageError):
    """No bytes at all."""


class CorruptImageError(ImageError):
    """A recognised format whose data is truncated, corrupt or invalid."""


class UnsupportedImageError(ImageError):
    """Not an image, or an image format or variant this module cannot decode."""

    status_code = 415


class ImageTooLargeError(ImageError):
    """More pixels than allowed, judged from the header before decoding."""

    status_code = 413


HUE_SECTORS = 12
"""Hues are counted in sectors of 30 degrees of the (Cb, Cr) plane, counter-clockwise from the +Cb axis."""
CLEAR_CHROMA = 16.0
"""Chroma (distance from gray in the (Cb, Cr) plane, in 8-bit levels) from which a pixel counts as clearly
coloured: a tint of a few levels, or the noise of a gray picture stored as a colour JPEG, stays below it."""


@dataclass(frozen=True)
class DicomTags:
    """What a DICOM header says about the image, upper-case and stripped ("" where it says nothing)."""

    modality: str = ""
    view_position: str = ""
    body_part: str = ""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded radiograph.

    `pixels` is a 2-D float32 array in [0, 1], 0 black and 1 white as displayed,
    upright (EXIF orientation applied) and possibly reduced in size while
    decoding; `width`, `height` and `format` describe the image as received
    (stored size, before any rotation). `hues` is the share of the image's
    pixels that are clearly coloured (see `CLEAR_CHROMA`), by hue sector
    (`HUE_SECTORS`): all zero for a gray image; `dicom` is a DICOM file's header
    fields that say what the image shows.
    """

    pixels: np.ndarray
    width: int
    height: int
    format: str
    hues: np.ndarray = field(default_factory=lambda: np.zeros(HUE_SECTORS, np.float32))
    dicom: DicomTags | None = None

    @property
    def colourfulness(self) -> float:
        """The share of clearly coloured pixels, whatever their hue."""
        return float(self.hues.sum())

    @property
    def mixed_colour(self) -> float:
        """The share of clearly coloured pixels outside the image's dominant quarter of hues (three adjacent
        sectors): 0 for a gray picture and for a tinted one (a radiograph scanned or exported with a colour
        cast), large for a photo or a colour chart."""
        window = sum(np.roll(self.hues, -k) for k in range(HUE_SECTORS // 4))
        return float(self.hues.sum() - window.max())


def decode_image(data: bytes, *, min_side: int = 0, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode `data` to grayscale, reducing early so no side drops below `min_side` (0: full size).

    Raises an `ImageError` subclass for anything that is not a decodable image
    of at most `max_pixels` pixels.
    """
    if not data:
        raise EmptyImageError("The upload is empty: send a chest X-ray image file.")
    if _looks_like_dicom(data):
        return _decode_dicom(data, min_side, max_pixels)
    return _decode_pillow(data, min_side, max_pixels)


def _check_size(width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    pixels = width * height * frames
    if pixels > max_pixels:
        what = f"{width} x {height} pixels" + (f" in {frames} frames" if frames > 1 else "")
        raise ImageTooLargeError(f"The image has {what} ({pixels:,}), more than the limit of {max_pixels:,}.")


def _check_decoding_cost(image: Image.Image, data: bytes) -> None:
    """Refuse encodings that take far longer to decode than their size suggests."""
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        scans = data.count(b"\xff\xda")  # SOS markers: entropy-coded data never holds this byte pair
        if scans > MAX_JPEG_SCANS:
            raise ImageError(
                f"The JPEG image has {scans} scans, more than the {MAX_JPEG_SCANS} allowed: "
                "save it again as an ordinary JPEG."
            )
    if image.format == "BMP" and image.info.get("compression") in _BMP_RUN_LENGTH:
        raise UnsupportedImageError("Run-length encoded BMP images are not supported: send a PNG instead.")


def reduction_factor(width: int, height: int, min_side: int) -> int:
    """The whole factor by which to box-average a `width` x `height` image so no side drops below `min_side`.

    It is the reduction a JPEG gets here: libjpeg scales it by 1/2, 1/4 or 1/8
    while decoding (Pillow's `draft`: the largest of these that keeps both sides
    at least `min_side`), then the result is box-averaged by a whole factor.
    Other formats are box-averaged by the product in one step, which gives the
    same size and nearly the same pixels, so every format reaches the model
    input the same way.
    """
    if not min_side:
        return 1
    scale = next((s for s in (8, 4, 2) if min(width, height) // min_side >= s), 1)
    return scale * _whole_factor(-(-width // scale), -(-height // scale), min_side)


def _whole_factor(width: int, height: int, min_side: int) -> int:
    return max(1, min(width, height) // min_side) if min_side else 1


def reduce_pixels(pixels: np.ndarray, min_side: int) -> np.ndarray:
    """2-D `pixels` reduced as `decode_image` reduces (see `reduction_factor`); its output is left as it is."""
    factor = reduction_factor(pixels.shape[1], pixels.shape[0], min_side)
    return np.asarray(Image.fromarray(np.asarray(pixels, np.float32)).reduce(factor)) if factor > 1 else pixels


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    return image.reduce(factor) if factor > 1 else image


def _decode_pillow(data: bytes, min_side: int, max_pixels: int) -> DecodedImage:
    try:
        image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except _PILLOW_BOMBS as exc:
        raise _pillow_bomb(max_pixels) from exc
    except _PILLOW_ERRORS as exc:
        if fmt := _signature_format(data):
            raise CorruptImageError(f"The {fmt} image is truncated or corrupt and cannot be decoded.") from exc
        raise UnsupportedImageError(
            f"The upload is not an image in a supported format: send a {SUPPORTED_FORMATS} file."
        ) from exc
    fmt = image.format or "image"
    width, height = image.size
    _check_size(width, height, max_pixels)
    _check_decoding_cost(image, data)
    if fmt in ("JPEG", "MPO"):  # scaled in the DCT domain
        image.draft(_jpeg_draft_mode(image), (min_side, min_side) if min_side else None)
        factor = _whole_factor(*image.size, min_side)
    else:
        factor = reduction_factor(width, height, min_side)
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except _PILLOW_BOMBS as exc:
        raise _pillow_bomb(max_pixels) from exc
    except _PILLOW_ERRORS as exc:
        raise CorruptImageError(f"The {fmt} image is truncated or corrupt and cannot be decoded.") from exc
    if image.mode not in (*_GRAY_MODES, "P", "PA") and "transparency" not in image.info:
        image, factor = _reduce(image, factor), 1  # reduced once, for its hues and its gray levels
    hues = _pillow_hues(image, factor)
    pixels = _pillow_gray(image, fmt, factor)
    return DecodedImage(pixels=pixels, width=width, height=height, format=fmt, hues=hues)


def _jpeg_draft_mode(image: Image.Image) -> str:
    """The mode libjpeg decodes a JPEG to: a colour JPEG's YCbCr as stored (its luma is the gray picture,
    exactly as a gray decode gives it; its chroma the colour), or RGB where an Adobe JPEG stores RGB
    (transform 0); gray stays gray (and CMYK, which libjpeg does not convert, CMYK)."""
    if image.mode != "RGB":
        return "L"
    return "RGB" if image.info.get("adobe_transform", 1) == 0 else "YCbCr"


def _pillow_bomb(max_pixels: int) -> ImageTooLargeError:
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    return ImageTooLargeError(f"The image has more pixels than the limit of {limit:,}.")


def _signature_format(data: bytes) -> str | None:
    """The supported format whose signature `data` starts with, by Pillow's own checks, if any."""
    Image.init()
    return next((fmt for fmt in PILLOW_FORMATS if Image.OPEN[fmt][1](data[:16])), None)


_GRAY_MODES = ("1", "L", "LA", "La", "I", "F", *(m for m in Image.MODES if m.startswith("I;16")))


def _pillow_hues(image: Image.Image, factor: int) -> np.ndarray:
    """`hues` of a loaded Pillow image, counted on the image reduced by `factor` (zero for gray modes).

    A palette image is sampled at that spacing (averaging palette indices means nothing); transparent
    pixels count as black, as `_pillow_gray` composites them. Modes without a conversion to RGB (LAB)
    count as gray: `_pillow_gray` refuses them.
    """
    mode = image.mode
    if mode in _GRAY_MODES:
        return np.zeros(HUE_SECTORS, np.float32)
    try:
        if mode in ("P", "PA"):
            if _gray_palette(image):
                return np.zeros(HUE_SECTORS, np.float32)
            size = (max(1, image.width // factor), max(1, image.height // factor))
            image = image.resize(size, Image.Resampling.NEAREST).convert("RGBA")
        else:
            image = _reduce(image, factor)
        if "A" in image.getbands():  # composited on black, as `_pillow_gray` does
            image = Image.composite(image, Image.new(image.mode, image.size), image.getchannel("A"))
        ycbcr = image if image.mode == "YCbCr" else image.convert("RGB").convert("YCbCr")
    except ValueError:
        return np.zeros(HUE_SECTORS, np.float32)
    return hue_shares(np.asarray(ycbcr.getchannel("Cb")), np.asarray(ycbcr.getchannel("Cr")))


def _gray_palette(image: Image.Image) -> bool:
    palette = np.frombuffer(bytes(image.getpalette("RGB") or b""), np.uint8).reshape(-1, 3)
    return bool((palette == palette[:, :1]).all())


def _hue_table() -> np.ndarray:
    """Each (Cb, Cr) pair of 8-bit levels -> its hue sector, or `HUE_SECTORS` where it is not clearly coloured."""
    cb, cr = np.meshgrid(np.arange(256) - 128.0, np.arange(256) - 128.0, indexing="ij")
    sectors = (np.arctan2(cr, cb) % (2 * np.pi) * (HUE_SECTORS / (2 * np.pi))).astype(np.uint8) % HUE_SECTORS
    return np.where(np.hypot(cb, cr) >= CLEAR_CHROMA, sectors, HUE_SECTORS).astype(np.uint8).ravel()


_HUE_TABLE = _hue_table()


def hue_shares(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The share of pixels clearly coloured (`CLEAR_CHROMA`), by hue sector, from their 8-bit Cb and Cr."""
    pairs = (cb.astype(np.intp) << 8) | cr
    counts = np.bincount(_HUE_TABLE.take(pairs.ravel()), minlength=HUE_SECTORS + 1)
    return (counts[:HUE_SECTORS] / max(1, pairs.size)).astype(np.float32)


def rgb_hues(rgb: np.ndarray) -> np.ndarray:
    """`hue_shares` of (..., 3) RGB in 8-bit levels, by JPEG's conversion to Cb and Cr."""
    chroma = rgb @ np.float32([[-0.168736, 0.5], [-0.331264, -0.418688], [0.5, -0.081312]]) + 128
    levels = np.clip(np.rint(chroma), 0, 255).astype(np.uint8)
    return hue_shares(levels[..., 0], levels[..., 1])


def _pillow_gray(image: Image.Image, fmt: str, factor: int) -> np.ndarray:
    """Displayed gray levels in [0, 1] of a loaded Pillow image, whatever its mode and bit depth, reduced by `factor`.

    Transparent parts are composited on black, the background of a radiograph,
    so that a transparent margin looks like the film's own edge rather than
    bright, dense tissue.
    """
    if image.mode == "YCbCr":  # a colour JPEG decoded without conversion: its luma is the gray picture
        image = image.getchannel("Y")
    mode = image.mode
    sixteen_bit = mode.startswith("I;16")
    target = "F" if sixteen_bit or mode in ("I", "F") else "LA" if image.has_transparency_data else "L"
    try:
        # Reduce first where that commutes with the conversion: Pillow cannot reduce bilevel or 16-bit
        # images, would average palette indices, and a transparent colour must be matched before averaging.
        if mode in ("1", "P", "PA") or sixteen_bit or "transparency" in image.info:
            image = image.convert(target)
        image = _reduce(image, factor)
        array = np.asarray(image if image.mode == target else image.convert(target), dtype=np.float32)
    except ValueError as exc:  # Pillow has no conversion from this mode (e.g. LAB)
        raise UnsupportedImageError(f"{fmt} images with pixel format {mode} are not supported.") from exc
    if target == "LA":
        array = array[..., 0] * array[..., 1] / 255.0**2
    elif target == "F":  # 32-bit integer or float samples have no defined display range
        array = array / 65535.0 if sixteen_bit else _stretch(array)
    else:
        array = array / 255.0
    return _finite(array)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Values mapped linearly from their own range onto [0, 1] (all zero when constant)."""
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros(values.shape, np.float32)
    return np.subtract(values, low, dtype=np.float64) / (high - low)


def _finite(array: np.ndarray) -> np.ndarray:
    if not np.isfinite(array).all():
        raise CorruptImageError("The image holds invalid pixel values (not a number or infinite).")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def _looks_like_dicom(data: bytes) -> bool:
    """A DICOM file: the "DICM" prefix after the 128-byte preamble, or a bare little-endian data set.

    Without the preamble a file starts with a tag of group 0002 (file meta
    information) or 0008 (identification), which no supported raster format does.
    """
    return data[128:132] == b"DICM" or data[:2] in (b"\x02\x00", b"\x08\x00")


def _read_dicom(data: bytes) -> pydicom.FileDataset:
    """The data set in `data`, refusing first what would make pydicom hang or run out of memory.

    pydicom formats the file meta information's group length into a log message, which for a malformed
    sequence there takes time exponential in its depth; and it inflates a deflated data set in one
    unbounded step (a zip bomb). So the meta information is read first: raw, then as pydicom reads it.
    """
    try:
        meta = io.BytesIO(data)
        read_preamble(meta, force=True)
        start = meta.tell()
        nested = any(element.VR == VR.SQ for element in data_element_generator(meta, False, True, _past_meta))
        meta.seek(start)
        deflated = not nested and _read_file_meta_info(meta).get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        ds = None if nested or deflated else pydicom.dcmread(io.BytesIO(data), force=True)
    except _DICOM_ERRORS as exc:
        raise CorruptImageError("The DICOM file is truncated or corrupt and cannot be read.") from exc
    if nested:
        raise CorruptImageError("The DICOM file meta information is corrupt.")
    if deflated:
        raise UnsupportedImageError("Deflated DICOM files are not supported: send the file without deflate.")
    return ds


def _past_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 0x0002


def _decode_dicom(data: bytes, min_side: int, max_pixels: int) -> DecodedImage:
    ds = _read_dicom(data)
    try:  # elements are parsed on first access
        has_pixels = "PixelData" in ds
        width, height = int(ds.get("Columns") or 0), int(ds.get("Rows") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        photometric = ds.get("PhotometricInterpretation")
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if not syntax:  # a bare data set, without file meta information: the encoding it was read in
            syntax = ds.file_meta.TransferSyntaxUID = _BARE_SYNTAXES[ds.original_encoding]
    except _DICOM_ERRORS as exc:
        raise CorruptImageError("The DICOM file is corrupt and cannot be read.") from exc
    if not has_pixels:
        raise UnsupportedImageError("The DICOM file holds no image (it has no Pixel Data).")
    photometric = photometric.strip() if isinstance(photometric, str) else ""
    if min(width, height, frames) < 1:
        raise CorruptImageError("The DICOM file gives no valid image size.")
    if not isinstance(syntax, UID):
        raise CorruptImageError("The DICOM file gives no valid transfer syntax.")
    _check_size(width, height, max_pixels, frames)
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB") and not photometric.startswith("YBR_"):
        raise UnsupportedImageError(
            f"DICOM images with photometric interpretation {photometric[:16] or 'missing'} are not supported."
        )
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:  # no decoder at all, e.g. a private or misspelt transfer syntax
        available = False
    if not available:
        raise UnsupportedImageError(
            f"The DICOM image is encoded as {syntax.name[:100]}, which cannot be decoded here: "
            "send it uncompressed, as baseline JPEG or RLE, or as a PNG."
        )
    if syntax in JPEGTransferSyntaxes or syntax in JPEG2000TransferSyntaxes:
        _check_dicom_codestream(ds, width, height, frames)
    try:
        stored = pixel_array(ds, index=0)  # the first frame only; YBR colour comes back as RGB
    except _DICOM_ERRORS as exc:
        raise CorruptImageError("The DICOM image is truncated or corrupt and cannot be decoded.") from exc
    if stored.ndim != (2 if photometric.startswith("MONOCHROME") else 3):
        raise CorruptImageError("The DICOM pixel data does not match its photometric interpretation.")
    hues = np.zeros(HUE_SECTORS, np.float32)
    try:
        if photometric.startswith("MONOCHROME"):
            # Reducing the stored values before the rescale, LUT and window is several times faster than
            # after, and differs only where a reduction box straddles an edge of the window.
            shown = _dicom_display(np.rint(reduce_pixels(stored, min_side)).astype(stored.dtype), ds)
            pixels = 1.0 - shown if photometric == "MONOCHROME1" else shown
        else:
            rgb = stored.astype(np.float32) / np.iinfo(stored.dtype).max
            pixels = reduce_pixels(rgb @ np.float32([0.299, 0.587, 0.114]), min_side)
            step = reduction_factor(width, height, min_side)  # hues are shares: a sample at that spacing will do
            hues = rgb_hues(rgb[::step, ::step] * 255)
    except _DICOM_ERRORS as exc:
        raise CorruptImageError("The DICOM file's rescale, LUT or window settings are invalid.") from exc
    return DecodedImage(
        pixels=_finite(pixels), width=width, height=height, format="DICOM", hues=hues, dicom=_dicom_tags(ds)
    )


def _dicom_tags(ds: pydicom.Dataset) -> DicomTags:
    """The header fields that say what the image shows; a malformed one says nothing."""

    def text(keyword: str) -> str:
        try:
            value = ds.get(keyword)
        except _DICOM_ERRORS:
            return ""
        return str(value).strip().upper()[:64] if isinstance(value, str) else ""

    return DicomTags(modality=text("Modality"), view_position=text("ViewPosition"), body_part=text("BodyPartExamined"))


def _check_dicom_codestream(ds: pydicom.Dataset, width: int, height: int, frames: int) -> None:
    """Refuse a JPEG or JPEG 2000 first frame whose size differs from the header's, or with too many scans.

    pydicom hands these frames to Pillow without comparing sizes, so a small
    header could otherwise front a huge picture.
    """
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=frames)
        embedded = Image.open(io.BytesIO(frame), formats=("JPEG", "JPEG2000"))
    except Image.UnidentifiedImageError as exc:  # e.g. 12-bit or lossless JPEG, which Pillow cannot read
        raise UnsupportedImageError(
            "The DICOM image is compressed in a JPEG variant that cannot be decoded here: "
            "send it uncompressed or as a PNG."
        ) from exc
    except _DICOM_ERRORS as exc:
        raise CorruptImageError("The DICOM image's compressed data is truncated or corrupt.") from exc
    if embedded.size != (width, height):
        raise CorruptImageError(
            f"The DICOM image's compressed data is {embedded.width} x {embedded.height} pixels, "
            f"not {width} x {height} as stated."
        )
    _check_decoding_cost(embedded, frame)


def _dicom_display(stored: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Gray levels in [0, 1] after the modality transform (rescale slope and intercept, or LUT) and VOI.

    As in pydicom, a VOI LUT wins over a window. A window is shown over its
    full output range; an image with a VOI LUT or with neither is shown over
    its own range, as viewers do. MONOCHROME1 inversion is left to the caller
    (a Presentation LUT Shape, which only restates it, is ignored).
    """
    values = apply_modality_lut(stored, ds)
    if ds.get("VOILUTSequence"):
        return _stretch(apply_voi(values, ds).astype(np.float64))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            # The window maps onto [low, high], which pydicom derives from the bit depth and rescale;
            # the two infinities come out as exactly those ends.
            low, high = apply_windowing(np.array([-np.inf, np.inf]), ds)
            return (apply_windowing(values, ds) - low) / (high - low)
        except ValueError:  # a window width below 1 or an unknown VOI function: show it unwindowed
            pass
    return _stretch(values.astype(np.float64))
