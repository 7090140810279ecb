"""`Train`: get a dataset, train the attention CNN on it, and deploy the weights with a model card."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import PIL
import sklearn
import tensorflow as tf

from classifier import plots, scores
from classifier.card import FoldScores, InputSpec, ModelCard, TrainingRecord
from classifier.data import (
    Example,
    UnreadableImageError,
    file_list_hash,
    group_near_duplicates,
    list_examples,
    make_dataset,
    split_by_group,
)
from classifier.datasets import DatasetSpec, get_dataset
from classifier.download import locate_dataset
from classifier.errors import UserError
from classifier.export import export_litert
from classifier.model import build_model, ensemble, with_attention
from classifier.paths import DATA_DIR, WEIGHTS_DIR
from classifier.preprocessing import HIGH_PERCENTILE, LOW_PERCENTILE

log = logging.getLogger(__name__)

PREPROCESSING = (
    f"decode (JPEG DCT-domain reduction, EXIF orientation, DICOM windowing), grayscale in [0, 1], "
    f"squash to a square with an antialiased bilinear filter, stretch the {LOW_PERCENTILE}-{HIGH_PERCENTILE} "
    f"percentile range to [0, 1] (classifier.preprocessing.preprocess)"
)


class ValidationMetrics(keras.callbacks.Callback):
    """Adds `val_auc` (ROC AUC on the validation split) to each epoch's logs."""

    def __init__(self, dataset: tf.data.Dataset, labels: np.ndarray):
        super().__init__()
        self.dataset, self.labels = dataset, labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = self.model.predict(self.dataset, verbose=0)
        auc = scores.roc_auc(self.labels, probabilities)
        if logs is not None:
            logs["val_auc"] = auc
        log.info("epoch %d: val_auc %.4f", epoch + 1, auc)


def ema_momentum(steps_per_epoch: int) -> float:
    """Momentum of a weight average spanning about one epoch.

    Batch-norm statistics are not averaged, so the average must not lag far behind
    them: a small dataset, with a few steps an epoch, gets a short average.
    """
    return float(np.clip(1 - 1 / steps_per_epoch, 0.5, 0.99))


