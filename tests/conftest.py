"""Shared fixtures: a small generated dataset in the Kaggle layout and a tiny model trained on it.

Nothing here reads ../shared or the network. Helpers that tests import live in `tests.helpers`.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from tests.helpers import write_kaggle_folder


@pytest.fixture(scope="session")
def kaggle_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kaggle_folder(tmp_path_factory.mktemp("kaggle") / "chest_xray")


@pytest.fixture(scope="session")
def trained_weights(kaggle_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a pneumonia model trained for one epoch on the generated folder."""
    from classifier.train import Train

    weights = tmp_path_factory.mktemp("weights")
    Train("pneumonia", data_dir=kaggle_folder, epochs=1, batch_size=16, weights_dir=weights).run()
    return weights
