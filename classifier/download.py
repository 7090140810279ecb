"""Getting a dataset: the Kaggle API, or a local folder or zip in the Kaggle layout.

A download or a local zip is unpacked into a staging folder beside its destination, checked for
the Kaggle layout, marked as ours, and only then moved into place. So an interrupted or failed
download never leaves a half-filled folder that a later run would take for the data, and
``force_download`` only ever replaces a folder that this module made (or an empty one).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from classifier.datasets import Source
from classifier.errors import UserError

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

log = logging.getLogger(__name__)

MARKER = ".classifier-source"
"""File written into every folder this module fills; it names where the data came from."""

SKIPPED_FOLDERS = ("__MACOSX",)
"""Folders never taken for a dataset root (macOS zip metadata; hidden folders are skipped too)."""

MAX_DEPTH = 3
"""How many folder levels below the given one a dataset root is looked for."""

CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN (in .env, see .env.example), "
    "or save kaggle.json in ~/.kaggle/ - or pass --data-dir with a local copy of the dataset"
)


class DatasetError(UserError):
    """The dataset could not be had; the message says what to do."""


def locate_dataset(source: Source, data_dir: Path, force_download: bool = False) -> Path:
    """The root (the folder holding ``train/``) of a Kaggle `source`'s data, downloading it only when needed.

    `data_dir` may be a folder or a zip in the Kaggle layout. A missing or empty folder, or
    `force_download`, fetches the dataset from Kaggle into it; a zip is extracted once, into
    ``<name>.extracted/`` beside it, and again with `force_download`.
    """
    if data_dir.is_file():
        if not zipfile.is_zipfile(data_dir):
            raise DatasetError(f"{data_dir} is neither a folder nor a zip file: pass a Kaggle-layout folder or zip")
        extracted = data_dir.with_suffix(".extracted")
        if force_download or _is_missing(extracted):
            return _install(extracted, str(data_dir), lambda staging: unzip(data_dir, staging))
        return find_dataset_root(extracted)
    if force_download or _is_missing(data_dir):
        slug = source.kaggle_slug
        return _install(data_dir, f"kaggle:{slug}", lambda staging: download(slug, staging))
    return find_dataset_root(data_dir)


def find_dataset_root(path: Path, split: str = "train") -> Path:
    """The folder holding ``<split>/`` in or below `path`, however deeply a zip nested it.

    The shallowest such folder wins (the real Kaggle zip holds ``chest_xray/train`` and a copy in
    ``chest_xray/chest_xray/train``); two at the same depth are ambiguous and refused.
    """
    level = [path] if path.is_dir() else []
    for _ in range(MAX_DEPTH + 1):
        roots = [folder for folder in level if (folder / split).is_dir()]
        if len(roots) > 1:
            names = ", ".join(str(root) for root in roots)
            raise DatasetError(f"{path} holds several datasets ({names}): pass the one to use")
        if roots:
            return roots[0]
        level = sorted(child for folder in level for child in folder.iterdir() if _may_hold_dataset(child))
    raise DatasetError(
        f"{path} is not in the Kaggle layout: no {split}/<CLASS>/<images> folders in it or its sub-folders"
    )


def unzip(archive: Path, destination: Path) -> None:
    """Extract `archive` into `destination`, refusing members that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            root = destination.resolve()
            for member in zipped.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise DatasetError(f"{archive} holds an unsafe path ({member}): refusing to extract it")
            zipped.extractall(destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DatasetError(f"{archive} is not a valid zip file or is damaged ({_one_line(exc)}): get it again") from exc


def download(slug: str, destination: Path) -> None:
    """Download the Kaggle dataset `slug` (``owner/name``) into the folder `destination` and unzip it there."""
    api = _kaggle_api()
    log.info("downloading %s from Kaggle into %s", slug, destination)
    try:
        api.dataset_download_files(slug, path=str(destination), force=True, quiet=False)
    except Exception as exc:
        raise DatasetError(_download_failure(slug, exc)) from exc
    archives = sorted(destination.glob("*.zip"))
    if len(archives) != 1:
        raise DatasetError(f"Kaggle sent {len(archives)} zip files for {slug}, not one")
    unzip(archives[0], destination)
    archives[0].unlink()


def _kaggle_api() -> KaggleApi:
    """An authenticated Kaggle client.

    The kaggle package authenticates once on import and, like `KaggleApi.authenticate`, prints
    a page of help and calls ``exit(1)`` when it finds no credentials: that page is replaced by one
    line saying what to do, and anything else it prints is logged as a warning.
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError as exc:
        raise DatasetError(
            "the kaggle package is not installed: pip install -r requirements-train.txt, "
            "or pass --data-dir with a local copy of the dataset"
        ) from exc
    except SystemExit as exc:
        raise DatasetError(f"no Kaggle credentials found: {CREDENTIALS_HELP}") from exc
    except Exception as exc:
        raise DatasetError(f"cannot check the Kaggle credentials ({_one_line(exc)}): {CREDENTIALS_HELP}") from exc
    if printed.getvalue().strip():  # e.g. "your Kaggle API key is readable by other users"
        log.warning("kaggle: %s", " ".join(printed.getvalue().split()))
    return api


def _download_failure(slug: str, exc: Exception) -> str:
    """One line saying why downloading `slug` failed and what to do about it."""
    import requests

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return (
            f"Kaggle refused to send {slug} (HTTP {status}: {_one_line(exc)}): check your Kaggle credentials "
            "and accept the dataset's terms on kaggle.com if it has any; or pass --data-dir with a local copy"
        )
    if status == 404:
        return f"Kaggle has no dataset {slug} (HTTP 404): check its kaggle_slug in classifier/datasets.py"
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return (
            f"cannot reach Kaggle to download {slug} ({_one_line(exc)}): check the network, "
            "or pass --data-dir with a local copy of the dataset"
        )
    return f"downloading {slug} from Kaggle failed ({_one_line(exc)}): try again, or pass --data-dir with a local copy"


def _install(destination: Path, source: str, fill: Callable[[Path], None]) -> Path:
    """Fill a staging folder with `fill`, check its layout, and move it to `destination`; returns the root."""
    if not _is_missing(destination) and not (destination / MARKER).is_file():
        raise DatasetError(
            f"will not replace {destination}: it was not made by a download or extraction; "
            "move it away, or choose another --data-dir"
        )
    resolved = destination.resolve()
    staging = resolved.with_name(f".{resolved.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    made = next((folder for folder in reversed(staging.parents) if not folder.exists()), staging)
    staging.mkdir(parents=True)
    try:
        fill(staging)
        try:
            root = find_dataset_root(staging)
        except DatasetError as exc:
            raise DatasetError(
                f"{source} is not a dataset in the Kaggle layout (train/<CLASS>/<images>, test/..., optional val/...)"
            ) from exc
        (staging / MARKER).write_text(f"{source}\n")
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        # a failure leaves nothing behind, not even the folders made to hold the staging folder
        shutil.rmtree(staging if destination.exists() else made, ignore_errors=True)
    return destination / root.relative_to(staging)


def _is_missing(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _may_hold_dataset(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and path.name not in SKIPPED_FOLDERS


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