@dataclass
class Train:
    """Train one dataset's model: ``Train("pneumonia").run()`` or step by step.

    `data_dir` is a local folder or zip in the Kaggle layout; when it does not
    exist (or `force_download` is set) the dataset is downloaded from Kaggle into it.
    """

    dataset: str = "pneumonia"
    data_dir: Path | None = None
    force_download: bool = False
    epochs: int | None = None
    image_size: int | None = None
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.2
    patience: int | None = None
    folds: int | None = None
    """Cross-validation folds; None takes the dataset's own setting."""
    seed: int = 1234
    weights_dir: Path = WEIGHTS_DIR
    spec: DatasetSpec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.spec = get_dataset(self.dataset)
        self.data_dir = Path(self.data_dir) if self.data_dir else DATA_DIR / self.spec.kaggle_slug.split("/")[-1]
        self.epochs = self.epochs or self.spec.epochs
        self.image_size = self.image_size or self.spec.image_size
        self.folds = self.spec.folds if self.folds is None else self.folds
        self.patience = self.patience or self.spec.patience
        self.model: keras.Model | None = None
        self.history: dict[str, list[float]] = {}

    def get_data(self) -> tuple[list[Example], list[Example]]:
        """Locate (or download) the data and split `train/` by patient into training and validation."""
        self.root = locate_dataset(self.spec, self.data_dir, self.force_download)
        examples = list_examples(self.root / "train", self.spec)
        if not self.spec.group_pattern:
            examples = group_near_duplicates(examples)
        self.examples = examples
        self.train_examples, self.val_examples = split_by_group(examples, self.validation_fraction, self.seed)
        counts = np.bincount([e.label for e in self.train_examples], minlength=len(self.spec.classes))
        log.info(
            "%s: %d training images %s, %d validation images, %d groups",
            self.dataset,
            len(self.train_examples),
            dict(zip(self.spec.classes, counts.tolist(), strict=False)),
            len(self.val_examples),
            len({e.group for e in examples}),
        )
        return self.train_examples, self.val_examples

    def build(self) -> keras.Model:
        """A new model, initialised from a shipped model's convolutional layers if the dataset says so."""
        model = build_model(tuple(self.spec.classes), self.image_size, name=self.dataset)
        if self.spec.init_from:
            source_path = self.weights_dir / f"{self.spec.init_from}.keras"
            if not source_path.is_file():
                raise UserError(
                    f"the {self.dataset} model starts from the {self.spec.init_from} model, but {source_path} is "
                    f"missing: train it first (python -m classifier train --dataset {self.spec.init_from})"
                )
            source = keras.saving.load_model(source_path)
            for layer in model.layers:
                if layer.name.startswith("block") and layer.weights:
                    layer.set_weights(source.get_layer(layer.name).get_weights())
            log.info("initialised convolutional layers from %s", self.spec.init_from)
        return model

    def fit(
        self, train_examples: list[Example], val_examples: list[Example] | None, epochs: int
    ) -> tuple[keras.Model, dict[str, list[float]]]:
        """Fit a new model with class weights, warm-up + cosine learning-rate decay and weight averaging.

        With `val_examples`, keep the epoch with the best validation ROC AUC and stop
        early when it stalls; without, train exactly `epochs` epochs.
        """
        keras.utils.set_random_seed(self.seed)
        train_ds = make_dataset(train_examples, self.image_size, self.batch_size, training=True, seed=self.seed)
        steps_per_epoch = int(np.ceil(len(train_examples) / self.batch_size))
        steps = steps_per_epoch * epochs
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, steps, warmup_target=self.learning_rate, warmup_steps=max(1, steps // 20)
        )
        model = self.build()
        model.compile(
            optimizer=keras.optimizers.AdamW(
                schedule, weight_decay=self.weight_decay, use_ema=True, ema_momentum=ema_momentum(steps_per_epoch)
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        counts = np.bincount([e.label for e in train_examples], minlength=len(self.spec.classes))
        options = {
            "epochs": epochs,
            "class_weight": {i: len(train_examples) / (len(counts) * c) for i, c in enumerate(counts) if c},
            "shuffle": False,  # the training dataset reshuffles itself every epoch
            "verbose": 2,
        }
        if not val_examples:
            history = model.fit(train_ds, **options).history
            return model, {k: [float(v) for v in values] for k, values in history.items()}
        val_ds = make_dataset(val_examples, self.image_size, self.batch_size)
        mode = "min" if self.spec.monitor == "val_loss" else "max"
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = Path(tmp) / "best.keras"
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                callbacks=[
                    # validate, checkpoint and finally keep the weights' moving average, not the raw weights
                    keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
                    ValidationMetrics(val_ds, np.array([e.label for e in val_examples])),
                    keras.callbacks.ModelCheckpoint(
                        checkpoint, monitor=self.spec.monitor, mode=mode, save_best_only=True
                    ),
                    keras.callbacks.EarlyStopping(monitor=self.spec.monitor, mode=mode, patience=self.patience),
                ],
                **options,
            ).history
            model = keras.saving.load_model(checkpoint)
        return model, {k: [float(v) for v in values] for k, values in history.items()}

    def train(self) -> keras.Model:
        """Train on the training split, keeping the best epoch on the validation split."""
        if not hasattr(self, "train_examples"):
            self.get_data()
        started = time.monotonic()
        self.model, self.history = self.fit(self.train_examples, self.val_examples, self.epochs)
        self.duration = time.monotonic() - started
        self.fold_histories = [self.history]
        self.best_epoch = self.best_epoch_of(self.history)
        log.info("kept epoch %d of %d (%s)", self.best_epoch, self.epochs_run, self.spec.monitor)
        self.val_labels = np.array([e.label for e in self.val_examples])
        self.val_probabilities = self.predict(self.val_examples)
        return self.model

    def cross_validate(self, folds: int) -> keras.Model:
        """Grouped, stratified k-fold validation; the shipped model averages the fold models.

        Each fold keeps its best epoch on its own validation part. The card reports
        every fold, the spread, and metrics pooled over the out-of-fold predictions
        (each image scored by the one fold model that never saw it): a fair, slightly
        pessimistic estimate for the average of all folds.
        """
        if not hasattr(self, "examples"):
            self.get_data()
        started = time.monotonic()
        index = {e.path: i for i, e in enumerate(self.examples)}
        self.val_labels = np.array([e.label for e in self.examples])
        self.val_probabilities = np.zeros((len(self.examples), len(self.spec.classes)), dtype=np.float32)
        self.fold_histories, self.fold_reports, members = [], [], []
        for fold in range(folds):
            train, val = split_by_group(self.examples, 1 / folds, self.seed, fold)
            model, history = self.fit(train, val, self.epochs)
            rows = [index[e.path] for e in val]
            self.val_probabilities[rows] = self.predict(val, model)
            best = self.best_epoch_of(history)
            report = scores.classification_report(
                self.val_labels[rows], self.val_probabilities[rows], self.spec.classes, None
            )
            members.append(model)
            self.fold_histories.append(history)
            self.fold_reports.append(FoldScores(fold=fold + 1, best_epoch=best, **dict(report)))
            log.info("fold %d/%d: best epoch %d, accuracy %.3f", fold + 1, folds, best, report.accuracy)
        self.best_epoch = int(np.median([r.best_epoch for r in self.fold_reports]))
        self.train_examples, self.val_examples = list(self.examples), list(self.examples)
        self.history = {}
        self.model = ensemble(members, name=self.dataset)
        self.duration = time.monotonic() - started
        return self.model

    def best_epoch_of(self, history: dict[str, list[float]]) -> int:
        """The epoch (from 1) that the checkpoint kept: the best of the monitored validation metric."""
        values = np.array(history[self.spec.monitor])
        return int(np.nanargmin(values) if self.spec.monitor == "val_loss" else np.nanargmax(values)) + 1

    @property
    def epochs_run(self) -> int:
        return max(len(history["loss"]) for history in self.fold_histories)

    def predict(self, examples: list[Example], model: keras.Model | None = None) -> np.ndarray:
        """Class probabilities for `examples`, in order, from `model` (default: the trained one)."""
        network = with_attention(model or self.model)
        probabilities, _ = network.predict(make_dataset(examples, self.image_size, self.batch_size), verbose=0)
        return probabilities

    def validate(self) -> scores.ValidationScores:
        """Choose the decision threshold and score the validation (or out-of-fold) predictions."""
        result = scores.validate(
            self.val_labels,
            self.val_probabilities,
            self.spec.classes,
            self.spec.positive_class,
            getattr(self, "fold_reports", ()),
        )
        self.threshold, self.threshold_rule, self.validation = result.threshold, result.threshold_rule, result.scores
        return self.validation

    def model_card(self, plot_files: dict[str, str]) -> ModelCard:
        today = dt.date.today().isoformat()
        return ModelCard(
            name=self.dataset,
            version=today,
            description=self.spec.description,
            intended_use=self.spec.intended_use,
            classes=list(self.spec.classes),
            positive_class=self.spec.positive_class,
            threshold=self.threshold,
            threshold_rule=self.threshold_rule,
            input=InputSpec(size=self.image_size, preprocessing=PREPROCESSING),
            validation=self.validation,
            training=TrainingRecord(
                dataset=self.dataset,
                source=f"kaggle:{self.spec.kaggle_slug} train split",
                train_size=len(self.train_examples),
                validation_size=len(self.val_examples),
                groups=len({e.group for e in self.examples}),
                file_list_sha256=file_list_hash(self.examples, self.root / "train"),
                epochs_run=self.epochs_run,
                best_epoch=self.best_epoch,
                seed=self.seed,
                date=today,
                duration_seconds=round(self.duration, 1),
                hyperparameters={
                    "batch_size": self.batch_size,
                    "learning_rate": self.learning_rate,
                    "weight_decay": self.weight_decay,
                    "validation_fraction": self.validation_fraction,
                    "patience": self.patience,
                    "checkpoint_metric": self.spec.monitor,
                    "max_epochs": self.epochs,
                    "schedule": "linear warm-up then cosine decay",
                    "shipped_model": f"average of the {self.folds} fold networks" if self.folds else "one network",
                    "weight_averaging": "exponential moving average over about the last epoch",
                    "class_weights": "inverse class frequency",
                },
                history=self.history,
                notes=self.spec.notes,
            ),
            libraries={
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "numpy": np.__version__,
                "pillow": PIL.__version__,
                "scikit-learn": sklearn.__version__,
            },
            plots=plot_files,
        )

    def deploy_model(self) -> Path:
        """Write ``<weights_dir>/<dataset>.keras``, its LiteRT export ``.tflite``, model card ``.json`` and plots."""
        if self.model is None:
            raise RuntimeError("nothing to deploy: train() first")
        self.validate()
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        stem = self.weights_dir / self.dataset
        plot_files = {
            "training_curves": f"{self.dataset}.training.png",
            "roc": f"{self.dataset}.roc.png",
            "confusion_matrix": f"{self.dataset}.confusion.png",
        }
        plots.training_curves(self.fold_histories, self.weights_dir / plot_files["training_curves"], self.best_epoch)
        plots.roc_curves(
            self.val_labels, self.val_probabilities, self.spec.classes, self.weights_dir / plot_files["roc"]
        )
        plots.confusion_matrix(
            self.validation.confusion_matrix, self.spec.classes, self.weights_dir / plot_files["confusion_matrix"]
        )
        self.model.save(stem.with_suffix(".keras"))
        export_litert(self.model, stem.with_suffix(".tflite"))
        self.model_card(plot_files).save(stem.with_suffix(".json"))
        log.info("deployed %s", stem.with_suffix(".keras"))
        return stem.with_suffix(".keras")

    def run(self) -> Path:
        """Get the data, train (cross-validated if the dataset asks for folds), and deploy."""
        self.get_data()
        try:
            if self.folds:
                self.cross_validate(self.folds)
            else:
                self.train()
        except tf.errors.OpError as exc:  # an image the input pipeline could not read
            reason = next((line for line in exc.message.splitlines() if "cannot read" in line), exc.message)
            raise UnreadableImageError(reason.split("UnreadableImageError: ")[-1].strip()) from exc
        return self.deploy_model()
