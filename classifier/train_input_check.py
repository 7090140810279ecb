"""Train the input check (`classifier.input_check`): ``python -m classifier train-input-check --data-dir DATA``.

Positives: the training radiographs of every dataset's sources (each file once), split by patient into a
training part (the network and the Gaussian of its features learn from it), a calibration part (the reference
of the conformal score) and a validation part (the card's figures). Negatives: images of `classifier.synthetic`'s
families, encoded and decoded as an upload is, and training radiographs turned, inverted or scrambled (the
models cannot read those). The card's synthetic figures use images of another seed; ``--generalisation`` also
retrains the check without each cluster of families in turn and measures how much of the unseen cluster it
refuses.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from classifier import synthetic
from classifier.data import (
    Example,
    UnreadableImageError,
    augmenter,
    group_near_duplicates,
    list_dataset,
    random_gamma,
    scanner_artefacts,
    split_by_group,
)
from classifier.datasets import DATASETS
from classifier.density import FeatureDensity
from classifier.export import export_litert
from classifier.imaging import DecodedImage, ImageError, decode_image
from classifier.inference import Network
from classifier.input_check import (
    CHECK_NAME,
    CheckCard,
    CheckValidation,
    InputCheck,
    InputChecker,
    check_files,
)
from classifier.paths import WEIGHTS_DIR
from classifier.preprocessing import IMAGE_SIZE, decode_side, preprocess

log = logging.getLogger(__name__)

REFUSED_SHARE = 0.005
"""The threshold on the conformal score: about this share of radiographs like the calibration ones is refused."""
MIN_COLOUR_LIMIT = 0.02
"""The colour rule refuses an image with more than this share of clearly coloured pixels away from its dominant
hue (`DecodedImage.mixed_colour`), or twice the 99.9th percentile of the training radiographs' share, whichever
is larger."""


@dataclass(frozen=True, eq=False)
class Radiographs:
    """Every source's training radiographs, preprocessed, and their patient-grouped split in three parts."""

    examples: tuple[Example, ...]
    images: np.ndarray
    mixed_colour: np.ndarray
    """Each image's `DecodedImage.mixed_colour`."""
    train: np.ndarray
    calibration: np.ndarray
    validation: np.ndarray

    def counts(self, rows: np.ndarray) -> dict[str, int]:
        return dict(sorted(Counter(self.examples[i].source for i in rows).items()))


@dataclass(frozen=True, eq=False)
class Negatives:
    """Images that are not chest radiographs, by family: decoded (for the hard rules) and preprocessed."""

    decoded: dict[str, list[DecodedImage]]
    images: dict[str, np.ndarray]

    def counts(self) -> dict[str, int]:
        return {family: len(images) for family, images in self.images.items()}

    def without(self, families: Sequence[str]) -> Negatives:
        keep = [f for f in self.images if f not in families]
        return Negatives({f: self.decoded[f] for f in keep}, {f: self.images[f] for f in keep})


@dataclass(frozen=True, eq=False)
class FittedCheck:
    """A trained check: its Keras network (outputs ``features`` and ``radiograph``) and the checker using it."""

    model: keras.Model
    checker: InputChecker


def load_radiographs(data_dir: Path, seed: int, size: int = IMAGE_SIZE) -> Radiographs:
    """The radiographs of every dataset's sources, each file once, split 60/20/20 by patient (or near-duplicate
    group) into training, calibration and validation parts."""
    sources = {}  # each source folder once, listed with the first dataset that uses it
    for spec in DATASETS.values():
        for source in spec.sources:
            sources.setdefault(source.folder, replace(spec, sources=(source,)))
    by_path: dict[Path, Example] = {}
    for spec in sources.values():
        for example in list_dataset(spec, data_dir):
            by_path.setdefault(example.path.resolve(), example)
    examples = list(by_path.values())
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        loaded = list(pool.map(_load_radiograph, [e.path for e in examples], [size] * len(examples)))
    images = np.stack([image for image, _ in loaded])
    mixed_colour = np.array([colour for _, colour in loaded], np.float32)
    examples = group_near_duplicates(examples, images)
    rest, validation = split_by_group(examples, 0.2, seed)
    train, calibration = split_by_group([examples[i] for i in rest], 0.25, seed)
    return Radiographs(tuple(examples), images, mixed_colour, rest[train], rest[calibration], validation)


def _load_radiograph(path: Path, size: int) -> tuple[np.ndarray, float]:
    try:
        image = decode_image(path.read_bytes(), min_side=decode_side(size))
    except (OSError, ImageError) as exc:
        raise UnreadableImageError(f"{path}: {exc}; remove or replace that file") from exc
    return preprocess(image, size), image.mixed_colour


