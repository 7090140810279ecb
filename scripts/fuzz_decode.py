"""Fuzz `decode_image`: every input must decode or raise an `ImageError`; anything else, a crash or a hang is a bug.

The fuzzer is not a project requirement; install it into the virtualenv with

    pip install atheris==3.0.0

and run it from the repository root, here for five minutes, with crashing inputs written to /tmp:

    python scripts/fuzz_decode.py /tmp/fuzz-corpus -max_total_time=300 -timeout=10 -artifact_prefix=/tmp/fuzz-

An empty or missing corpus folder is first filled with small seeds in every supported format and mode
(built from fixtures/normal_1.jpeg). Replay a finding with `python scripts/fuzz_decode.py /tmp/fuzz-crash-...`.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: import the project's packages

with atheris.instrument_imports(include=["classifier", "PIL", "pydicom"]):
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom import uid
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate

    from classifier.imaging import ImageError, decode_image

FIXTURE = ROOT / "fixtures" / "normal_1.jpeg"


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(ImageError):
        decode_image(data, min_side=16)


def pillow_seeds(gray: Image.Image) -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 16)
    rgba = gray.convert("RGBA")
    rgba.putalpha(gray.rotate(90))
    images = {
        "gray.jpeg": (gray, {"exif": exif.tobytes()}),
        "rgb-progressive.jpeg": (gray.convert("RGB"), {"progressive": True}),
        "cmyk.jpeg": (gray.convert("CMYK"), {}),
        "gray.png": (gray, {}),
        "16bit.png": (sixteen, {}),
        "rgba.png": (rgba, {}),
        "palette.png": (gray.convert("P"), {"transparency": 0}),
        "gray.bmp": (gray, {}),
        "palette.bmp": (gray.convert("P"), {}),
        "lzw.tiff": (gray.convert("RGB"), {"compression": "tiff_lzw"}),
        "16bit.tiff": (sixteen, {}),
        "float.tiff": (Image.fromarray(np.asarray(gray, np.float32) / 255), {}),
        "lossy.webp": (gray.convert("RGB"), {}),
        "lossless.webp": (rgba, {"lossless": True}),
        "animated.gif": (gray, {"save_all": True, "append_images": [gray.rotate(90)]}),
    }
    return {name: save_pillow(image, name.rsplit(".", 1)[1], **options) for name, (image, options) in images.items()}


def save_pillow(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def dicom_seeds(gray: Image.Image) -> dict[str, bytes]:
    def dataset(pixels: np.ndarray, photometric: str, bits: int) -> Dataset:
        ds = Dataset()
        ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
        ds.SOPInstanceUID = uid.generate_uid()
        ds.set_pixel_data(pixels, photometric, bits)
        return ds

    def save(ds: Dataset, **options: bool) -> bytes:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, **options)
        return buffer.getvalue()

    values = 4095 - np.asarray(gray).astype(np.uint16) * 16
    window = dataset(values, "MONOCHROME1", 12)
    window.RescaleSlope, window.RescaleIntercept, window.WindowCenter, window.WindowWidth = 2, -100, 4000, 6000
    rle = dataset(values, "MONOCHROME2", 12)
    rle.compress(uid.RLELossless)
    jpeg = dataset(np.asarray(gray), "MONOCHROME2", 8)
    jpeg.PixelData = encapsulate([save_pillow(gray, "JPEG")])
    jpeg.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
    bare = dataset(values, "MONOCHROME2", 12)
    del bare.file_meta
    return {
        "window.dcm": save(window, enforce_file_format=True),
        "rle.dcm": save(rle, enforce_file_format=True),
        "jpeg.dcm": save(jpeg, enforce_file_format=True),
        "bare.dcm": save(bare, implicit_vr=True),
    }


def write_seeds(folder: Path) -> None:
    with Image.open(FIXTURE) as image:
        gray = image.convert("L").resize((40, 35))
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in {**pillow_seeds(gray), **dicom_seeds(gray)}.items():
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    folders = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-") and not Path(arg).is_file()]
    for folder in folders:
        if not folder.exists() or not any(folder.iterdir()):
            write_seeds(folder)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
