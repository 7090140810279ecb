"""Where the project keeps its files: shipped models and downloaded datasets, relative to the checkout."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = PROJECT_ROOT / "weights"
"""Shipped models: ``<name>.keras``, its LiteRT export ``<name>.tflite``, card ``<name>.json`` and plots."""
DATA_DIR = PROJECT_ROOT / "data"
"""Datasets downloaded from Kaggle, one folder each."""