def synthetic_negatives(per_family: int, seed: int, size: int = IMAGE_SIZE) -> Negatives:
    """`per_family` images of each `synthetic.FAMILIES` family, encoded as a user would send them and decoded
    and preprocessed as the service does."""
    decoded: dict[str, list[DecodedImage]] = {}
    for offset, (family, generate) in enumerate(synthetic.FAMILIES.items()):
        rng = np.random.default_rng([seed, offset])
        decoded[family] = [
            decode_image(synthetic.encode(generate(rng), rng), min_side=decode_side(size)) for _ in range(per_family)
        ]
    images = {family: np.stack([preprocess(image, size) for image in found]) for family, found in decoded.items()}
    return Negatives(decoded, images)


def transformed_radiographs(images: np.ndarray, per_transform: int, seed: int) -> Negatives:
    """`per_transform` of `images` (preprocessed radiographs) through each of `synthetic.RADIOGRAPH_TRANSFORMS`."""
    size = images.shape[1]
    decoded, tensors = {}, {}
    for offset, (name, transform) in enumerate(synthetic.RADIOGRAPH_TRANSFORMS.items()):
        rng = np.random.default_rng([seed, 100 + offset])
        rows = rng.choice(len(images), min(per_transform, len(images)), replace=False)
        tensors[name] = np.stack([preprocess(transform(images[row, ..., 0], rng), size) for row in rows])
        decoded[name] = [_gray_image(tensor) for tensor in tensors[name]]
    return Negatives(decoded, tensors)


def _gray_image(tensor: np.ndarray) -> DecodedImage:
    """A preprocessed gray image as the hard rules see it (no colour, no DICOM header)."""
    return DecodedImage(pixels=tensor[..., 0], width=tensor.shape[1], height=tensor.shape[0], format="PNG")


