"""How typical adults' and children's radiographs are of a model: the `model_typicality` table of docs/models.md.

``python scripts/typicality_figures.py --data-dir DATA [--model weights/pneumonia-type.keras]``: the model's
`model_typicality` of every third image of DATA/adult_cxr and every 20th of DATA/chest_xray/train/NORMAL; prints
the count, the median and the share below 0.05 of each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: import the project's packages

from classifier.data import load_images
from classifier.inference import load_model
from classifier.paths import WEIGHTS_DIR

SETS = {"adult_cxr": ("adult_cxr/*/*", 3), "kermany normal": ("chest_xray/train/NORMAL/*", 20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=WEIGHTS_DIR / "pneumonia-type.keras")
    args = parser.parse_args()
    model = load_model(args.model)
    if model.density is None:
        parser.error(f"{args.model} has no typicality statistics: run python -m classifier typicality")
    for name, (pattern, step) in SETS.items():
        paths = sorted(path for path in args.data_dir.glob(pattern) if path.suffix != ".csv")[::step]
        typicality = np.array([p.typicality for p in model.predict(load_images(paths, model.image_size))])
        low = np.mean(typicality < 0.05)
        print(f"{name}: {len(paths)} images, median {np.median(typicality):.3f}, below 0.05: {low:.0%}")


if __name__ == "__main__":
    main()
