"""Shared fixtures: a small generated dataset in the Kaggle layout and a tiny model trained on it.

Nothing here reads ../shared or the network.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def synthetic_xray(rng: np.random.Generator, sick: bool, size: int = 96) -> Image.Image:
    """A crude radiograph: dark lungs in a bright body; 'sick' ones get bright patches in the lungs."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = 0.75 - 0.5 * (((x - 0.3) / 0.16) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)
    body -= 0.5 * (((x - 0.7) / 0.16) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)
    if sick:
        for _ in range(3):
            cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.65)
            body += 0.45 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / 0.004))
    body += rng.normal(0, 0.05, body.shape)
    return Image.fromarray((np.clip(body, 0, 1) * 255).astype(np.uint8), mode="L")


def write_kaggle_folder(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """`root/train/{NORMAL,PNEUMONIA}` and `root/test/...` with patient-style names, as in the Kaggle zip."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", per_class // 3)):
        for folder, sick in (("NORMAL", False), ("PNEUMONIA", True)):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                name = f"person{i // 2}_bacteria_{i}.jpeg" if sick else f"IM-{i // 2:04d}-{i:04d}.jpeg"
                synthetic_xray(rng, sick).save(root / split / folder / name, quality=92)
    return root


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def kaggle_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kaggle_folder(tmp_path_factory.mktemp("kaggle") / "chest_xray")


@pytest.fixture(scope="session")
def trained_weights(kaggle_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a pneumonia model trained for one epoch on the generated folder."""
    from classifier.train import Train

    weights = tmp_path_factory.mktemp("weights")
    Train("pneumonia", data_dir=kaggle_folder, epochs=1, batch_size=16, weights_dir=weights).run()
    return weights
