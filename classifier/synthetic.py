"""Synthetic images that are not chest radiographs: the negatives the input check learns to refuse.

Every generator draws one image from a random number generator. The families imitate, crudely, what a user
might upload instead of a chest X-ray (photos, scenes, text, other imaging modalities, patterns, noise), and
`RADIOGRAPH_TRANSFORMS` turn a real radiograph into one the classifiers cannot read (rotated, inverted,
scrambled). None uses images from elsewhere: the check must generalise from these to real images.
"""

from __future__ import annotations

import io
import string
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Generator = Callable[[np.random.Generator], Image.Image]


def _size(rng: np.random.Generator) -> tuple[int, int]:
    side = int(rng.integers(128, 384))
    aspect = float(rng.uniform(0.6, 1.6))
    return side, max(64, int(side * aspect))


def _gray(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8), mode="L")


def _rgb(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8), mode="RGB")


def _colour(rng: np.random.Generator, gray: bool) -> tuple[int, ...] | int:
    return int(rng.integers(0, 256)) if gray else tuple(int(v) for v in rng.integers(0, 256, 3))


def _spectral_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Noise with a 1/f^beta power spectrum, scaled to [0, 1]: clouds, textures, natural-image statistics."""
    h, w = shape
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / radius ** (beta / 2)
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.min()) / (np.ptp(field) + 1e-9)


def noise(rng: np.random.Generator) -> Image.Image:
    """White, blocky or salt-and-pepper noise, gray or colour."""
    w, h = _size(rng)
    kind = rng.integers(3)
    channels = 1 if rng.random() < 0.6 else 3
    if kind == 0:
        array = rng.random((h, w, channels))
    elif kind == 1:
        cell = int(rng.integers(4, 32))
        small = rng.random((h // cell + 1, w // cell + 1, channels))
        array = np.kron(small, np.ones((cell, cell, 1)))[:h, :w]
    else:
        array = np.full((h, w, channels), rng.random())
        mask = rng.random((h, w)) < rng.uniform(0.01, 0.3)
        array[mask] = rng.integers(0, 2, (int(mask.sum()), 1))
    return _gray(array[..., 0]) if channels == 1 else _rgb(array)


def textures(rng: np.random.Generator) -> Image.Image:
    """1/f noise: clouds, marble, terrain-like textures, optionally thresholded or coloured."""
    w, h = _size(rng)
    field = _spectral_noise(rng, (h, w), rng.uniform(1.0, 4.0))
    if rng.random() < 0.3:
        field = (field > rng.uniform(0.3, 0.7)).astype(float) * 0.8 + 0.1
    if rng.random() < 0.4:
        tint = rng.random(3)
        return _rgb(field[..., None] * tint + (1 - tint) * rng.random() * 0.3)
    return _gray(field)


def gradients(rng: np.random.Generator) -> Image.Image:
    """Linear or radial gradients, plain or with a little noise: blank slides, empty scans."""
    w, h = _size(rng)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        field = x * np.cos(angle) + y * np.sin(angle)
    else:
        field = np.hypot(x - rng.random(), y - rng.random())
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    field = field * rng.uniform(0.1, 1.0) + rng.uniform(0, 0.5) + rng.normal(0, rng.uniform(0, 0.05), field.shape)
    return _gray(field)


def patterns(rng: np.random.Generator) -> Image.Image:
    """Stripes, checkerboards, grids and dot lattices: test charts, fabrics, screens."""
    w, h = _size(rng)
    y, x = np.mgrid[0:h, 0:w].astype(float)
    period = rng.uniform(4, 48)
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    kind = rng.integers(4)
    if kind == 0:
        field = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    elif kind == 1:
        field = ((u // period + v // period) % 2).astype(float)
    elif kind == 2:
        field = ((u % period < period * 0.15) | (v % period < period * 0.15)).astype(float)
    else:
        field = (np.hypot(u % period - period / 2, v % period - period / 2) < period * 0.3).astype(float)
    if rng.random() < 0.5:
        field = 1 - field
    return _gray(field * rng.uniform(0.3, 1) + rng.uniform(0, 0.3))


def shapes(rng: np.random.Generator) -> Image.Image:
    """Random ellipses, rectangles, polygons and lines on a plain background: drawings, objects, icons."""
    w, h = _size(rng)
    gray = rng.random() < 0.5
    image = Image.new("L" if gray else "RGB", (w, h), _colour(rng, gray))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 25))):
        box = sorted(rng.integers(0, w, 2).tolist())
        rows = sorted(rng.integers(0, h, 2).tolist())
        xy = [box[0], rows[0], box[1], rows[1]]
        kind = rng.integers(4)
        fill = _colour(rng, gray)
        if kind == 0:
            draw.ellipse(xy, fill=fill)
        elif kind == 1:
            draw.rectangle(xy, fill=fill)
        elif kind == 2:
            points = [tuple(p) for p in np.column_stack([rng.integers(0, w, 5), rng.integers(0, h, 5)]).tolist()]
            draw.polygon(points, fill=fill)
        else:
            draw.line(xy, fill=fill, width=int(rng.integers(1, 12)))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 4))))
    return image


def dead_leaves(rng: np.random.Generator) -> Image.Image:
    """The dead-leaves model: overlapping discs with power-law sizes, a classic stand-in for natural photos."""
    w, h = _size(rng)
    gray = rng.random() < 0.4
    image = Image.new("L" if gray else "RGB", (w, h), _colour(rng, gray))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(100, 600))):
        radius = max(1.0, float(min(w, h) * 0.4 * rng.pareto(2.0) * 0.1))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=_colour(rng, gray))
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))
    return image


def scene(rng: np.random.Generator) -> Image.Image:
    """A crude photograph: sky and ground gradients, textured regions, a blob-shaped subject, vignetting."""
    w, h = _size(rng)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    horizon = rng.uniform(0.3, 0.8) * h / max(h, w)
    base = np.where(y < horizon, rng.uniform(0.4, 1.0) - y * rng.uniform(0, 0.5), rng.uniform(0.1, 0.6))
    base = base + 0.3 * (_spectral_noise(rng, (h, w), rng.uniform(1.5, 3.0)) - 0.5)
    blob = _spectral_noise(rng, (h, w), 3.5)
    centre = np.exp(-(((x - rng.uniform(0.3, 0.7)) ** 2 + (y - rng.uniform(0.3, 0.7)) ** 2) / rng.uniform(0.02, 0.1)))
    subject = (blob * 0.5 + centre) > rng.uniform(0.6, 0.9)
    base = np.where(subject, rng.uniform(0, 1) + 0.2 * (blob - 0.5), base)
    base *= 1 - rng.uniform(0, 0.6) * np.hypot(x - 0.5, y - 0.5) ** 2
    if rng.random() < 0.6:
        tint = rng.uniform(0.5, 1.0, 3)
        subject_tint = rng.uniform(0.2, 1.0, 3)
        return _rgb(np.where(subject[..., None], base[..., None] * subject_tint, base[..., None] * tint))
    return _gray(base)


def face(rng: np.random.Generator) -> Image.Image:
    """A crude portrait: a head and shoulders with eyes, nose and mouth, on a plain or textured background."""
    w, h = _size(rng)
    gray = rng.random() < 0.5
    image = Image.new("L" if gray else "RGB", (w, h), _colour(rng, gray))
    draw = ImageDraw.Draw(image)
    skin = _colour(rng, gray)
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.3, 0.5)
    rx, ry = w * rng.uniform(0.15, 0.3), h * rng.uniform(0.2, 0.35)
    draw.ellipse([cx - 2.5 * rx, cy + 0.8 * ry, cx + 2.5 * rx, cy + 4 * ry], fill=_colour(rng, gray))
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    draw.ellipse([cx - 1.05 * rx, cy - 1.1 * ry, cx + 1.05 * rx, cy - 0.3 * ry], fill=_colour(rng, gray))
    dark = 0 if gray else (20, 20, 20)
    for side in (-1, 1):
        ex = cx + side * rx * 0.4
        draw.ellipse([ex - rx * 0.12, cy - ry * 0.1, ex + rx * 0.12, cy + ry * 0.05], fill=dark)
    draw.line([cx, cy, cx - rx * 0.05, cy + ry * 0.3], fill=dark, width=2)
    draw.arc([cx - rx * 0.4, cy + ry * 0.3, cx + rx * 0.4, cy + ry * 0.6], 20, 160, fill=dark, width=3)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))


def text(rng: np.random.Generator) -> Image.Image:
    """A page or a sign: lines of random words in one or more columns, dark on light or the reverse."""
    w, h = _size(rng)
    light = rng.random() < 0.8
    image = Image.new("L", (w, h), int(rng.integers(200, 256)) if light else int(rng.integers(0, 60)))
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(6, 28))
    font = ImageFont.load_default(size=size)
    ink = int(rng.integers(0, 80)) if light else int(rng.integers(180, 256))
    columns = int(rng.integers(1, 3))
    letters = string.ascii_letters + string.digits + ".,;:()-"
    for column in range(columns):
        left = int(w * column / columns) + int(rng.integers(2, 12))
        top = int(rng.integers(0, size * 3))
        while top < h:
            words = ["".join(rng.choice(list(letters), int(rng.integers(1, 10)))) for _ in range(12)]
            draw.text((left, top), " ".join(words), fill=ink, font=font)
            top += int(size * rng.uniform(1.1, 1.8))
    return image.rotate(float(rng.normal(0, 2)), fillcolor=255 if light else 0)


def ct_slice(rng: np.random.Generator) -> Image.Image:
    """A cross-sectional slice (CT or MR): an elliptical body on black with organs, bone rings and texture."""
    side = int(rng.integers(128, 384))
    y, x = (np.mgrid[0:side, 0:side] / side) - 0.5
    rx, ry = rng.uniform(0.25, 0.48), rng.uniform(0.2, 0.45)
    body = (x / rx) ** 2 + (y / ry) ** 2 < 1
    field = np.where(body, rng.uniform(0.3, 0.6), 0.0)
    if rng.random() < 0.4:  # a head: a bright skull ring
        ring = ((x / rx) ** 2 + (y / ry) ** 2 < 1) & ((x / (rx * 0.9)) ** 2 + (y / (ry * 0.9)) ** 2 > 1)
        field = np.where(ring, rng.uniform(0.8, 1.0), field)
    for _ in range(int(rng.integers(3, 12))):
        ox, oy = rng.uniform(-rx, rx) * 0.7, rng.uniform(-ry, ry) * 0.7
        ax, ay = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15)
        organ = ((x - ox) / ax) ** 2 + ((y - oy) / ay) ** 2 < 1
        field = np.where(organ & body, rng.uniform(0, 1), field)
    texture = _spectral_noise(rng, (side, side), rng.uniform(1.5, 3.5)) - 0.5
    field = field + body * texture * rng.uniform(0.05, 0.3) + rng.normal(0, rng.uniform(0, 0.04), field.shape)
    if rng.random() < 0.3:  # the table under the patient
        field[int(side * rng.uniform(0.8, 0.95)) :, :] += 0.3 * (rng.random() < 0.5)
    return _gray(field)


def ultrasound(rng: np.random.Generator) -> Image.Image:
    """An ultrasound frame: a speckled fan-shaped sector on black, with a dark structure inside."""
    w, h = _size(rng)
    y, x = np.mgrid[0:h, 0:w].astype(float)
    apex_x, apex_y = w * rng.uniform(0.4, 0.6), -h * rng.uniform(0, 0.1)
    angle = np.arctan2(x - apex_x, y - apex_y)
    radius = np.hypot(x - apex_x, y - apex_y)
    half = rng.uniform(0.4, 0.8)
    sector = (np.abs(angle) < half) & (radius < h * rng.uniform(0.8, 1.1)) & (radius > h * 0.05)
    speckle = rng.rayleigh(0.3, (h, w)) * (0.6 + 0.4 * _spectral_noise(rng, (h, w), 2.5))
    cyst = np.hypot(x - w * rng.uniform(0.3, 0.7), y - h * rng.uniform(0.3, 0.7)) < h * rng.uniform(0.05, 0.2)
    field = np.where(sector, speckle * np.where(cyst, 0.2, 1.0), 0.0)
    field = np.asarray(_gray(field).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2)))), float) / 255
    return _gray(field * rng.uniform(0.8, 1.5))


def nuclear(rng: np.random.Generator) -> Image.Image:
    """A nuclear-medicine image: a faint body outline with hot spots, low resolution, on black or white."""
    w, h = _size(rng)
    small = (max(16, w // int(rng.integers(2, 8))), max(16, h // int(rng.integers(2, 8))))
    y, x = np.mgrid[0 : small[1], 0 : small[0]] / np.array(small[::-1]).reshape(2, 1, 1)
    body = np.exp(-(((x - 0.5) / rng.uniform(0.1, 0.3)) ** 2 + ((y - 0.5) / rng.uniform(0.2, 0.45)) ** 2))
    field = body * rng.uniform(0.1, 0.4)
    for _ in range(int(rng.integers(1, 15))):
        cx, cy, s = rng.random(), rng.random(), rng.uniform(0.01, 0.1)
        field += rng.uniform(0.3, 1) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / s**2)
    field = rng.poisson(field / field.max() * rng.uniform(5, 60)) / 60.0
    image = _gray(field if rng.random() < 0.6 else 1 - field)
    return image.resize((w, h), Image.Resampling.BILINEAR)


def microscopy(rng: np.random.Generator) -> Image.Image:
    """Cells under a microscope: many textured round blobs on a bright or dark field, often stained colour."""
    w, h = _size(rng)
    dark_field = rng.random() < 0.3
    gray = rng.random() < 0.4
    background = (20 if dark_field else 230) if gray else tuple(int(v) for v in rng.integers(150, 256, 3))
    image = Image.new("L" if gray else "RGB", (w, h), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(10, 200))):
        r = float(rng.uniform(3, 25))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        fill = _colour(rng, gray)
        draw.ellipse([cx - r, cy - r * rng.uniform(0.6, 1.4), cx + r, cy + r], fill=fill, outline=_colour(rng, gray))
        draw.ellipse([cx - r / 3, cy - r / 3, cx + r / 3, cy + r / 3], fill=_colour(rng, gray))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))


def astronomy(rng: np.random.Generator) -> Image.Image:
    """The night sky: point stars of many brightnesses and a diffuse nebula or galaxy on black."""
    w, h = _size(rng)
    y, x = np.mgrid[0:h, 0:w].astype(float)
    field = np.zeros((h, w))
    if rng.random() < 0.7:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        field += rng.uniform(0.2, 0.8) * np.exp(
            -(((x - cx) / (w * rng.uniform(0.05, 0.3))) ** 2 + ((y - cy) / (h * rng.uniform(0.03, 0.2))) ** 2)
        )
        field *= 0.6 + 0.4 * _spectral_noise(rng, (h, w), 2.5)
    count = int(rng.integers(20, 800))
    stars_y, stars_x = rng.integers(0, h, count), rng.integers(0, w, count)
    field[stars_y, stars_x] += rng.pareto(1.5, count) * 0.3
    image = _gray(field).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    if rng.random() < 0.4:
        array = np.asarray(image, float)[..., None] / 255 * rng.uniform(0.5, 1.0, 3)
        return _rgb(array * 1.5)
    return image


FAMILIES: dict[str, Generator] = {
    "noise": noise,
    "textures": textures,
    "gradients": gradients,
    "patterns": patterns,
    "shapes": shapes,
    "dead_leaves": dead_leaves,
    "scene": scene,
    "face": face,
    "text": text,
    "ct_slice": ct_slice,
    "ultrasound": ultrasound,
    "nuclear": nuclear,
    "microscopy": microscopy,
    "astronomy": astronomy,
}
"""Generators of images that are not radiographs, by family."""


def rotated(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A radiograph turned a quarter or half turn: the classifiers only know upright images."""
    return np.rot90(pixels, int(rng.integers(1, 4))).copy()


