"""What the input check costs per image, next to what the rest of a prediction costs, measured in one run.

``python scripts/input_check_cost.py [--model weights/pneumonia.keras] [--rounds 200]``: for each fixture X-ray,
one image at a time as the service does, interleaved: decoding and preprocessing, the model (LiteRT), and the
input check (its hard rules, network and score) on the same decoded image and tensor. Prints the medians in
milliseconds and the check's share of a whole prediction. Absolute times depend on the machine (give its CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from classifier.imaging import decode_image
from classifier.inference import load_model
from classifier.input_check import load_input_check
from classifier.paths import PROJECT_ROOT, WEIGHTS_DIR
from classifier.preprocessing import decode_side, preprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=WEIGHTS_DIR / "pneumonia.keras")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    model = load_model(args.model)
    check = load_input_check(args.model.parent)
    files = [path.read_bytes() for path in sorted((PROJECT_ROOT / "fixtures").glob("*.jpeg"))]
    times: dict[str, list[float]] = {"decode + preprocess": [], "model": [], "input check": []}
    for _ in range(args.rounds):
        for data in files:
            started = time.perf_counter()
            image = decode_image(data, min_side=decode_side(model.image_size))
            tensor = preprocess(image, model.image_size)[np.newaxis]
            decoded = time.perf_counter()
            model.predict(tensor)
            classified = time.perf_counter()
            check.check([image], tensor)
            checked = time.perf_counter()
            times["decode + preprocess"].append(decoded - started)
            times["model"].append(classified - decoded)
            times["input check"].append(checked - classified)
    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:20s} {value:7.3f} ms")
    without = medians["decode + preprocess"] + medians["model"]
    print(f"input check / (decode + preprocess + model) = {medians['input check'] / without:.1%}")
    print(f"input check / model alone = {medians['input check'] / medians['model']:.1%}")


if __name__ == "__main__":
    main()
