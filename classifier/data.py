"""Labelled examples from a Kaggle-layout folder, their images, patient-grouped splits and `tf.data` pipelines."""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn.model_selection import StratifiedGroupKFold

from classifier.datasets import ADULT_AGE, AgeGroup, DatasetSpec, Source
from classifier.download import locate_dataset
from classifier.errors import UserError
from classifier.imaging import ImageError
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
    """The patient (or near-duplicate group); empty where the source names none."""
    source: str
    """The source it is reported under (`Source.name`, or one of its `origins`)."""
    age_group: AgeGroup = "unknown"


@dataclass(frozen=True, eq=False)
class DataSplit:
    """A dataset's labelled training images, preprocessed, and their patient-grouped split."""

    root: Path
    """The data root: each source's images are in its folder there."""
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
        """Patients, or near-duplicate groups of images without patient ids."""
        return len({e.group for e in self.examples})

    def counts(self, rows: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, int]]:
        """How many of `rows` each source holds, by class."""
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            example = self.examples[row]
            by_class = counts.setdefault(example.source, {})
            by_class[classes[example.label]] = by_class.get(classes[example.label], 0) + 1
        return counts

    @property
    def file_list_sha256(self) -> str:
        return file_list_hash(self.examples, self.root)


def list_dataset(spec: DatasetSpec, data_dir: Path, force_download: bool = False) -> list[Example]:
    """Every labelled image of `spec`'s sources, each in its folder of `data_dir`; a Kaggle source whose folder
    is missing (or with `force_download`) is downloaded there first."""
    examples = []
    for source in spec.sources:
        folder = data_dir / source.folder
        if source.kaggle_slug:
            examples += list_examples(locate_dataset(source, folder, force_download) / "train", source, spec.classes)
        elif folder.is_dir():
            examples += list_metadata(folder, source, spec.classes)
        else:
            raise LayoutError(
                f"{folder} not found: the {source.name} source is a local folder of images with a {METADATA_FILE}; "
                "put it there, or pass --data-dir with the folder that holds it"
            )
    return examples


def list_examples(split_dir: Path, source: Source, classes: Sequence[str]) -> list[Example]:
    """Every labelled image under `split_dir`, a folder of `source`'s Kaggle layout, sorted by path."""
    if not split_dir.is_dir():
        raise LayoutError(f"{split_dir} is not a folder")
    examples = []
    for path in sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = path.relative_to(split_dir).as_posix()
        label = next((c for pattern, c in source.labels.items() if fnmatch.fnmatch(relative, pattern)), None)
        if label is not None:
            age = next((a for pattern, a in source.age_groups.items() if fnmatch.fnmatch(relative, pattern)), None)
            group = re.search(source.group_pattern, path.name) if source.group_pattern else None
            examples.append(
                Example(
                    path,
                    classes.index(label),
                    f"{source.name}/{path.parent.name}/{group.group(1)}" if group else "",
                    source.name,
                    age or source.age_group,
                )
            )
    _check_classes(examples, source, classes, split_dir)
    return examples


METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = ("file", "label", "patient")
"""Columns a local source's metadata must have; ``age`` and ``source`` are optional."""