def inverted(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A radiograph with its gray levels reversed (bones dark), as a wrongly exported negative."""
    return 1.0 - pixels


def scrambled(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A radiograph cut into tiles and shuffled: radiograph texture without a chest's layout."""
    n = int(rng.integers(2, 6))
    h, w = (pixels.shape[0] // n) * n, (pixels.shape[1] // n) * n
    tiles = [pixels[i * h // n : (i + 1) * h // n, j * w // n : (j + 1) * w // n] for i in range(n) for j in range(n)]
    order = rng.permutation(len(tiles))
    rows = [np.hstack([tiles[k] for k in order[r * n : (r + 1) * n]]) for r in range(n)]
    return np.vstack(rows)


RADIOGRAPH_TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "rotated": rotated,
    "inverted": inverted,
    "scrambled": scrambled,
}
"""Transforms that make a real radiograph (2-D pixels in [0, 1]) one the models must not classify."""


CLUSTERS: dict[str, tuple[str, ...]] = {
    "noise and textures": ("noise", "textures", "gradients", "patterns"),
    "scenes": ("shapes", "dead_leaves", "scene", "face", "text"),
    "other modalities": ("ct_slice", "ultrasound", "nuclear", "microscopy", "astronomy"),
    "transformed radiographs": tuple(RADIOGRAPH_TRANSFORMS),
}
"""Families grouped by kind: the check's generalisation is measured by training without a whole cluster."""


def encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    """`image` as a user would send it: a JPEG of random quality or a PNG."""
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
            buffer, "JPEG", quality=int(rng.integers(60, 96))
        )
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()
