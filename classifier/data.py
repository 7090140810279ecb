"""Labelled examples from a Kaggle-layout folder, their images, patient-grouped splits and `tf.data` pipelines."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn.model_selection import StratifiedGroupKFold

from classifier.datasets import DatasetSpec
from classifier.errors import UserError
from classifier.imaging import ImageError, decode_image
from classifier.preprocessing import preprocess

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm"}


class UnreadableImageError(UserError):
    """A dataset file that cannot be decoded."""


class LayoutError(UserError):
    """A folder that is not in the Kaggle `<split>/<CLASS>/<image>` layout."""


@dataclass(frozen=True)
class Example:
    path: Path
    label: int
    group: str


@dataclass(frozen=True, eq=False)
class DataSplit:
    """A dataset's labelled training images, preprocessed, and their patient-grouped split."""

    root: Path
    """The dataset's folder; ``<root>/train/`` holds the examples."""
    examples: tuple[Example, ...]
    images: np.ndarray
    """The examples preprocessed, in order: float32 (n, size, size, 1)."""
    train: np.ndarray
    """Rows (of `examples` and `images`) of the training part."""
    validation: np.ndarray
    """Rows of the validation part: no group (patient) in both parts."""

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.examples], dtype=np.int32)

    @property
    def groups(self) -> int:
        """Patients, or near-duplicate groups of a dataset without patient ids."""
        return len({e.group for e in self.examples})

    @property
    def file_list_sha256(self) -> str:
        return file_list_hash(self.examples, self.root / "train")


def list_examples(split_dir: Path, spec: DatasetSpec) -> list[Example]:
    """Every labelled image under `split_dir`, sorted by path."""
    if not split_dir.is_dir():
        raise LayoutError(f"{split_dir} is not a folder")
    examples = []
    for path in sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = path.relative_to(split_dir).as_posix()
        label = next((c for pattern, c in spec.labels.items() if fnmatch.fnmatch(relative, pattern)), None)
        if label is not None:
            examples.append(Example(path, spec.classes.index(label), _group_of(path, spec)))
    missing = set(spec.classes) - {spec.classes[e.label] for e in examples}
    if missing:
        folders = ", ".join(sorted({p.split("/")[0] for p in spec.labels}))
        raise LayoutError(
            f"{split_dir} has no images for class(es) {', '.join(sorted(missing))}; "
            f"expected sub-folders {folders} holding the images"
        )
    return examples


def _group_of(path: Path, spec: DatasetSpec) -> str:
    if spec.group_pattern and (match := re.search(spec.group_pattern, path.name)):
        return f"{path.parent.name}/{match.group(1)}"
    return str(path)


def file_list_hash(examples: Sequence[Example], root: Path) -> str:
    """SHA-256 over the sorted relative paths and labels: identifies a training set."""
    lines = sorted(f"{e.path.relative_to(root).as_posix()}\t{e.label}" for e in examples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def group_near_duplicates(examples: Sequence[Example], max_distance: int = 6) -> list[Example]:
    """Examples regrouped so images whose perceptual hashes are close share a group."""
    import imagehash  # only needed for datasets without patient ids
    from PIL import Image

    hashes = []
    for example in examples:
        pixels = decode_image(example.path.read_bytes(), min_side=64).pixels
        hashes.append(imagehash.phash(Image.fromarray((pixels * 255).astype(np.uint8))))
    parent = list(range(len(examples)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(examples)):
        for j in range(i):
            if hashes[i] - hashes[j] <= max_distance:
                parent[root(i)] = root(j)
    return [Example(e.path, e.label, f"dup{root(i)}") for i, e in enumerate(examples)]


def split_by_group(
    examples: Sequence[Example], validation_fraction: float, seed: int, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split with no group (patient) on both sides: the rows of `examples` in each part."""
    n_splits = max(2, round(1 / validation_fraction))
    labels = [e.label for e in examples]
    groups = [e.group for e in examples]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(examples)), labels, groups))[fold]


def load_images(paths: Sequence[Path], image_size: int) -> np.ndarray:
    """The images at `paths` decoded and preprocessed, in order: float32 (n, size, size, 1).

    A few threads share the work (the decoders release the GIL). A file that cannot be read raises
    `UnreadableImageError` naming it.
    """
    images = np.empty((len(paths), image_size, image_size, 1), np.float32)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        try:
            for row, image in enumerate(pool.map(_load, paths, [image_size] * len(paths))):
                images[row] = image
        except UnreadableImageError:
            pool.shutdown(cancel_futures=True)
            raise
    return images


def _load(path: Path, image_size: int) -> np.ndarray:
    try:
        return preprocess(path.read_bytes(), image_size)
    except (OSError, ImageError) as exc:
        raise UnreadableImageError(f"{path}: {exc}; remove or replace that file") from exc


def augmenter(seed: int) -> keras.Sequential:
    """Random geometry, exposure and sharpness changes a radiograph from another site can show."""
    return keras.Sequential(
        [
            layers.RandomRotation(0.04, fill_mode="constant", seed=seed),
            layers.RandomZoom((-0.2, 0.2), fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 2),
            layers.RandomContrast(0.3, seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0.0, 1.0), seed=seed + 4),
            layers.RandomGaussianBlur(
                factor=0.5, kernel_size=3, sigma=(0.1, 1.0), value_range=(0.0, 1.0), seed=seed + 5
            ),
        ],
        name="augmentation",
    )


def random_gamma(images: tf.Tensor, seed: int, spread: float = 0.4) -> tf.Tensor:
    """Per-image gamma in [e^-spread, e^spread]: the exposure curve varies between machines."""
    gamma = tf.exp(tf.random.uniform([tf.shape(images)[0], 1, 1, 1], -spread, spread, seed=seed))
    return tf.pow(tf.clip_by_value(images, 0.0, 1.0), gamma)


def make_dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, training: bool = False, seed: int = 0
) -> tf.data.Dataset:
    """Batches of (image, label) from preprocessed images (see `load_images`).

    The training split is reshuffled every epoch and augmented; other splits
    keep their order, so predictions line up with `images`.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        augment = augmenter(seed)
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        dataset = dataset.map(
            lambda x, y: (random_gamma(tf.clip_by_value(augment(x, training=True), 0.0, 1.0), seed), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