def list_metadata(folder: Path, source: Source, classes: Sequence[str]) -> list[Example]:
    """Every image of a local `source` whose ``metadata.csv`` label maps to a class, in the file's order."""
    table = folder / METADATA_FILE
    if not table.is_file():
        raise LayoutError(
            f"{table} not found: the {source.name} source is a folder of images with a {METADATA_FILE} "
            f"(columns {', '.join(METADATA_COLUMNS)}, age, source); put it in {folder}"
        )
    with table.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    missing = [c for c in METADATA_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise LayoutError(f"{table} has no rows or lacks the column(s) {', '.join(missing) or 'file'}")
    examples = [
        Example(
            folder / row["file"],
            classes.index(source.labels[row["label"]]),
            f"{source.name}/{row['patient']}",
            origin(row.get("source", ""), source),
            age_group(row.get("age"), source.age_group),
        )
        for row in rows
        if row["label"] in source.labels
    ]
    _check_classes(examples, source, classes, table)
    return examples


def origin(named: str, source: Source) -> str:
    """The name a local source's image is reported under, from its metadata's ``source``."""
    return next((name for prefix, name in source.origins.items() if named.startswith(prefix)), source.name)


def age_group(age: str | None, default: AgeGroup) -> AgeGroup:
    """The age group of an age in years as a metadata file writes it; `default` when it gives none."""
    try:
        years = float(age or "nan")
    except ValueError:
        return default
    return default if math.isnan(years) else "adult" if years >= ADULT_AGE else "child"


def _check_classes(examples: list[Example], source: Source, classes: Sequence[str], where: Path) -> None:
    """Refuse a source that holds no image of a class its labels name: its layout is not what `source` says."""
    missing = {c for c in source.labels.values()} - {classes[e.label] for e in examples}
    if missing:
        named = ", ".join(sorted({p.split("/")[0] for p in source.labels}))
        raise LayoutError(
            f"{where} has no images for class(es) {', '.join(sorted(missing))}; expected {named} "
            f"({'sub-folders holding the images' if source.kaggle_slug else 'labels in its metadata'})"
        )


def file_list_hash(examples: Sequence[Example], root: Path) -> str:
    """SHA-256 over the sorted relative paths and labels: identifies a training set."""
    lines = sorted(f"{e.path.relative_to(root).as_posix()}\t{e.label}" for e in examples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def group_near_duplicates(examples: Sequence[Example], images: np.ndarray, max_distance: int = 6) -> list[Example]:
    """Examples whose source names no patient, grouped with every image whose perceptual hash is close.

    Near-duplicates (one radiograph under two names, or in two datasets) then never straddle the training and
    validation parts. Images of sources with patient ids keep their patient as the group.
    """
    import imagehash  # only needed for sources without patient ids
    from PIL import Image

    unnamed = [i for i, e in enumerate(examples) if not e.group]
    if not unnamed:
        return list(examples)
    bits = np.array(
        [imagehash.phash(Image.fromarray((image[..., 0] * 255).astype(np.uint8))).hash.ravel() for image in images]
    )
    parent = {e.group or f"image{i}": e.group or f"image{i}" for i, e in enumerate(examples)}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    groups = [e.group or f"image{i}" for i, e in enumerate(examples)]
    for i in unnamed:
        for j in np.flatnonzero((bits != bits[i]).sum(axis=1) <= max_distance):
            parent[root(groups[i])] = root(groups[j])
    return [replace(e, group=root(group)) for e, group in zip(examples, groups, strict=True)]


def split_by_group(
    examples: Sequence[Example], validation_fraction: float, seed: int, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split with no group (patient) on both sides, each (class, source) pair in both in proportion: the rows
    of `examples` in each part."""
    n_splits = max(2, round(1 / validation_fraction))
    strata = [f"{e.label}/{e.source}" for e in examples]
    groups = [e.group for e in examples]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(examples)), strata, groups))[fold]


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


def sampling_weights(
    examples: Sequence[Example], classes: int, balance: str = "class", max_oversampling: float = 10.0
) -> np.ndarray:
    """How often training draws each example, summing to 1.

    Each class gets the same share. With ``balance="source"`` a class's share is split equally between the
    sources holding it, so that a source's mix of classes cannot stand in for the class; an image is then drawn
    at most `max_oversampling` times as often as under plain class balance (a source of five images would
    otherwise be seen hundreds of times an epoch).
    """
    labels = np.array([e.label for e in examples])
    per_class = np.bincount(labels, minlength=classes)
    plain = 1 / (classes * per_class[labels])
    if balance == "class":
        return plain / plain.sum()
    cells = [f"{e.label}/{e.source}" for e in examples]
    names, cell, counts = np.unique(cells, return_inverse=True, return_counts=True)
    sources_of_class = np.bincount([int(name.split("/")[0]) for name in names], minlength=classes)
    weights = np.minimum(1 / (classes * sources_of_class[labels] * counts[cell]), max_oversampling * plain)
    for label in range(classes):  # the cap took share from the small sources: give each class its share back
        weights[labels == label] /= classes * weights[labels == label].sum()
    return weights / weights.sum()


def scanner_artefacts(images: tf.Tensor, seed: int) -> tf.Tensor:
    """What other machines and sites add to a radiograph: sensor noise, collimation borders (black or white, on
    any side) and burnt-in markers (a small bright block near the top), each at random, on a batch in [0, 1]."""
    shape = tf.shape(images)
    n, side = shape[0], tf.cast(shape[1], tf.float32)

    def draw(low: float = 0.0, high: float = 1.0, offset: int = 0) -> tf.Tensor:
        return tf.random.uniform([n, 1, 1, 1], low, high, seed=seed + offset)

    images = images + tf.random.normal(shape, seed=seed) * draw(0.0, 0.06, 1)
    rows = tf.reshape(tf.range(side), [1, -1, 1, 1]) / side
    columns = tf.reshape(tf.range(side), [1, 1, -1, 1]) / side

    def border(offset: int) -> tf.Tensor:  # a quarter of the images get a border on each side, up to 1/8 wide
        return tf.where(draw(offset=offset) < 0.25, draw(0.0, 0.125, offset + 1), tf.zeros([n, 1, 1, 1]))

    framed = (rows < border(2)) | (rows > 1 - border(4)) | (columns < border(6)) | (columns > 1 - border(8))
    images = tf.where(framed, tf.where(draw(offset=10) < 0.7, 0.0, 1.0) * tf.ones_like(images), images)
    top, left = draw(0.0, 0.3, 11), draw(0.0, 0.9, 12)
    marked = (draw(offset=13) < 0.3) & (rows >= top) & (rows < top + draw(0.03, 0.08, 14))
    marked &= (columns >= left) & (columns < left + draw(0.03, 0.2, 15))
    return tf.clip_by_value(tf.where(marked, draw(0.8, 1.0, 16) * tf.ones_like(images), images), 0.0, 1.0)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int = 0,
    *,
    weights: np.ndarray | None = None,
    epoch_size: int | None = None,
    epochs: int = 1,
) -> tf.data.Dataset:
    """Batches of (image, label) from preprocessed images (see `load_images`).

    Without `weights`, the images in order (predictions line up with `images`). With them, a training
    stream of `epochs` epochs: each draws `epoch_size` images afresh (default: as many as there are), each
    with its weight's probability, and augments them (fit with ``steps_per_epoch``).
    """
    if weights is None:
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    steps = -(-(epoch_size or len(images)) // batch_size)  # whole batches: the last one of an epoch is full too
    draws = np.random.default_rng(seed).choice(len(images), size=epochs * steps * batch_size, p=weights)
    rows = tf.data.Dataset.from_tensor_slices(draws)
    images, labels = tf.constant(images), tf.constant(labels)
    augment = augmenter(seed)

    def augmented(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = random_gamma(tf.clip_by_value(augment(tf.gather(images, batch), training=True), 0.0, 1.0), seed)
        return scanner_artefacts(x, seed), tf.gather(labels, batch)

    return rows.batch(batch_size).map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
