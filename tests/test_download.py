"""Getting the dataset: the real kaggle client against a local fake Kaggle, and local folders and zips.

Every test runs with its own empty HOME and Kaggle config folder and no ``KAGGLE_*`` variables, so
the developer's own credentials are never read and nothing reaches the network.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from classifier.datasets import KERMANY
from classifier.download import MARKER, DatasetError, find_dataset_root, locate_dataset
from tests.fake_kaggle import DOWNLOAD_PATH, INTROSPECT_PATH, FakeKaggle
from tests.helpers import write_kaggle_folder

SOURCE = KERMANY


def zip_folder(folder: Path, prefixes: tuple[str, ...], extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of `folder`'s files, stored once under each of `prefixes`, plus `extra` members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            for prefix in prefixes:
                zipped.write(path, f"{prefix}{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            zipped.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kaggle_folder(tmp_path_factory.mktemp("small") / "chest_xray", per_class=3)


@pytest.fixture(scope="module")
def kaggle_zip(small_folder: Path) -> bytes:
    """Laid out like the real download: ``chest_xray/{train,test}``, a copy one level deeper, macOS litter."""
    junk = {"chest_xray/__MACOSX/chest_xray/train/NORMAL/._IM-0000-0000.jpeg": b"\x00\x05\x16\x07"}
    return zip_folder(small_folder, ("chest_xray/", "chest_xray/chest_xray/"), junk)


@pytest.fixture
def kaggle_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty ~/.kaggle in a throw-away HOME, and the kaggle client reading its config from there."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config_dir = tmp_path / "home" / ".kaggle"
    config_dir.mkdir(parents=True)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    # Imported only now, under the empty HOME: the package authenticates on import, and `KaggleApi`
    # fixes its config path when the class is created, so it is set again for this test.
    from kaggle.api.kaggle_api_extended import KaggleApi

    monkeypatch.setattr(KaggleApi, "config_dir", str(config_dir))
    monkeypatch.setattr(KaggleApi, "config", str(config_dir / "kaggle.json"))
    return config_dir


@pytest.fixture
def server(kaggle_home: Path, kaggle_zip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaggle]:
    """The fake Kaggle, serving the pneumonia dataset, with the client's production endpoint pointed at it."""
    from kagglesdk import kaggle_env

    with FakeKaggle({SOURCE.kaggle_slug: kaggle_zip}) as server:
        monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, server.url)
        yield server


@pytest.fixture
def with_key(server: FakeKaggle, monkeypatch: pytest.MonkeyPatch) -> FakeKaggle:
    monkeypatch.setenv("KAGGLE_USERNAME", server.username)
    monkeypatch.setenv("KAGGLE_KEY", server.key)
    return server


def assert_downloaded(root: Path, data_dir: Path) -> None:
    assert root == data_dir / "chest_xray"
    assert len(list((root / "train" / "PNEUMONIA").glob("*.jpeg"))) == 3
    assert (data_dir / MARKER).read_text() == f"kaggle:{SOURCE.kaggle_slug}\n"
    assert not list(data_dir.glob("*.zip")), "the zip is deleted once extracted"
    assert not list(data_dir.parent.glob(".*.partial")), "no staging folder is left behind"


