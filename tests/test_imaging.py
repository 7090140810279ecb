"""decode_image: every supported encoding of one radiograph gives the same model input; hostile bytes give ImageErrors.

All inputs are generated here from fixtures/normal_1.jpeg (or are pydicom's own bundled test files).
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from classifier.imaging import (
    HUE_SECTORS,
    MAX_JPEG_SCANS,
    CorruptImageError,
    DecodedImage,
    DicomTags,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    decode_image,
    reduce_pixels,
)
from classifier.preprocessing import preprocess
from tests.helpers import FIXTURES, encode

# classifier.imaging silences pydicom's warnings when imported, but pytest drops filters set while collecting.
pytestmark = pytest.mark.filterwarnings(r"ignore::UserWarning:pydicom\..*")

TOLERANCE = 0.05
"""Largest difference allowed between model inputs of two encodings of one picture."""


@pytest.fixture(scope="module")
def gray() -> Image.Image:
    """A real radiograph, 320 x 281, 8-bit gray."""
    with Image.open(FIXTURES / "normal_1.jpeg") as image:
        return image.convert("L")


@pytest.fixture(scope="module")
def reference(gray: Image.Image) -> np.ndarray:
    """The model input for `gray`, from a lossless encoding."""
    return preprocess(encode(gray, "PNG"))


def png(array: np.ndarray, color_type: int, size: tuple[int, int] | None = None) -> bytes:
    """A PNG of a (height, width[, samples]) uint8 or uint16 array, written here because Pillow cannot write
    16-bit colour. Color types: 0 gray, 2 RGB, 4 gray + alpha, 6 RGBA. `size` overrides the size in the header.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = array.shape[:2]
    rows = array.astype(array.dtype.newbyteorder(">")).reshape(height, -1)
    header = struct.pack(">IIBBBBB", *(size or (width, height)), array.dtype.itemsize * 8, color_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + row.tobytes() for row in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def dicom(
    stored: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    bits_stored: int | None = None,
    syntax: uid.UID = uid.ExplicitVRLittleEndian,
    preamble: bool = True,
    **elements: object,
) -> bytes:
    """A DX DICOM file of `stored` (rows, columns) or (frames, rows, columns), encoded with `syntax`.

    Without `preamble` the bare data set is written (implicit VR, no file meta information).
    """
    ds = Dataset()
    ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = uid.generate_uid()
    ds.set_pixel_data(stored, photometric, bits_stored or stored.dtype.itemsize * 8)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax.is_encapsulated:
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        del ds.file_meta
        pydicom.dcmwrite(buffer, ds, implicit_vr=True)
    return buffer.getvalue()


def jpeg_dicom(jpeg: bytes, rows: int, columns: int, syntax: str = uid.JPEGBaseline8Bit) -> bytes:
    """A DICOM file whose pixel data is the encapsulated codestream `jpeg`, stated to be `rows` x `columns`."""
    ds = Dataset()
    ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = uid.generate_uid()
    ds.set_pixel_data(np.zeros((rows, columns), np.uint8), "MONOCHROME2", 8)
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def refused(data: bytes, error: type[ImageError], status: int, **kwargs: int) -> ImageError:
    """Decode `data`, expecting exactly `error` with `status` and a message that reads as a sentence."""
    with pytest.raises(error) as caught:
        decode_image(data, **kwargs)
    assert type(caught.value) is error
    assert caught.value.status_code == status
    message = str(caught.value)
    assert message[0].isupper() and message.endswith("."), message
    return caught.value


def as_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(255)
    return rgba


ENCODINGS: dict[str, tuple[str, Callable[[Image.Image], bytes]]] = {
    "jpeg gray": ("JPEG", lambda im: encode(im, "JPEG", quality=95)),
    "jpeg rgb": ("JPEG", lambda im: encode(as_rgb(im), "JPEG", quality=95)),
    "jpeg cmyk": ("JPEG", lambda im: encode(im.convert("CMYK"), "JPEG", quality=95)),
    "jpeg progressive": ("JPEG", lambda im: encode(im, "JPEG", quality=95, progressive=True)),
    "mpo": ("MPO", lambda im: encode(im, "MPO", quality=95, save_all=True, append_images=[im.rotate(90)])),
    "png gray": ("PNG", lambda im: encode(im, "PNG")),
    "png gray+alpha": ("PNG", lambda im: encode(im.convert("LA"), "PNG")),
    "png rgb": ("PNG", lambda im: encode(as_rgb(im), "PNG")),
    "png rgba": ("PNG", lambda im: encode(with_alpha(im), "PNG")),
    "png palette": ("PNG", lambda im: encode(as_rgb(im).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
    "png 16-bit gray": ("PNG", lambda im: encode(Image.fromarray(np.asarray(im).astype(np.uint16) * 257), "PNG")),
    "png 16-bit rgb": ("PNG", lambda im: png(np.asarray(as_rgb(im)).astype(np.uint16) * 257, 2)),
    "png 16-bit rgba": ("PNG", lambda im: png(np.asarray(with_alpha(im)).astype(np.uint16) * 257, 6)),
    "bmp gray": ("BMP", lambda im: encode(im, "BMP")),
    "bmp rgb": ("BMP", lambda im: encode(as_rgb(im), "BMP")),
    "tiff gray": ("TIFF", lambda im: encode(im, "TIFF")),
    "tiff rgb lzw": ("TIFF", lambda im: encode(as_rgb(im), "TIFF", compression="tiff_lzw")),
    "tiff 16-bit": ("TIFF", lambda im: encode(Image.fromarray(np.asarray(im).astype(np.uint16) * 257), "TIFF")),
    "tiff float": ("TIFF", lambda im: encode(Image.fromarray(np.asarray(im, np.float32) / 255), "TIFF")),
    "tiff two pages": ("TIFF", lambda im: encode(im, "TIFF", save_all=True, append_images=[im.rotate(90)])),
    "webp lossy": ("WEBP", lambda im: encode(as_rgb(im), "WEBP", quality=95)),
    "webp lossless rgba": ("WEBP", lambda im: encode(with_alpha(im), "WEBP", lossless=True)),
    "gif": ("GIF", lambda im: encode(im, "GIF")),
    "gif animated": ("GIF", lambda im: encode(im, "GIF", save_all=True, append_images=[im.rotate(90), im])),
}


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_encoding_gives_the_same_model_input(name: str, gray: Image.Image, reference: np.ndarray) -> None:
    expected_format, encoder = ENCODINGS[name]
    decoded = decode_image(encoder(gray), min_side=128)
    assert (decoded.format, decoded.width, decoded.height) == (expected_format, *gray.size)
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.ndim == 2
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0
    assert np.abs(preprocess(decoded) - reference).max() < TOLERANCE


def test_twelve_bit_values_in_a_16_bit_png_are_not_white(gray: Image.Image, reference: np.ndarray) -> None:
    """Detector data stored in 16-bit PNGs often uses 12 bits: a naive 8-bit conversion clips it to white."""
    data = encode(Image.fromarray(np.asarray(gray).astype(np.uint16) * 16), "PNG")
    decoded = decode_image(data, min_side=128)
    assert decoded.pixels.max() < 0.07  # 4080 / 65535: dark, as a viewer shows it without a window
    assert np.abs(preprocess(decoded) - reference).max() < TOLERANCE


def test_transparency_is_composited_on_black(gray: Image.Image) -> None:
    rgba = with_alpha(gray)
    rgba.putalpha(Image.fromarray(np.where(np.arange(gray.width) < 100, 0, 255).astype(np.uint8)[None].repeat(281, 0)))
    pixels = decode_image(encode(rgba, "PNG")).pixels
    assert pixels[:, :100].max() == 0.0
    np.testing.assert_allclose(pixels[:, 100:], np.asarray(gray)[:, 100:] / 255, atol=1e-6)


def test_palette_transparency_is_composited_on_black() -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 255, 255])
    image.putpixel((0, 0), 0)
    pixels = decode_image(encode(image, "GIF", transparency=1)).pixels
    assert pixels.max() == 0.0


@pytest.mark.parametrize("size", [(2000, 1756), (1624, 1104), (4248, 3480)])
def test_large_images_are_reduced_alike_in_every_format(size: tuple[int, int], gray: Image.Image) -> None:
    """JPEGs shrink by DCT scaling while decoding, other formats by box averaging: to the same size."""
    large = gray.resize(size)
    jpeg = decode_image(encode(large, "JPEG", quality=95), min_side=128)
    assert (jpeg.width, jpeg.height) == size
    assert 128 <= min(jpeg.pixels.shape) < 256
    for fmt in ("PNG", "TIFF"):
        decoded = decode_image(encode(large, fmt), min_side=128)
        assert decoded.pixels.shape == jpeg.pixels.shape, fmt
        assert np.abs(preprocess(decoded) - preprocess(jpeg)).max() < TOLERANCE


def test_reduce_pixels_matches_decoding(gray: Image.Image) -> None:
    data = encode(gray.resize((1944, 1708)), "PNG")
    reduced = decode_image(data, min_side=128).pixels
    np.testing.assert_allclose(reduce_pixels(decode_image(data).pixels, 128), reduced, atol=1 / 255)
    assert reduce_pixels(reduced, 128) is reduced


STORED_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
"""How a camera stores an upright picture for each EXIF orientation (the inverse of what a viewer applies)."""


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", sorted(STORED_TRANSPOSE))
def test_exif_orientation_is_applied(fmt: str, orientation: int, gray: Image.Image) -> None:
    upright = gray.crop((0, 0, 320, 272))  # whole JPEG blocks and reduction boxes, which flips keep in place
    stored = upright.transpose(STORED_TRANSPOSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(stored, fmt, exif=exif.tobytes(), quality=95), min_side=128)
    assert (decoded.width, decoded.height) == stored.size
    assert np.abs(preprocess(decoded) - preprocess(encode(upright, "PNG"))).max() < TOLERANCE


# DICOM: the same picture stored as a detector would, shown through its rescale, LUT and window.


@pytest.fixture(scope="module")
def values(gray: Image.Image) -> np.ndarray:
    """The picture as 12-bit detector values 0..4080."""
    return np.asarray(gray).astype(np.uint16) * 16


def test_dicom_monochrome2(values: np.ndarray, reference: np.ndarray) -> None:
    decoded = decode_image(dicom(values, bits_stored=12), min_side=128)
    assert (decoded.format, decoded.width, decoded.height) == ("DICOM", 320, 281)
    assert np.abs(preprocess(decoded) - reference).max() < TOLERANCE


def test_dicom_monochrome1_is_inverted(values: np.ndarray, reference: np.ndarray) -> None:
    data = dicom(4095 - values, "MONOCHROME1", bits_stored=12)
    assert np.abs(preprocess(data) - reference).max() < TOLERANCE


def test_dicom_rescale_and_window_reproduce_the_picture(gray: Image.Image, values: np.ndarray) -> None:
    """Signed stored values = (value - 2000) / 2 and a window exactly over 0..4080 show the original picture."""
    stored = ((values.astype(np.int16) - 2000) // 2).astype(np.int16)
    data = dicom(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=2000, WindowCenter=2040.5, WindowWidth=4081)
    np.testing.assert_allclose(decode_image(data).pixels, np.asarray(gray) / 255, atol=1e-4)


def test_dicom_narrow_window_clips(gray: Image.Image, values: np.ndarray) -> None:
    data = dicom(values, bits_stored=12, WindowCenter=2048.5, WindowWidth=2049)
    expected = np.clip((values.astype(np.float64) - 1024) / 2048, 0, 1)
    np.testing.assert_allclose(decode_image(data).pixels, expected, atol=1e-4)


def test_dicom_voi_lut_wins_over_the_window(gray: Image.Image, values: np.ndarray) -> None:
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: entries, first value mapped, bits
    lut.add_new(0x00283006, "US", list(range(4095 * 16, -1, -16)))  # LUT Data: an inverting ramp
    data = dicom(values, bits_stored=12, VOILUTSequence=[lut], WindowCenter=100, WindowWidth=10)
    picture = np.asarray(gray, np.float64)
    expected = (picture.max() - picture) / np.ptp(picture)
    np.testing.assert_allclose(decode_image(data).pixels, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("no preamble, no meta", {"preamble": False}),
        ("rle", {"syntax": uid.RLELossless}),
    ],
)
def test_dicom_encodings(name: str, options: dict, values: np.ndarray, reference: np.ndarray) -> None:
    assert np.abs(preprocess(dicom(values, bits_stored=12, **options)) - reference).max() < TOLERANCE


def test_dicom_multi_frame_gives_the_first_frame(values: np.ndarray, reference: np.ndarray) -> None:
    data = dicom(np.stack([values, 4095 - values, values // 2]), bits_stored=12)
    assert np.abs(preprocess(data) - reference).max() < TOLERANCE


def test_dicom_baseline_jpeg(gray: Image.Image, reference: np.ndarray) -> None:
    data = jpeg_dicom(encode(gray, "JPEG", quality=95), gray.height, gray.width)
    assert np.abs(preprocess(data) - reference).max() < TOLERANCE


def test_dicom_rgb(gray: Image.Image, reference: np.ndarray) -> None:
    assert np.abs(preprocess(dicom(np.asarray(as_rgb(gray)), "RGB")) - reference).max() < TOLERANCE


def test_bundled_dicom_fixture_matches_its_jpeg(reference: np.ndarray) -> None:
    decoded = decode_image((FIXTURES / "normal_1.dcm").read_bytes(), min_side=128)
    assert decoded.format == "DICOM"
    assert np.abs(preprocess(decoded) - preprocess((FIXTURES / "normal_1.jpeg").read_bytes())).max() < TOLERANCE


PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
PYDICOM_FILES = sorted(PYDICOM_TEST_FILES.glob("*.dcm"))


@pytest.mark.parametrize(
    "variant", ["implicit", "bigendian", "expb", "RLE", "jp2klossless", "padded"], ids=lambda v: f"MR_small_{v}"
)
def test_real_world_dicom_encodings_agree(variant: str) -> None:
    """One MR slice written by other software in several transfer syntaxes decodes identically."""
    expected = decode_image((PYDICOM_TEST_FILES / "MR_small.dcm").read_bytes()).pixels
    decoded = decode_image((PYDICOM_TEST_FILES / f"MR_small_{variant}.dcm").read_bytes()).pixels
    np.testing.assert_allclose(decoded, expected, atol=1e-6)


@pytest.mark.parametrize("path", PYDICOM_FILES, ids=lambda p: p.name)
def test_real_world_dicom_files_decode_or_are_refused_cleanly(path: Path) -> None:
    """pydicom's bundled files from many vendors and encoders, some deliberately broken."""
    try:
        decoded = decode_image(path.read_bytes(), min_side=64)
    except ImageError as error:
        assert error.status_code in (400, 415)
    else:
        assert decoded.pixels.ndim == 2 and np.isfinite(decoded.pixels).all()


# Colour and DICOM header fields: what the input check reads besides the gray levels.


def sector(rgb: tuple[int, int, int]) -> int:
    """The hue sector of a colour, by JPEG's RGB -> (Cb, Cr) conversion."""
    r, g, b = rgb
    cb, cr = -0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b
    return int((np.arctan2(cr, cb) % (2 * np.pi)) // (2 * np.pi / HUE_SECTORS))


def quarters(size: tuple[int, int] = (320, 280)) -> Image.Image:
    """A colour picture: a red, a blue and a green quarter, and a gray one."""
    image = Image.new("RGB", size, (128, 128, 128))
    width, height = size
    image.paste((200, 30, 30), (0, 0, width // 2, height // 2))
    image.paste((30, 30, 200), (width // 2, 0, width, height // 2))
    image.paste((30, 200, 30), (0, height // 2, width // 2, height))
    return image


@pytest.mark.parametrize("name", ENCODINGS)
def test_a_gray_picture_has_no_colour_in_any_encoding(name: str, gray: Image.Image) -> None:
    _, encoder = ENCODINGS[name]
    decoded = decode_image(encoder(gray), min_side=128)
    assert decoded.hues.shape == (HUE_SECTORS,) and decoded.colourfulness == 0.0
    assert decoded.dicom is None


COLOUR_ENCODINGS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg": lambda im: encode(im, "JPEG", quality=90),
    "jpeg stored as rgb (adobe)": lambda im: encode(im, "JPEG", quality=90, keep_rgb=True),
    "jpeg cmyk": lambda im: encode(im.convert("CMYK"), "JPEG", quality=90),
    "png": lambda im: encode(im, "PNG"),
    "png rgba": lambda im: encode(with_alpha(im), "PNG"),
    "png palette": lambda im: encode(im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    "png 16-bit rgb": lambda im: png(np.asarray(im).astype(np.uint16) * 257, 2),
    "gif": lambda im: encode(im, "GIF"),
    "bmp": lambda im: encode(im, "BMP"),
    "tiff": lambda im: encode(im, "TIFF"),
    "webp": lambda im: encode(im, "WEBP", quality=90),
    "dicom rgb": lambda im: dicom(np.asarray(im), "RGB"),
}


@pytest.mark.parametrize("name", COLOUR_ENCODINGS)
@pytest.mark.parametrize("min_side", [0, 64])
def test_hues_are_the_shares_of_clearly_coloured_pixels(name: str, min_side: int) -> None:
    decoded = decode_image(COLOUR_ENCODINGS[name](quarters()), min_side=min_side)
    expected = np.zeros(HUE_SECTORS)
    for colour in ((200, 30, 30), (30, 30, 200), (30, 200, 30)):
        expected[sector(colour)] += 0.25
    np.testing.assert_allclose(decoded.hues, expected, atol=0.03)
    assert decoded.colourfulness == pytest.approx(0.75, abs=0.03)


def test_large_colour_jpegs_are_decoded_to_the_same_gray_as_before(gray: Image.Image) -> None:
    """A colour JPEG is decoded as stored, luma and chroma: the luma is exactly the gray decode."""
    picture = quarters((2000, 1700))
    picture.paste(gray.resize((1000, 850)), (1000, 850))
    data = encode(picture, "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (128, 128))  # 1/8: 250 x 213
        expected = np.asarray(image, np.float32) / 255
    decoded = decode_image(data, min_side=128)
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert decoded.colourfulness == pytest.approx(0.75, abs=0.02)


def test_a_tint_or_a_small_coloured_mark_is_not_colour(gray: Image.Image) -> None:
    tinted = np.clip(np.asarray(as_rgb(gray), np.int16) + np.int16([8, 2, -6]), 0, 255).astype(np.uint8)
    assert decode_image(encode(Image.fromarray(tinted), "PNG")).colourfulness == 0.0
    marked = as_rgb(gray)
    marked.paste((255, 0, 0), (20, 20, 52, 29))  # a red arrow: 288 pixels, 0.3% of the image
    assert decode_image(encode(marked, "PNG")).colourfulness == pytest.approx(288 / (320 * 281), abs=1e-4)


def test_transparent_colour_counts_as_black() -> None:
    picture = with_alpha(quarters())
    picture.putalpha(0)
    assert decode_image(encode(picture, "PNG")).colourfulness == 0.0


def test_dicom_header_fields_are_read(values: np.ndarray) -> None:
    data = dicom(values, bits_stored=12, Modality="CT", ViewPosition="ll ", BodyPartExamined="Chest")
    assert decode_image(data).dicom == DicomTags(modality="CT", view_position="LL", body_part="CHEST")
    assert decode_image(dicom(values, bits_stored=12)).dicom == DicomTags()
    # Modality written as a sequence instead of a code string: it says nothing, and the image still decodes
    malformed = dicom(values, bits_stored=12, Modality="DX").replace(b"CS\x02\x00DX", b"SQ\x00\x00\x02\x00\x00\x00DX")
    assert decode_image(malformed).dicom == DicomTags()


# Hostile and broken uploads.


def test_error_statuses() -> None:
    assert (ImageError.status_code, EmptyImageError.status_code, CorruptImageError.status_code) == (400, 400, 400)
    assert (UnsupportedImageError.status_code, ImageTooLargeError.status_code) == (415, 413)


def test_empty_upload() -> None:
    refused(b"", EmptyImageError, 400)


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xray.jpeg", b"\xff\xd8\xff" + bytes(100))
    return buffer.getvalue()


NOT_IMAGES = {
    "text": b"Patient: 12345\nFindings: none\n",
    "html": b"<!DOCTYPE html><html><body><img src='xray.png'></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    "pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
    "zip": zip_archive(),
    "random": np.random.default_rng(0).bytes(5000),
    "one byte": b"\x00",
}


@pytest.mark.parametrize("name", NOT_IMAGES)
def test_not_an_image(name: str) -> None:
    error = refused(NOT_IMAGES[name], UnsupportedImageError, 415)
    assert "JPEG, PNG" in str(error)


@pytest.mark.parametrize("fmt", ["JPEG2000", "ICO", "PPM", "TGA", "PCX"])
def test_unsupported_image_formats(fmt: str, gray: Image.Image) -> None:
    refused(encode(gray.resize((64, 56)), fmt), UnsupportedImageError, 415)


def test_unsupported_pixel_format() -> None:
    assert "LAB" in str(refused(encode(Image.new("LAB", (8, 8)), "TIFF"), UnsupportedImageError, 415))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("kept", [0.1, 0.5, 0.95])
def test_truncated_images(fmt: str, kept: float, gray: Image.Image) -> None:
    data = encode(as_rgb(gray), fmt)
    assert fmt in str(refused(data[: int(len(data) * kept)], CorruptImageError, 400))


def test_corrupt_png_data(gray: Image.Image) -> None:
    data = bytearray(encode(gray, "PNG"))
    data[len(data) // 2] ^= 0xFF  # breaks the IDAT checksum
    refused(bytes(data), CorruptImageError, 400)


def jpeg_with_size(gray: Image.Image, width: int, height: int) -> bytes:
    data = encode(gray, "JPEG")
    frame = data.index(b"\xff\xc0") + 5  # SOF0: length, precision, then height and width
    return data[:frame] + struct.pack(">HH", height, width) + data[frame + 4 :]


def gif_with_size(gray: Image.Image, width: int, height: int) -> bytes:
    data = encode(gray, "GIF")
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def gif_frame_with_size(gray: Image.Image, width: int, height: int) -> bytes:
    """A GIF whose first frame reaches beyond its screen: Pillow allocates for it while opening."""
    data = encode(gray, "GIF")
    frame = data.index(b"\x2c", 13 + (3 << ((data[10] & 7) + 1))) + 5  # image separator, left, top
    return data[:frame] + struct.pack("<HH", width, height) + data[frame + 4 :]


def bmp_with_size(gray: Image.Image, width: int, height: int) -> bytes:
    data = encode(gray, "BMP")
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


BOMBS: dict[str, Callable[[Image.Image], bytes]] = {
    "png 100k x 100k": lambda _: png(np.zeros((1, 1), np.uint8), 0, size=(100_000, 100_000)),
    "png 8k x 8k": lambda _: png(np.zeros((1, 1), np.uint8), 0, size=(8_000, 8_000)),
    "jpeg 65k x 65k": lambda im: jpeg_with_size(im, 65_000, 65_000),
    "gif 65k x 65k": lambda im: gif_with_size(im, 65_535, 65_535),
    "gif frame 65k x 65k": lambda im: gif_frame_with_size(im, 65_535, 65_535),
    "bmp 100k x 100k": lambda im: bmp_with_size(im, 100_000, 100_000),
    "dicom 65k x 65k": lambda _: dicom(np.zeros((4, 4), np.uint8)).replace(
        b"\x28\x00\x10\x00US\x02\x00\x04\x00\x28\x00\x11\x00US\x02\x00\x04\x00",
        b"\x28\x00\x10\x00US\x02\x00\xff\xff\x28\x00\x11\x00US\x02\x00\xff\xff",
    ),
    "dicom 4 frames of 4k x 4k": lambda _: dicom(np.zeros((4, 4), np.uint8)).replace(
        b"\x28\x00\x10\x00US\x02\x00\x04\x00\x28\x00\x11\x00US\x02\x00\x04\x00",
        b"\x28\x00\x08\x00IS\x02\x004 \x28\x00\x10\x00US\x02\x00\xa0\x0f\x28\x00\x11\x00US\x02\x00\xa0\x0f",
    ),
}


@pytest.mark.parametrize("name", BOMBS)
def test_decompression_bombs_are_refused_from_the_header(name: str, gray: Image.Image) -> None:
    data = BOMBS[name](gray)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        error = refused(data, ImageTooLargeError, 413)
    assert time.perf_counter() - start < 0.5
    assert "limit of 50,000,000" in str(error)


def test_pixel_limit_is_the_callers(gray: Image.Image) -> None:
    refused(encode(gray, "PNG"), ImageTooLargeError, 413, max_pixels=320 * 281 - 1)
    assert isinstance(decode_image(encode(gray, "PNG"), max_pixels=320 * 281), DecodedImage)


def test_jpeg_with_too_many_scans_is_refused_quickly() -> None:
    data = encode(Image.new("L", (4000, 4000)), "JPEG", progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : data.rindex(b"\xff\xd9")]
    bomb = data[: data.rindex(b"\xff\xd9")] + last_scan * MAX_JPEG_SCANS + b"\xff\xd9"
    start = time.perf_counter()
    refused(bomb, ImageError, 400, min_side=128)
    assert time.perf_counter() - start < 0.5


def test_run_length_bmp_is_refused() -> None:
    """Pillow decodes RLE BMPs in Python, a second per megabyte: a cheap way to tie up the service."""
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    runs = bytes([255, 7]) * 40 + b"\x00\x01"  # runs of colour 7, then the end-of-bitmap code
    info = struct.pack("<IiiHHIIiiII", 40, 100, 100, 1, 8, 1, len(runs), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    bmp = b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + info + palette + runs
    refused(bmp, UnsupportedImageError, 415)


def test_dicom_without_pixel_data() -> None:
    ds = Dataset()
    ds.SOPClassUID = uid.BasicTextSRStorage
    ds.SOPInstanceUID = uid.generate_uid()
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert "no image" in str(refused(buffer.getvalue(), UnsupportedImageError, 415))


@pytest.mark.parametrize("syntax", [uid.JPEGLSLossless, uid.JPEGLosslessSV1, uid.HTJ2KLossless])
def test_dicom_compression_that_cannot_be_decoded(syntax: str, gray: Image.Image) -> None:
    error = refused(jpeg_dicom(encode(gray, "JPEG"), gray.height, gray.width, syntax), UnsupportedImageError, 415)
    assert syntax.name in str(error)


def test_dicom_jpeg_larger_than_stated(gray: Image.Image) -> None:
    refused(jpeg_dicom(encode(gray, "JPEG"), 64, 64), CorruptImageError, 400)


def test_dicom_deflated_is_refused_before_inflating(values: np.ndarray) -> None:
    refused(dicom(values, bits_stored=12, syntax=uid.DeflatedExplicitVRLittleEndian), UnsupportedImageError, 415)


def test_dicom_truncated(values: np.ndarray) -> None:
    data = dicom(values, bits_stored=12)
    refused(data[: len(data) - 1000], CorruptImageError, 400)


def test_dicom_meta_information_nested_sequence_is_refused_quickly() -> None:
    """pydicom formats the meta group length into a log message: for this one, in time exponential in its depth."""

    def element(tag: tuple[int, int], vr: bytes, value: bytes) -> bytes:
        if vr == b"SQ":
            return struct.pack("<HH", *tag) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
        return struct.pack("<HH", *tag) + vr + struct.pack("<H", len(value)) + value

    nested = element((0x0028, 0x0010), b"US", b"\x01\x02\x03")  # three bytes for a two-byte number
    for _ in range(30):
        nested = element((0x0002, 0x0000), b"SQ", b"\xfe\xff\x00\xe0" + struct.pack("<I", len(nested)) + nested)
    start = time.perf_counter()
    refused(bytes(128) + b"DICM" + nested, CorruptImageError, 400)
    assert time.perf_counter() - start < 0.5


def test_dicom_palette_colour_is_unsupported() -> None:
    data = (PYDICOM_TEST_FILES / "examples_palette.dcm").read_bytes()
    assert "PALETTE COLOR" in str(refused(data, UnsupportedImageError, 415))


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_dressed_as_dicom(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for prefix in (b"\x08\x00", b"\x02\x00\x10\x00UI", bytes(128) + b"DICM"):
        with pytest.raises(ImageError):
            decode_image(prefix + rng.bytes(int(rng.integers(0, 3000))))
