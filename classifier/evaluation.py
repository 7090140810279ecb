"""Scoring a deployed model on a folder of labelled images, at its card's threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.data import METADATA_FILE, Example, LayoutError, list_examples, list_metadata, load_images
from classifier.datasets import DatasetSpec, get_dataset
from classifier.download import find_dataset_root
from classifier.errors import UserError
from classifier.inference import load_model
from classifier.scores import classification_report, subset_scores


def evaluate_folder(
    dataset: str, data_dir: Path, model_path: Path, split: str = "test", source: str | None = None
) -> dict:
    """The scores a model card records, for `model_path` on the images of `data_dir`, overall and by source and
    age group: a folder with a ``metadata.csv`` (a local source's layout), or a Kaggle-layout folder whose
    ``<split>/`` is scored (found inside Kaggle's nesting). `source` names the dataset's source whose labels
    apply; by default the first whose layout fits. An unreadable image is named
    (`classifier.data.UnreadableImageError`)."""
    if not data_dir.exists():
        raise UserError(f"{data_dir} does not exist")
    spec = get_dataset(dataset)
    model = load_model(model_path)
    where, examples = _examples(spec, data_dir, split, source)
    predictions = model.predict(load_images([e.path for e in examples], model.image_size))
    probabilities = np.array([[p.probabilities[c] for c in model.classes] for p in predictions])
    labels = np.array([e.label for e in examples])
    threshold = model.card.threshold
    report = classification_report(labels, probabilities, model.classes, threshold)
    return {
        "model": str(model_path),
        "data": str(where),
        "threshold": threshold,
        **report.model_dump(),
        "by_source": _dump(
            subset_scores(labels, probabilities, model.classes, threshold, [e.source for e in examples])
        ),
        "by_age_group": _dump(
            subset_scores(labels, probabilities, model.classes, threshold, [e.age_group for e in examples])
        ),
    }


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