def test_downloads_into_a_missing_folder(with_key: FakeKaggle, tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "pneumonia"
    assert_downloaded(locate_dataset(SOURCE, data_dir), data_dir)
    assert with_key.requests == [("POST", DOWNLOAD_PATH), ("GET", f"/files/{SOURCE.kaggle_slug}.zip")]


def test_an_empty_folder_counts_as_missing(with_key: FakeKaggle, tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "pneumonia"
    data_dir.mkdir(parents=True)
    assert_downloaded(locate_dataset(SOURCE, data_dir), data_dir)


def test_present_data_is_not_downloaded_again(with_key: FakeKaggle, tmp_path: Path, small_folder: Path) -> None:
    data_dir = tmp_path / "data" / "pneumonia"
    locate_dataset(SOURCE, data_dir)
    with_key.requests.clear()
    assert locate_dataset(SOURCE, data_dir) == data_dir / "chest_xray"
    assert locate_dataset(SOURCE, small_folder) == small_folder
    assert with_key.requests == []


def test_force_download_replaces_a_downloaded_folder(with_key: FakeKaggle, tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "pneumonia"
    locate_dataset(SOURCE, data_dir)
    stale = data_dir / "chest_xray" / "train" / "NORMAL" / "stale.jpeg"
    stale.write_bytes(b"old")
    with_key.requests.clear()
    assert_downloaded(locate_dataset(SOURCE, data_dir, force_download=True), data_dir)
    assert not stale.exists()
    assert with_key.requests[0] == ("POST", DOWNLOAD_PATH)


def test_force_download_never_deletes_a_folder_it_did_not_make(
    with_key: FakeKaggle, tmp_path: Path, small_folder: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="will not replace"):
        locate_dataset(SOURCE, tmp_path, force_download=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert with_key.requests == []


@pytest.mark.parametrize("form", ["environment", "kaggle.json", "token", "token file"])
def test_each_credential_form_works(
    form: str, server: FakeKaggle, kaggle_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if form == "environment":
        monkeypatch.setenv("KAGGLE_USERNAME", server.username)
        monkeypatch.setenv("KAGGLE_KEY", server.key)
    elif form == "kaggle.json":
        config = kaggle_home / "kaggle.json"
        config.write_text(json.dumps({"username": server.username, "key": server.key}))
        config.chmod(0o600)
    elif form == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", server.token)
    else:
        (kaggle_home / "token").write_text(server.token + "\n")
        monkeypatch.setenv("KAGGLE_API_TOKEN", str(kaggle_home / "token"))
    data_dir = tmp_path / "data"
    assert_downloaded(locate_dataset(SOURCE, data_dir), data_dir)
    expected = [("POST", INTROSPECT_PATH)] if form.startswith("token") else []
    assert server.requests[:-2] == expected


def test_what_the_kaggle_client_prints_is_logged(
    server: FakeKaggle, kaggle_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = kaggle_home / "kaggle.json"
    config.write_text(json.dumps({"username": server.username, "key": server.key}))
    config.chmod(0o644)
    locate_dataset(SOURCE, tmp_path / "data")
    assert "Your Kaggle API key is readable by other users" in caplog.text


def test_without_the_kaggle_package(kaggle_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", None)
    with pytest.raises(DatasetError, match=r"the kaggle package is not installed: pip install -r requirements-train"):
        locate_dataset(SOURCE, tmp_path / "data")


def test_missing_credentials_say_what_to_do(server: FakeKaggle, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as raised:
        locate_dataset(SOURCE, tmp_path / "data")
    message = str(raised.value)
    assert "\n" not in message
    for hint in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "kaggle.json", ".env", "--data-dir"):
        assert hint in message
    assert server.requests == []
    assert list(tmp_path.iterdir()) == [tmp_path / "home"], "nothing is left behind"


def test_wrong_credentials_are_reported_and_the_next_run_tries_again(
    server: FakeKaggle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", server.username)
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    with pytest.raises(DatasetError, match=r"Kaggle refused to send .* \(HTTP 401") as raised:
        locate_dataset(SOURCE, tmp_path / "data")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "data").exists()
    monkeypatch.setenv("KAGGLE_KEY", server.key)
    assert_downloaded(locate_dataset(SOURCE, tmp_path / "data"), tmp_path / "data")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ((404, "Dataset not found"), r"Kaggle has no dataset paultimothymooney/chest-xray-pneumonia \(HTTP 404\)"),
        ((403, "You must accept this dataset's rules"), r"HTTP 403: You must accept this dataset's rules"),
        ((500, "Internal error"), r"downloading .* failed \(Internal error\): try again"),
    ],
)
def test_server_errors_become_one_line(
    failure: tuple[int, str], expected: str, with_key: FakeKaggle, tmp_path: Path
) -> None:
    with_key.failure = failure
    with pytest.raises(DatasetError, match=expected) as raised:
        locate_dataset(SOURCE, tmp_path / "data")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "data").exists()


def test_unreachable_kaggle(with_key: FakeKaggle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kagglesdk import kaggle_env

    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, "http://127.0.0.1:9")
    with pytest.raises(DatasetError, match=r"cannot reach Kaggle .*check the network"):
        locate_dataset(SOURCE, tmp_path / "data")


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        (b"<html>not a zip</html>", "not a valid zip file or is damaged"),
        ({"images/x.jpeg": b"jpeg"}, r"kaggle:paultimothymooney/chest-xray-pneumonia is not a dataset in the Kaggle"),
    ],
)
def test_a_bad_download_is_refused(
    served: bytes | dict[str, bytes], expected: str, with_key: FakeKaggle, tmp_path: Path
) -> None:
    if isinstance(served, dict):
        served = zip_folder(tmp_path / "nothing", (), served)
    with_key.datasets[SOURCE.kaggle_slug] = served
    with pytest.raises(DatasetError, match=expected):
        locate_dataset(SOURCE, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_local_folder_is_found_below_kaggle_nesting(tmp_path: Path, small_folder: Path) -> None:
    nested = tmp_path / "download" / "chest_xray" / "chest_xray"
    nested.parent.mkdir(parents=True)
    nested.symlink_to(small_folder, target_is_directory=True)
    (tmp_path / "download" / "__MACOSX" / "chest_xray" / "train").mkdir(parents=True)
    assert locate_dataset(SOURCE, tmp_path / "download") == nested
    assert find_dataset_root(tmp_path / "download", "test") == nested


def test_a_local_zip_is_extracted_once_beside_it(tmp_path: Path, small_folder: Path) -> None:
    archive = tmp_path / "chest-xray-pneumonia.zip"
    archive.write_bytes(zip_folder(small_folder, ("chest_xray/chest_xray/",)))
    extracted = tmp_path / "chest-xray-pneumonia.extracted"
    root = locate_dataset(SOURCE, archive)
    assert root == extracted / "chest_xray" / "chest_xray"
    assert len(list((root / "test" / "NORMAL").glob("*.jpeg"))) == 1
    marker = extracted / MARKER
    marker.write_text("kept unless extracted again\n")
    assert locate_dataset(SOURCE, archive) == root
    assert marker.read_text() == "kept unless extracted again\n"
    assert locate_dataset(SOURCE, archive, force_download=True) == root
    assert marker.read_text() == f"{archive}\n"


def test_a_zip_with_an_unsafe_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "data" / "evil.zip"
    archive.parent.mkdir()
    archive.write_bytes(zip_folder(tmp_path / "nothing", (), {"train/NORMAL/a.jpeg": b"x", "../../escaped.txt": b"x"}))
    with pytest.raises(DatasetError, match=r"unsafe path \(\.\./\.\./escaped\.txt\)"):
        locate_dataset(SOURCE, archive)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert sorted(p.name for p in archive.parent.iterdir()) == ["evil.zip"]


def test_damaged_and_fake_zips_give_clear_errors(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        zipped.writestr("train/NORMAL/a.jpeg", b"A" * 1000)
    damaged.write_bytes(buffer.getvalue().replace(b"A" * 1000, b"B" * 1000))
    with pytest.raises(DatasetError, match=r"damaged\.zip is not a valid zip file or is damaged"):
        locate_dataset(SOURCE, damaged)
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match=r"fake\.zip is neither a folder nor a zip file"):
        locate_dataset(SOURCE, fake)


def test_a_folder_in_the_wrong_layout_is_refused(tmp_path: Path, small_folder: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpeg").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"is not in the Kaggle layout: no train/<CLASS>/<images> folders"):
        locate_dataset(SOURCE, tmp_path)
    for name in ("one", "two"):
        (tmp_path / "both" / name).mkdir(parents=True)
        (tmp_path / "both" / name / "train").symlink_to(small_folder / "train")
    with pytest.raises(DatasetError, match="holds several datasets"):
        locate_dataset(SOURCE, tmp_path / "both")
