"""Export a trained Keras model for the light serving runtime: ``<name>.tflite`` beside ``<name>.keras``.

The exported network returns ``{"probabilities", "attention", "features"}`` for a float32 batch (n, size, size,
1) (`classifier.model.serving_network`; the input check, its own named outputs), with the same float32
arithmetic as Keras (no quantisation), so both runtimes give the same predictions.
`classifier.inference.load_model` serves it with LiteRT (``ai-edge-litert``) when it is present, which needs
neither TensorFlow nor Keras at serving time. ``python -m classifier.export weights/pneumonia.keras``
re-exports a shipped model by hand.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from classifier.model import serving_network


def export_litert(model: keras.Model, path: Path) -> Path:
    """Write `model` with its served outputs as a float32 LiteRT flatbuffer at `path` (``.tflite``)."""
    serving_network(model).export(
        str(path),
        format="litert",
        verbose=False,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},  # no TensorFlow ops: LiteRT alone runs it
    )
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m classifier.export", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="<name>.keras files; each gets <name>.tflite beside it")
    for path in parser.parse_args(argv).models:
        print(export_litert(keras.saving.load_model(path), path.with_suffix(".tflite")))


if __name__ == "__main__":
    main()