def check_network(size: int = IMAGE_SIZE) -> keras.Model:
    """Image (size, size, 1) -> ``{"features": 64 values, "radiograph": probability}``: halved to 32x32, three
    convolution blocks (16, 32, 64 filters), a dense layer of features and a sigmoid."""
    inputs = keras.Input((size, size, 1), name="image")
    x = layers.AveragePooling2D(2, name="halve")(inputs)
    for i, filters in enumerate((16, 32, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        x = layers.MaxPooling2D(name=f"block{i}_pool")(x)
    features = layers.Dense(64, activation="relu", name="features")(layers.Flatten(name="flatten")(x))
    radiograph = layers.Dense(1, activation="sigmoid", name="radiograph")(layers.Dropout(0.3, name="drop")(features))
    return keras.Model(inputs, {"features": features, "radiograph": radiograph}, name=CHECK_NAME)


def training_stream(positives: np.ndarray, negatives: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled, augmented batches of (image, 1 for a radiograph, weight): both kinds weigh the same in total.
    Every image gets the augmentation and scanner artefacts training gives the classifiers, so that a radiograph
    from another machine is not taken for a negative."""
    images = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.float32)
    weights = np.where(labels == 1, len(labels) / (2 * len(positives)), len(labels) / (2 * len(negatives)))
    augment = augmenter(seed)

    def augmented(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        x = random_gamma(tf.clip_by_value(augment(x, training=True), 0.0, 1.0), seed)
        return scanner_artefacts(x, seed), y, w

    dataset = tf.data.Dataset.from_tensor_slices((images, labels, weights.astype(np.float32)))
    dataset = dataset.shuffle(len(images), seed=seed).batch(batch_size)
    return dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def fit_check(
    radiographs: Radiographs, negatives: Sequence[Negatives], epochs: int, seed: int, colour_limit: float
) -> FittedCheck:
    """Train the network on the training radiographs against `negatives`, then fit the Gaussian of the training
    radiographs' features with the calibration radiographs as the score's reference."""
    keras.utils.set_random_seed(seed)
    model = check_network(radiographs.images.shape[1])
    classifier = keras.Model(model.input, model.output["radiograph"])
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", weighted_metrics=[])
    negative_images = np.concatenate([images for group in negatives for images in group.images.values()])
    stream = training_stream(radiographs.images[radiographs.train], negative_images, 128, seed)
    classifier.fit(stream, epochs=epochs, shuffle=False, verbose=2)  # the stream is shuffled already

    def features(images: np.ndarray) -> np.ndarray:
        return model.predict(images, batch_size=512, verbose=0)["features"]

    density = FeatureDensity.fit(
        features(radiographs.images[radiographs.train]), features(radiographs.images[radiographs.calibration])
    )
    card = provisional_card(colour_limit)
    network = _keras_forward(model)
    return FittedCheck(model, InputChecker(network, card, density))


def _keras_forward(model: keras.Model) -> Network:
    """`model` as the check calls its network (`classifier.inference.Network`)."""

    def forward(images: np.ndarray) -> dict[str, np.ndarray]:
        return {name: np.asarray(value) for name, value in model.predict(images, batch_size=512, verbose=0).items()}

    return forward


def provisional_card(colour_limit: float) -> CheckCard:
    """A card with the threshold and rules only, for checking images before the figures are known."""
    empty = CheckValidation(
        radiographs=0,
        radiographs_refused=0.0,
        radiographs_refused_by_source={},
        radiographs_refused_by_age_group={},
        synthetic_per_family=0,
        synthetic_refused={},
        synthetic_refused_overall=0.0,
    )
    return CheckCard(
        version=dt.date.today().isoformat(),
        description=DESCRIPTION,
        threshold=REFUSED_SHARE,
        threshold_rule=THRESHOLD_RULE,
        colour_limit=colour_limit,
        colour_rule=COLOUR_RULE,
        rules=RULES,
        training={},
        validation=empty,
        seed=0,
        epochs=0,
        duration_seconds=0.0,
        date=dt.date.today().isoformat(),
        command="",
    )


DESCRIPTION = (
    "Answers, before any model classifies an upload: is this a frontal chest radiograph like those the models "
    "were trained on? Hard rules on what the file says, then a small CNN's features compared with the training "
    "radiographs' (Mahalanobis distance), as a conformal p-value against held-out calibration radiographs."
)
THRESHOLD_RULE = (
    f"refuse when the score (the share of calibration radiographs at least as far from the training "
    f"radiographs' features) is below {REFUSED_SHARE}: about {REFUSED_SHARE:.1%} of radiographs like the "
    "calibration ones are refused, by construction; the validation radiographs measure it"
)
COLOUR_RULE = (
    f"the larger of {MIN_COLOUR_LIMIT} and twice the 99.9th percentile of the training radiographs' share of "
    "clearly coloured pixels (chroma of 16 levels or more) outside the image's dominant quarter of hues: real "
    "radiographs are gray, and one scanned with a colour cast has a single hue (a quarter of the Kaggle COVID-19 "
    "dataset's images are tinted so); a photo has several"
)
RULES = [
    "a colour image (share of clearly coloured pixels outside its dominant hue above colour_limit) is refused",
    "a DICOM whose Modality is set and is not CR, DX, DR, RG or OT is refused (another modality)",
    "a DICOM whose ViewPosition is LL, RL, LAT or LATERAL is refused (not a frontal view)",
    "a radiograph turned a quarter or half turn, inverted or scrambled is trained as a negative: the models "
    "cannot read it",
]


def colour_limit_of(mixed_colour: np.ndarray) -> float:
    """The colour rule's limit from the training radiographs' `DecodedImage.mixed_colour` (`COLOUR_RULE`)."""
    return float(max(MIN_COLOUR_LIMIT, 2 * np.percentile(mixed_colour, 99.9)))


def refused_share(verdicts: Sequence[InputCheck]) -> float:
    return round(float(np.mean([not v.chest_xray for v in verdicts])), 4) if verdicts else 0.0


def check_negatives(checker: InputChecker, negatives: Negatives) -> dict[str, float]:
    """Share of each family's images refused."""
    return {
        family: refused_share(checker.check(negatives.decoded[family], negatives.images[family]))
        for family in negatives.images
    }


def check_radiographs(checker: InputChecker, radiographs: Radiographs, rows: np.ndarray) -> list[InputCheck]:
    images = radiographs.images[rows]
    return checker.check([_gray_image(image) for image in images], images)


def by_group(verdicts: Sequence[InputCheck], groups: Sequence[str]) -> dict[str, float]:
    return {
        group: refused_share([v for v, g in zip(verdicts, groups, strict=True) if g == group])
        for group in sorted(set(groups))
    }


@dataclass
class TrainInputCheck:
    """Train, validate and deploy the input check: ``TrainInputCheck(data_dir).run()``."""

    data_dir: Path
    weights_dir: Path = WEIGHTS_DIR
    epochs: int = 12
    per_family: int = 250
    """Synthetic training images per family (and transformed radiographs per transform: twice as many)."""
    held_out_per_family: int = 60
    generalisation: bool = False
    seed: int = 1234

    def run(self) -> Path:
        started = time.monotonic()
        radiographs = load_radiographs(self.data_dir, self.seed)
        for part in ("train", "calibration", "validation"):
            log.info("%s radiographs: %s", part, radiographs.counts(getattr(radiographs, part)))
        colour_limit = colour_limit_of(radiographs.mixed_colour[radiographs.train])
        log.info("colour limit %.3f", colour_limit)
        training = [
            synthetic_negatives(self.per_family, self.seed),
            transformed_radiographs(radiographs.images[radiographs.train], 2 * self.per_family, self.seed),
        ]
        held_out = [
            synthetic_negatives(self.held_out_per_family, self.seed + 1),
            transformed_radiographs(
                radiographs.images[radiographs.validation], 2 * self.held_out_per_family, self.seed + 1
            ),
        ]
        log.info("generated negatives: %s", {k: v for n in training for k, v in n.counts().items()})
        fitted = fit_check(radiographs, training, self.epochs, self.seed, colour_limit)
        generalisation = self.generalisation_estimate(radiographs, training, held_out, colour_limit)
        validation = self.validate(fitted.checker, radiographs, held_out, generalisation)
        card = self.card(radiographs, training, validation, colour_limit, time.monotonic() - started)
        return self.deploy(fitted, card)

    def validate(
        self,
        checker: InputChecker,
        radiographs: Radiographs,
        held_out: Sequence[Negatives],
        generalisation: dict[str, float],
    ) -> CheckValidation:
        rows = radiographs.validation
        verdicts = check_radiographs(checker, radiographs, rows)
        synthetic_refused = {k: v for negatives in held_out for k, v in check_negatives(checker, negatives).items()}
        validation = CheckValidation(
            radiographs=len(rows),
            radiographs_refused=refused_share(verdicts),
            radiographs_refused_by_source=by_group(verdicts, [radiographs.examples[i].source for i in rows]),
            radiographs_refused_by_age_group=by_group(verdicts, [radiographs.examples[i].age_group for i in rows]),
            synthetic_per_family=self.held_out_per_family,
            synthetic_refused=synthetic_refused,
            synthetic_refused_overall=round(float(np.mean(list(synthetic_refused.values()))), 4),
            generalisation=generalisation,
        )
        log.info("validation: %s", validation.model_dump_json())
        return validation

    def generalisation_estimate(
        self,
        radiographs: Radiographs,
        training: Sequence[Negatives],
        held_out: Sequence[Negatives],
        colour_limit: float,
    ) -> dict[str, float]:
        """For each cluster of `synthetic.CLUSTERS`: the share of its held-out images refused by a check trained
        without it (empty unless `generalisation`)."""
        if not self.generalisation:
            return {}
        estimate = {}
        for cluster, families in synthetic.CLUSTERS.items():
            fitted = fit_check(
                radiographs, [n.without(families) for n in training], self.epochs, self.seed, colour_limit
            )
            shares = [
                share
                for negatives in held_out
                for family, share in check_negatives(fitted.checker, negatives).items()
                if family in families
            ]
            estimate[cluster] = round(float(np.mean(shares)), 4)
            log.info("trained without %s: %.1f%% of its held-out images refused", cluster, 100 * estimate[cluster])
        return estimate

    def card(
        self,
        radiographs: Radiographs,
        training: Sequence[Negatives],
        validation: CheckValidation,
        colour_limit: float,
        duration_s: float,
    ) -> CheckCard:
        flags = " --generalisation" if self.generalisation else ""
        command = (
            f"python -m classifier train-input-check --data-dir DATA --epochs {self.epochs} --per-family "
            f"{self.per_family} --held-out-per-family {self.held_out_per_family} --seed {self.seed}{flags}"
        )
        return provisional_card(colour_limit).model_copy(
            update={
                "training": {
                    "radiographs_by_source": radiographs.counts(radiographs.train),
                    "calibration_radiographs_by_source": radiographs.counts(radiographs.calibration),
                    "synthetic_by_family": training[0].counts(),
                    "transformed_radiographs": training[1].counts(),
                },
                "validation": validation,
                "seed": self.seed,
                "epochs": self.epochs,
                "duration_seconds": round(duration_s, 1),
                "command": command,
            }
        )

    def deploy(self, fitted: FittedCheck, card: CheckCard) -> Path:
        """Write ``input-check.keras``, its export ``.tflite``, the card ``.json`` and the statistics npz."""
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        stem = self.weights_dir / CHECK_NAME
        fitted.model.save(stem.with_suffix(".keras"))
        export_litert(fitted.model, stem.with_suffix(".tflite"))
        card_path, density_path = check_files(self.weights_dir)
        fitted.checker.density.save(density_path)
        card.save(card_path)
        log.info("deployed %s", stem.with_suffix(".tflite"))
        return card_path
