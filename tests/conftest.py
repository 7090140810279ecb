"""Shared fixtures: a small generated data root (three sources) and a tiny model trained on it.

Nothing here reads ../shared or the network. Helpers that tests import live in `tests.helpers`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from classifier.input_check import CHECK_NAME
from classifier.paths import WEIGHTS_DIR
from tests.helpers import write_data_root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def kaggle_folder(data_root: Path) -> Path:
    """The children's dataset of `data_root`, in the Kaggle layout."""
    return data_root / "chest_xray"


@pytest.fixture(scope="session")
def trained_weights(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a pneumonia model trained for one epoch on the generated data root, and the
    shipped input check (which the app loads with the models)."""
    from classifier.train import Train

    weights = tmp_path_factory.mktemp("weights")
    Train("pneumonia", data_dir=data_root, epochs=1, batch_size=16, weights_dir=weights).run()
    for path in WEIGHTS_DIR.glob(f"{CHECK_NAME}.*"):
        shutil.copy(path, weights)
    return weights
