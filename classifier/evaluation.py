"""Scoring a deployed model on a folder of labelled images, at its card's threshold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from classifier.data import METADATA_FILE, Example, LayoutError, UnreadableImageError, list_examples, list_metadata
from classifier.datasets import DatasetSpec, get_dataset
from classifier.download import find_dataset_root
from classifier.errors import UserError
from classifier.imaging import DecodedImage, ImageError, decode_image
from classifier.inference import load_model
from classifier.input_check import InputCheckMode, load_input_check
from classifier.preprocessing import decode_side, preprocess
from classifier.scores import classification_report, subset_scores


def evaluate_folder(
    dataset: str,
    data_dir: Path,
    model_path: Path,
    split: str = "test",
    source: str | None = None,
    input_check: InputCheckMode = "refuse",
) -> dict:
    """The scores a model card records, for `model_path` on the images of `data_dir`, overall and by source and
    age group: a folder with a ``metadata.csv`` (a local source's layout), or a Kaggle-layout folder whose
    ``<split>/`` is scored (found inside Kaggle's nesting). `source` names the dataset's source whose labels
    apply; by default the first whose layout fits. An unreadable image is named
    (`classifier.data.UnreadableImageError`). Unless `input_check` is off, the input check beside the model
    looks at every image first: ``refused`` counts those it refuses (each named on stderr), which `refuse`
    leaves out of the scores and `flag` keeps."""
    if not data_dir.exists():
        raise UserError(f"{data_dir} does not exist")
    spec = get_dataset(dataset)
    model = load_model(model_path)
    where, examples = _examples(spec, data_dir, split, source)
    images = [_decode(e.path, model.image_size) for e in examples]
    tensors = np.stack([preprocess(image, model.image_size) for image in images])
    refused = _refused(model_path.parent, input_check, examples, images, tensors, model.image_size)
    if input_check == "refuse":
        examples = [e for e, out in zip(examples, refused, strict=True) if not out]
        tensors = tensors[~refused]
    if not examples:
        raise UserError(f"the input check refused every image of {where}: none is left to score")
    predictions = model.predict(tensors)
    probabilities = np.array([[p.probabilities[c] for c in model.classes] for p in predictions])
    labels = np.array([e.label for e in examples])
    threshold = model.card.threshold
    report = classification_report(labels, probabilities, model.classes, threshold)
    return {
        "model": str(model_path),
        "data": str(where),
        "threshold": threshold,
        "input_check": input_check,
        "refused": int(refused.sum()),
        **report.model_dump(),
        "by_source": _dump(
            subset_scores(labels, probabilities, model.classes, threshold, [e.source for e in examples])
        ),
        "by_age_group": _dump(
            subset_scores(labels, probabilities, model.classes, threshold, [e.age_group for e in examples])
        ),
    }


def _decode(path: Path, size: int) -> DecodedImage:
    try:
        return decode_image(path.read_bytes(), min_side=decode_side(size))
    except (OSError, ImageError) as exc:
        raise UnreadableImageError(f"{path}: {exc}; remove or replace that file") from exc


def _refused(
    folder: Path,
    mode: InputCheckMode,
    examples: list[Example],
    images: list[DecodedImage],
    tensors: np.ndarray,
    size: int,
) -> np.ndarray:
    """Which images the input check in `folder` refuses (none when `mode` is off), each named on stderr."""
    if mode == "off":
        return np.zeros(len(examples), bool)
    check = load_input_check(folder)
    verdicts = check.check(images, tensors if check.image_size == size else None)
    for example, verdict in zip(examples, verdicts, strict=True):
        if not verdict.chest_xray:
            print(f"{example.path}: refused: not a frontal chest X-ray ({verdict.reason})", file=sys.stderr)
    return np.array([not v.chest_xray for v in verdicts])


def _examples(spec: DatasetSpec, data_dir: Path, split: str, name: str | None) -> tuple[Path, list[Example]]:
    local = (data_dir / METADATA_FILE).is_file()
    candidates = [s for s in spec.sources if (name is None or s.name == name) and (not s.kaggle_slug) == local]
    if not candidates:
        layout = f"a folder with a {METADATA_FILE}" if local else "a Kaggle-layout folder"
        known = ", ".join(s.name for s in spec.sources)
        raise UserError(f"the {spec.name} dataset has no source {name or ''} for {layout} (its sources: {known})")
    if local:
        return data_dir, list_metadata(data_dir, candidates[0], spec.classes)
    split_dir = find_dataset_root(data_dir, split) / split
    problems = []
    for source in candidates:
        try:
            return split_dir, list_examples(split_dir, source, spec.classes)
        except LayoutError as exc:
            problems.append(str(exc))
    raise LayoutError(problems[0] if len(problems) == 1 else "; ".join(problems))


def _dump(scores: dict) -> dict:
    return {name: s.model_dump() for name, s in scores.items()}
