"""``python -m classifier``: results on stdout, and every user error as one line on stderr with a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.cli import EXIT_FAILURE, EXIT_USAGE, main
from classifier.paths import PROJECT_ROOT
from tests.helpers import FIXTURES


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "the following arguments are required: command"),
        (["train", "--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
        (["train", "--epochs", "0"], "argument --epochs: must be at least 1, not 0"),
        (["train", "--epochs", "many"], "argument --epochs: must be a whole number, not 'many'"),
        (["evaluate", "--dataset", "pneumonia"], "the following arguments are required: --data-dir"),
        (["predict"], "the following arguments are required: images"),
    ],
)
def test_bad_arguments_print_usage_and_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m classifier")
    assert complaint in err.splitlines()[-1]


def test_train_without_data_or_credentials_fails_in_one_line(tmp_path: Path) -> None:
    """The whole program, as a user runs it: no traceback, one ``error:`` line saying what to do."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / ".kaggle"), MPLCONFIGDIR=str(tmp_path / "mpl"))
    env.pop("XDG_CONFIG_HOME", None)
    command = [sys.executable, "-m", "classifier", "train", "--data-dir", str(tmp_path / "missing"), "--epochs", "1"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_FAILURE, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [done.stderr.splitlines()[-1]]
    assert errors[0].startswith("error: no Kaggle credentials found: set KAGGLE_USERNAME and KAGGLE_KEY")
    assert "--data-dir" in errors[0]
    assert "Authentication required" not in done.stdout, "the kaggle package's own help page is kept out"
    assert not (tmp_path / "missing").exists()


def test_predict_prints_a_line_per_image(trained_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = sorted(FIXTURES.glob("*.jpeg"))[:2]
    assert main(["predict", "--model", str(trained_weights / "pneumonia.keras"), *map(str, images)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for image, line in zip(images, lines, strict=True):
        assert line.startswith(f"{image}: ")
        assert "normal=" in line and "pneumonia=" in line

    assert main(["predict", "--json", "--model", str(trained_weights / "pneumonia.keras"), str(images[0])]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == str(images[0])
    assert result["predicted_class"] in ("normal", "pneumonia")
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_reports_each_unreadable_file(
    trained_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = sorted(FIXTURES.glob("*.jpeg"))[0]
    text = tmp_path / "notes.jpeg"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    argv = ["predict", "--model", str(trained_weights / "pneumonia.keras"), str(missing), str(good), str(text)]
    assert main(argv) == EXIT_FAILURE
    out, err = capsys.readouterr()
    assert out.startswith(f"{good}: ") and len(out.splitlines()) == 1
    missing_line, text_line = err.splitlines()
    assert missing_line == f"{missing}: error: No such file or directory"
    assert text_line.startswith(f"{text}: error: ") and "not an image" in text_line


def test_predict_without_a_model_says_to_train_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = sorted(FIXTURES.glob("*.jpeg"))[0]
    assert main(["predict", "--model", str(tmp_path / "none.keras"), str(image)]) == EXIT_FAILURE
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.keras'} not found: train a model first " + (
        "(python -m classifier train)\n"
    )


def test_evaluate_prints_the_cards_metrics_as_json(
    trained_weights: Path, kaggle_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained_weights / "pneumonia.keras"
    argv = ["evaluate", "--dataset", "pneumonia", "--data-dir", str(kaggle_folder), "--model", str(model)]
    assert main([*argv, "--input-check", "off"]) == 0  # scoring only: the generated X-rays are crude drawings
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(model)
    assert report["data"] == str(kaggle_folder / "test")
    assert set(report["by_source"]) == {"kermany"} and set(report["by_age_group"]) == {"child"}
    assert report["n"] == 16
    assert sum(map(sum, report["confusion_matrix"])) == 16
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "f1", "threshold"):
        assert key in report


def test_evaluate_scores_a_local_source_by_origin_and_age(
    trained_weights: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--data-dir", str(data_root / "adult_cxr"), "--model", str(trained_weights / "pneumonia.keras")]
    assert main([*argv, "--input-check", "off"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 36 and set(report["by_source"]) == {"nih", "cohen"}
    assert report["by_source"]["nih"]["n"] + report["by_source"]["cohen"]["n"] == 36
    assert set(report["by_age_group"]) == {"adult"}


@pytest.mark.parametrize(
    ("data_dir", "complaint"),
    [
        ("missing", "does not exist"),
        ("empty", "is not in the Kaggle layout: no test/<CLASS>/<images> folders"),
    ],
)
def test_evaluate_on_a_wrong_folder_fails_in_one_line(
    data_dir: str, complaint: str, trained_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["evaluate", "--data-dir", str(tmp_path / data_dir), "--model", str(trained_weights / "pneumonia.keras")]
    assert main(argv) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / data_dir} ") and complaint in err
    assert len(err.splitlines()) == 1


def test_evaluate_names_an_unreadable_image(
    trained_weights: Path, kaggle_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(kaggle_folder / "test", tmp_path / "test")
    truncated = tmp_path / "test" / "NORMAL" / "truncated.jpeg"
    truncated.write_bytes(next((tmp_path / "test" / "NORMAL").glob("*.jpeg")).read_bytes()[:300])
    argv = ["evaluate", "--data-dir", str(tmp_path), "--model", str(trained_weights / "pneumonia.keras")]
    assert main(argv) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {truncated}: ") and len(err.splitlines()) == 1


def test_an_unusable_path_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert main(["train", "--data-dir", str(tmp_path / "notes.txt" / "data")]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("error: [Errno ") and str(tmp_path / "notes.txt") in err
    assert len(err.splitlines()) == 1
