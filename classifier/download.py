"""Getting a dataset: the Kaggle API, or a local folder or zip in the Kaggle layout."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

from classifier.config import DatasetSpec
from classifier.errors import UserError

log = logging.getLogger(__name__)

CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or put kaggle.json in ~/.kaggle/ "
    "(see .env.example), or pass --data-dir with a local copy"
)


class DatasetError(UserError):
    """The dataset could not be had; the message says what to do."""


def find_dataset_root(path: Path, split: str = "train") -> Path:
    """The folder holding `<split>/` inside `path`, however deeply a zip nested it."""
    candidates = sorted(
        (p.parent for p in [path / split, *path.glob(f"**/{split}")] if p.is_dir()),
        key=lambda p: len(p.parts),
    )
    if not candidates:
        raise DatasetError(
            f"{path} is not in the Kaggle layout: expected {split}/<CLASS>/<images> "
            "(and optionally test/ and val/) somewhere inside it"
        )
    return candidates[0]


def unzip(archive: Path, destination: Path) -> Path:
    """Extract `archive` into `destination`, refusing members that would escape it."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            root = destination.resolve()
            for member in zipped.namelist():
                if not (destination / member).resolve().is_relative_to(root):
                    raise DatasetError(f"{archive} holds an unsafe path: {member}")
            zipped.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive} is not a valid zip file ({exc})") from exc
    return destination


def download_from_kaggle(slug: str, destination: Path, force: bool = False) -> Path:
    """Download and unzip the Kaggle dataset `slug` into `destination`."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
    except (Exception, SystemExit) as exc:
        raise DatasetError(f"no Kaggle credentials found: {CREDENTIALS_HELP}") from exc
    destination.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from Kaggle into %s", slug, destination)
    try:
        api.dataset_download_files(slug, path=str(destination), force=force, quiet=False, unzip=False)
    except (Exception, SystemExit) as exc:
        raise DatasetError(f"downloading {slug} from Kaggle failed: {exc}") from exc
    archive = destination / f"{slug.split('/')[-1]}.zip"
    if not archive.is_file():
        raise DatasetError(f"Kaggle reported success but {archive} is missing")
    unzip(archive, destination)
    archive.unlink()
    return destination


def locate_dataset(spec: DatasetSpec, data_dir: Path, force_download: bool = False) -> Path:
    """The root (holding `train/`) of `spec`'s data, downloading it only when needed.

    `data_dir` may be a folder or a zip in the Kaggle layout; a missing folder,
    or `force_download`, fetches the dataset from Kaggle into it.
    """
    if data_dir.is_file():
        if not zipfile.is_zipfile(data_dir):
            raise DatasetError(f"{data_dir} is neither a folder nor a zip file")
        extracted = data_dir.with_suffix("")
        if force_download or not extracted.exists():
            shutil.rmtree(extracted, ignore_errors=True)
            unzip(data_dir, extracted)
        return find_dataset_root(extracted)
    if force_download or not data_dir.exists():
        if force_download and data_dir.exists():
            shutil.rmtree(data_dir)
        download_from_kaggle(spec.kaggle_slug, data_dir, force=force_download)
    return find_dataset_root(data_dir)
