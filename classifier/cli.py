"""Command line: ``python -m classifier {train,typicality,train-input-check,evaluate,predict}``.

Every failure a user can cause ends in one readable line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from classifier.datasets import DATASETS
from classifier.errors import UserError
from classifier.paths import WEIGHTS_DIR

EXIT_USAGE = 2
EXIT_FAILURE = 1


INPUT_CHECK_OPTION = {
    "choices": ("refuse", "flag", "off"),
    "default": "refuse",
    "help": "images that do not look like frontal chest X-rays (the input check beside the model): left out with a "
    "line saying why (refuse, the default), classified and marked (flag), or not checked (off)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m classifier", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    # `Train` holds the training defaults: an option not given is not passed on
    train = commands.add_parser(
        "train", help="train a model and deploy it to the weights folder", argument_default=argparse.SUPPRESS
    )
    train.add_argument("--dataset", choices=sorted(DATASETS))
    train.add_argument(
        "--data-dir", type=Path, help="folder holding each source's folder (default: data/); Kaggle ones download"
    )
    train.add_argument("--force-download", action="store_true", help="download the Kaggle sources again")
    train.add_argument("--epochs", type=positive_int, help="maximum epochs (early stopping may end sooner)")
    train.add_argument("--seed", type=int)
    train.add_argument("--image-size", type=positive_int, help="side of the model input (default: the dataset's)")
    train.add_argument("--weights-dir", type=Path)

    evaluate = commands.add_parser(
        "evaluate", help="score a model on a Kaggle-layout folder or a folder with a metadata.csv; prints JSON"
    )
    evaluate.add_argument("--dataset", choices=sorted(DATASETS), default="pneumonia")
    evaluate.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder whose <split>/<CLASS>/ holds images, or with a metadata.csv",
    )
    evaluate.add_argument("--split", default="test", help="Kaggle layout: the sub-folder to score (default: test)")
    evaluate.add_argument("--source", help="the dataset's source whose labels apply (default: the first that fits)")
    evaluate.add_argument("--model", type=Path, help="model file (default: weights/<dataset>.keras)")
    evaluate.add_argument("--input-check", **INPUT_CHECK_OPTION)

    typicality = commands.add_parser(
        "typicality",
        help="write <name>.typicality.npz beside a deployed model: its training images' features, for model_typicality",
    )
    typicality.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    typicality.add_argument("--data-dir", type=Path, required=True, help="the data the model was trained on")
    typicality.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)

    check = commands.add_parser(
        "train-input-check", help="train the input check that refuses images that are not frontal chest X-rays"
    )
    check.add_argument("--data-dir", type=Path, required=True, help="folder holding each source's folder")
    check.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    check.add_argument("--epochs", type=positive_int, default=12)
    check.add_argument("--per-family", type=positive_int, default=250, help="synthetic training images per family")
    check.add_argument(
        "--held-out-per-family", type=positive_int, default=60, help="synthetic validation images per family"
    )
    check.add_argument("--seed", type=int, default=1234)
    check.add_argument(
        "--generalisation",
        action="store_true",
        help="also retrain without each cluster of synthetic families and measure how much of it is refused",
    )

    predict = commands.add_parser("predict", help="classify image files; one line per image")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--model", type=Path, default=WEIGHTS_DIR / "pneumonia.keras")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--input-check", **INPUT_CHECK_OPTION)
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run_train(args: argparse.Namespace) -> int:
    from classifier.train import Train

    options = {name: value for name, value in vars(args).items() if name not in ("command", "verbose")}
    path = Train(**options).run()
    print(f"deployed {path} and {path.with_suffix('.json')}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from classifier.evaluation import evaluate_folder

    model = args.model or WEIGHTS_DIR / f"{args.dataset}.keras"
    report = evaluate_folder(args.dataset, args.data_dir, model, args.split, args.source, args.input_check)
    print(json.dumps(report, indent=2))
    return 0


def run_typicality(args: argparse.Namespace) -> int:
    from classifier.train import Train

    print(f"wrote {Train(args.dataset, data_dir=args.data_dir, weights_dir=args.weights_dir).write_typicality()}")
    return 0


def run_train_input_check(args: argparse.Namespace) -> int:
    from classifier.train_input_check import TrainInputCheck

    if not args.data_dir.is_dir():
        raise UserError(f"{args.data_dir} is not a folder")
    options = {k: v for k, v in vars(args).items() if k not in ("command", "verbose")}
    card = TrainInputCheck(**options).run()
    print(f"deployed the input check: {card} and its network beside it")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from classifier.imaging import ImageError, decode_image
    from classifier.inference import load_model
    from classifier.input_check import load_input_check
    from classifier.preprocessing import decode_side, preprocess

    model = load_model(args.model)
    check = None if args.input_check == "off" else load_input_check(args.model.parent)
    failures = 0
    for path in args.images:
        try:
            image = decode_image(path.read_bytes(), min_side=decode_side(model.image_size))
        except (OSError, ImageError) as exc:
            failures += 1
            print(f"{path}: error: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            continue
        tensor = preprocess(image, model.image_size)[np.newaxis]
        verdict = check.check([image], tensor if check.image_size == model.image_size else None)[0] if check else None
        checked = {} if verdict is None else {"chest_xray": verdict.chest_xray, "score": round(verdict.score, 4)}
        if verdict is not None and not verdict.chest_xray and args.input_check == "refuse":
            print(
                json.dumps({"file": str(path), "refused": verdict.reason, **checked})
                if args.json
                else f"{path}: refused: not a frontal chest X-ray ({verdict.reason}; score {verdict.score:.4f})"
            )
            continue
        result = model.predict(tensor)[0]
        if args.json:
            line = {"file": str(path), "predicted_class": result.predicted_class, "probabilities": result.probabilities}
            print(json.dumps(line | checked))
        else:
            probabilities = " ".join(f"{name}={p:.3f}" for name, p in result.probabilities.items())
            flagged = f" [not a frontal chest X-ray? {verdict.reason}]" if verdict and not verdict.chest_xray else ""
            print(f"{path}: {result.predicted_class} ({probabilities}){flagged}")
    return EXIT_FAILURE if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(  # progress on stderr, answers on stdout, whatever logging was set up before
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = {
        "train": run_train,
        "train-input-check": run_train_input_check,
        "typicality": run_typicality,
        "evaluate": run_evaluate,
        "predict": run_predict,
    }[args.command]
    try:
        return command(args)
    except (UserError, OSError) as exc:  # OSError: a path that cannot be read or written
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
