"""The input check: is an upload a frontal chest radiograph like those the models were trained on?

It answers before any model classifies the image, on the image the model gets (decoded once, preprocessed by
`classifier.preprocessing.preprocess`). First hard rules on what the file itself says: an image in several colours, a
DICOM of another modality, or a DICOM of a lateral view is refused outright (score 0). Then a small CNN trained
by ``python -m classifier train-input-check`` (`classifier.train_input_check`) gives the image's features, and
the score is a conformal p-value: the share of held-out calibration radiographs whose Mahalanobis distance to
the training radiographs' features is at least this image's (`classifier.density.FeatureDensity`). An image
scoring below the card's threshold is refused.

Serving needs numpy and LiteRT only: the network is ``weights/input-check.tflite`` (or ``.keras``), its card
``input-check.json`` and its statistics ``input-check.density.npz``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from classifier.density import FeatureDensity
from classifier.imaging import DecodedImage
from classifier.inference import ModelFileError, Network, Runtime, load_network
from classifier.preprocessing import IMAGE_SIZE, preprocess

CHECK_NAME = "input-check"
"""The check's files in the weights folder: ``input-check.tflite``, ``.keras``, ``.json``, ``.density.npz``."""
DENSITY_SUFFIX = ".density.npz"

InputCheckMode = Literal["refuse", "flag", "off"]
"""What the service does with an image the check refuses: answer 422, classify it anyway and say so, or skip
the check altogether."""

RADIOGRAPHY_MODALITIES = frozenset({"", "CR", "DX", "DR", "RG", "OT"})
"""DICOM Modality values of projection radiographs (and unset or "other"): any other modality is refused."""
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT"})
"""DICOM ViewPosition values of a lateral view: the models read frontal (PA or AP) views only."""

Verdict = Literal["accepted", "colour", "modality", "view", "atypical"]


@dataclass(frozen=True)
class InputCheck:
    """The check's verdict on one image."""

    chest_xray: bool
    score: float
    """In [0, 1], higher = more typical of the training radiographs: the share of calibration radiographs at
    least as far from them; 0 where a hard rule refused the image."""
    threshold: float
    verdict: Verdict
    reason: str
    """In plain words, why the image was refused ("" when accepted)."""


class CheckValidation(BaseModel):
    """How the shipped check did on images it never learnt from."""

    radiographs: int = Field(description="validation radiographs (patients in neither training nor calibration)")
    radiographs_refused: float = Field(description="share of the validation radiographs refused")
    radiographs_refused_by_source: dict[str, float]
    radiographs_refused_by_age_group: dict[str, float]
    synthetic_per_family: int = Field(description="held-out synthetic images per family (another seed)")
    synthetic_refused: dict[str, float] = Field(description="share of each family's held-out images refused")
    synthetic_refused_overall: float
    generalisation: dict[str, float] = Field(
        default_factory=dict,
        description="leave-one-cluster-out: share of a cluster's held-out images refused by a check retrained "
        "without that cluster (an estimate for kinds of images the check has never seen); empty unless trained "
        "with --generalisation",
    )


class CheckCard(BaseModel):
    """The input check's card: what it was trained on, its threshold and its validation figures."""

    name: str = CHECK_NAME
    version: str
    description: str
    input_size: int = IMAGE_SIZE
    threshold: float = Field(description="an image whose score is below it is refused")
    threshold_rule: str
    colour_limit: float = Field(
        description="share of clearly coloured pixels outside the dominant hue above which an image is refused"
    )
    colour_rule: str
    rules: list[str] = Field(description="the hard rules applied before the network")
    training: dict[str, dict[str, int]] = Field(
        description="images learnt from: radiographs by source, synthetic negatives by family, transformed "
        "radiographs by transform; calibration radiographs by source"
    )
    validation: CheckValidation
    seed: int
    epochs: int
    duration_seconds: float
    date: str
    command: str = Field(description="the command that trained the check and measured these figures")

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> CheckCard:
        return cls.model_validate(json.loads(path.read_text()))


def hard_rule(image: DecodedImage, colour_limit: float) -> tuple[Verdict, str] | None:
    """The rule that refuses `image` on what the file says (colour, DICOM modality or view), or None."""
    if image.mixed_colour > colour_limit:
        return "colour", f"it is a colour image ({image.mixed_colour:.0%} of its pixels in several colours)"
    if image.dicom is not None:
        if image.dicom.modality not in RADIOGRAPHY_MODALITIES:
            return "modality", f"its DICOM modality is {image.dicom.modality}, not a radiograph"
        if image.dicom.view_position in LATERAL_VIEWS:
            return "view", f"its DICOM view position is {image.dicom.view_position}, not a frontal view"
    return None


class InputChecker:
    """The loaded check: `check` gives a verdict per image. Safe to call from several threads at once."""

    def __init__(self, network: Network, card: CheckCard, density: FeatureDensity):
        self.network = network
        self.card = card
        self.density = density

    @property
    def image_size(self) -> int:
        return self.card.input_size

    def scores(self, tensors: np.ndarray) -> np.ndarray:
        """The network's score of preprocessed images (n, size, size, 1), before any hard rule."""
        features = self.network(np.ascontiguousarray(tensors, dtype=np.float32))["features"]
        return self.density.typicality(features)

    def check(self, images: Sequence[DecodedImage], tensors: np.ndarray | None = None) -> list[InputCheck]:
        """A verdict per decoded image; `tensors` are the images preprocessed at `image_size`, when the caller
        has them already (the classifier's input), else they are made here."""
        if not images:
            return []
        if tensors is None:
            tensors = np.stack([preprocess(image, self.image_size) for image in images])
        scores = self.scores(tensors)
        threshold = self.card.threshold
        verdicts = []
        for image, score in zip(images, scores, strict=True):
            rule = hard_rule(image, self.card.colour_limit)
            if rule is not None:
                verdicts.append(InputCheck(False, 0.0, threshold, *rule))
            elif score < threshold:
                unlike = "it is unlike the frontal chest radiographs the service was trained on"
                verdicts.append(InputCheck(False, float(score), threshold, "atypical", unlike))
            else:
                verdicts.append(InputCheck(True, float(score), threshold, "accepted", ""))
        return verdicts


def check_files(folder: Path) -> tuple[Path, Path]:
    """The check's card and statistics in `folder`."""
    stem = folder / CHECK_NAME
    return stem.with_suffix(".json"), stem.with_name(CHECK_NAME + DENSITY_SUFFIX)


def load_input_check(folder: Path, runtime: Runtime = "auto", threads: int = 1) -> InputChecker:
    """The check shipped in `folder` (``input-check.tflite`` or ``.keras``, ``.json``, ``.density.npz``)."""
    card_path, density_path = check_files(folder)
    for path in (card_path, density_path):
        if not path.is_file():
            raise ModelFileError(
                f"{path} not found: the input check is missing (train it with python -m classifier "
                "train-input-check, or set CLASSIFIER_INPUT_CHECK=off to serve without it)"
            )
    network, _ = load_network(folder / f"{CHECK_NAME}.keras", runtime, threads)
    try:
        card, density = CheckCard.load(card_path), FeatureDensity.load(density_path)
    except Exception as exc:
        raise ModelFileError(f"cannot load the input check's {card_path} or {density_path}: {exc}") from exc
    return InputChecker(network, card, density)
