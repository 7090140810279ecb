"""`Train`: get a dataset, train the attention CNN on it, and deploy the weights with a model card.

Each step hands the next a frozen result: ``get_data() -> DataSplit``, ``train(split) -> FittedRun``,
``deploy_model(run) -> Path``; ``run()`` chains them. `write_typicality` recomputes a deployed model's
``<name>.typicality.npz`` (`model_typicality`), which `deploy_model` writes too.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from classifier import plots, scores
from classifier.card import FoldScores, build_card
from classifier.data import (
    DataSplit,
    group_near_duplicates,
    list_dataset,
    load_images,
    make_dataset,
    sampling_weights,
    split_by_group,
)
from classifier.datasets import DatasetSpec, get_dataset
from classifier.density import FeatureDensity
from classifier.errors import UserError
from classifier.export import export_litert
from classifier.inference import TYPICALITY_SUFFIX
from classifier.model import add_class_offsets, build_model, ensemble, serving_network, with_attention
from classifier.paths import DATA_DIR, WEIGHTS_DIR

log = logging.getLogger(__name__)

History = dict[str, list[float]]
"""Keras' per-epoch history: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``val_auc``."""


@dataclass(frozen=True, eq=False)
class FittedRun:
    """A trained model and its predictions on the images it was validated on."""

    split: DataSplit
    model: keras.Model
    histories: tuple[History, ...]
    """One per network trained: each fold's, or the one network's."""
    training_rows: np.ndarray
    """Rows of `split` the shipped model learnt from (every row when cross-validated)."""
    validation_rows: np.ndarray
    """Rows of `split` scored: the validation part, or every row, each by the fold network that never saw it."""
    probabilities: np.ndarray
    """Class probabilities of the validation rows, in order."""
    best_epoch: int
    """The epoch kept (from 1); the median over the folds when cross-validated."""
    duration_s: float
    folds: tuple[FoldScores, ...] = ()
    """Each fold's scores on its own validation part; empty without cross-validation."""

    @property
    def labels(self) -> np.ndarray:
        """Labels of the validation rows, in order."""
        return self.split.labels[self.validation_rows]

    @property
    def epochs_run(self) -> int:
        return max(len(history["loss"]) for history in self.histories)

    @property
    def history(self) -> History:
        """The shipped network's history; empty for an average of fold networks."""
        return {} if self.folds else self.histories[0]


class ValidationAUC(keras.callbacks.Callback):
    """Adds `val_auc` (ROC AUC on the validation split) and `val_worst_group_auc` (the lowest ROC AUC of the
    age groups it can be computed for) to each epoch's logs."""

    def __init__(self, dataset: tf.data.Dataset, labels: np.ndarray, age_groups: np.ndarray):
        super().__init__()
        self.dataset, self.labels, self.age_groups = dataset, labels, age_groups

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = self.model.predict(self.dataset, verbose=0)
        auc = scores.roc_auc(self.labels, probabilities)
        by_group = {
            group: scores.roc_auc(self.labels[rows], probabilities[rows])
            for group in np.unique(self.age_groups)
            if (rows := self.age_groups == group).any()
        }
        worst = float(np.nanmin([auc, *by_group.values()]))
        if logs is not None:
            logs["val_auc"], logs["val_worst_group_auc"] = auc, worst
        shown = " ".join(f"{group} {value:.4f}" for group, value in by_group.items())
        log.info("epoch %d: val_auc %.4f (%s)", epoch + 1, auc, shown)


def typicality_statistics(
    model: keras.Model, split: DataSplit, training_rows: np.ndarray, reference_rows: np.ndarray
) -> FeatureDensity:
    """The Gaussian of the served pooled features of `split`'s training rows, with the distances of the
    reference rows (the fitted rows themselves when they are the same) as `model_typicality`'s reference."""
    network = serving_network(model)

    def features(rows: np.ndarray) -> np.ndarray:
        return network.predict(split.images[rows], batch_size=256, verbose=0)["features"]

    same = np.array_equal(training_rows, reference_rows)
    return FeatureDensity.fit(features(training_rows), None if same else features(reference_rows))


def ema_momentum(steps_per_epoch: int) -> float:
    """Momentum of a weight average spanning about one epoch.

    Batch-norm statistics are not averaged, so the average must not lag far behind
    them: a small dataset, with a few steps an epoch, gets a short average.
    """
    return float(np.clip(1 - 1 / steps_per_epoch, 0.5, 0.99))


@dataclass
class Train:
    """Train one dataset's model: ``Train("pneumonia").run()`` or step by step.

    `data_dir` holds each of the dataset's sources in its own folder (`classifier.datasets.Source.folder`); a
    Kaggle source's folder that does not exist (or all of them, with `force_download`) is downloaded into it.
    Options left at None take the dataset's own setting (`classifier.datasets`).
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
    """Cross-validation folds (0: one patient-grouped validation split)."""
    seed: int = 1234
    weights_dir: Path = WEIGHTS_DIR
    spec: DatasetSpec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.spec = get_dataset(self.dataset)
        self.data_dir = Path(self.data_dir) if self.data_dir else DATA_DIR
        self.epochs = self.epochs or self.spec.epochs
        self.image_size = self.image_size or self.spec.image_size
        self.folds = self.spec.folds if self.folds is None else self.folds
        self.patience = self.patience or self.spec.patience

    def run(self) -> Path:
        """Get the data, train (cross-validated if the dataset asks for folds), and deploy."""
        return self.deploy_model(self.train(self.get_data()))

    def get_data(self) -> DataSplit:
        """Locate (or download) every source, load their images and split them by patient."""
        examples = list_dataset(self.spec, self.data_dir, self.force_download)
        images = load_images([e.path for e in examples], self.image_size)
        examples = group_near_duplicates(examples, images)
        train, validation = split_by_group(examples, self.validation_fraction, self.seed)
        split = DataSplit(self.data_dir, tuple(examples), images, train, validation)
        for part, rows in (("training", train), ("validation", validation)):
            counts = Counter(f"{examples[i].source}/{self.spec.classes[examples[i].label]}" for i in rows)
            log.info("%s: %d %s images %s", self.dataset, len(rows), part, dict(sorted(counts.items())))
        log.info("%s: %d patients or near-duplicate groups", self.dataset, split.groups)
        return split

    def train(self, split: DataSplit | None = None) -> FittedRun:
        """Train on the training part, keeping the best epoch on the validation part; a dataset with
        folds is cross-validated instead (`cross_validate`)."""
        split = self.get_data() if split is None else split
        if self.folds:
            return self.cross_validate(split)
        started = time.monotonic()
        model, history = self.fit(split, split.train, split.validation)
        best_epoch = self.best_epoch_of(history)
        log.info("kept epoch %d of %d (%s)", best_epoch, len(history["loss"]), self.spec.monitor)
        return FittedRun(
            split=split,
            model=model,
            histories=(history,),
            training_rows=split.train,
            validation_rows=split.validation,
            probabilities=self.predict(model, split.images[split.validation]),
            best_epoch=best_epoch,
            duration_s=time.monotonic() - started,
        )

    def cross_validate(self, split: DataSplit) -> FittedRun:
        """Grouped, stratified k-fold validation; the shipped model averages the fold models.

        Each fold keeps its best epoch on its own validation part. The card reports
        every fold, the spread, and scores pooled over the out-of-fold predictions
        (each image scored by the one fold model that never saw it): a fair, slightly
        pessimistic estimate for the average of all folds.
        """
        started = time.monotonic()
        probabilities = np.zeros((len(split.examples), len(self.spec.classes)), dtype=np.float32)
        histories, folds, members = [], [], []
        for fold in range(self.folds):
            train, validation = split_by_group(split.examples, 1 / self.folds, self.seed, fold)
            model, history = self.fit(split, train, validation)
            probabilities[validation] = self.predict(model, split.images[validation])
            report = scores.classification_report(
                split.labels[validation], probabilities[validation], self.spec.classes, None
            )
            folds.append(FoldScores(fold=fold + 1, best_epoch=self.best_epoch_of(history), **dict(report)))
            histories.append(history)
            members.append(model)
            log.info(
                "fold %d/%d: best epoch %d, accuracy %.3f", fold + 1, self.folds, folds[-1].best_epoch, report.accuracy
            )
        every_row = np.arange(len(split.examples))
        return FittedRun(
            split=split,
            model=ensemble(members, name=self.dataset),
            histories=tuple(histories),
            training_rows=every_row,
            validation_rows=every_row,
            probabilities=probabilities,
            best_epoch=int(np.median([f.best_epoch for f in folds])),
            duration_s=time.monotonic() - started,
            folds=tuple(folds),
        )

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

    def fit(self, split: DataSplit, train: np.ndarray, validation: np.ndarray) -> tuple[keras.Model, History]:
        """Fit a new model on the `train` rows of `split`, drawn as the dataset's `balance` says, with warm-up +
        cosine learning-rate decay and weight averaging; keep the epoch with the best validation score and stop
        early when it stalls.
        """
        keras.utils.set_random_seed(self.seed)
        labels = split.labels
        weights = sampling_weights(
            [split.examples[i] for i in train], len(self.spec.classes), self.spec.balance, self.spec.max_oversampling
        )
        epoch_size = self.spec.epoch_size or len(train)
        train_ds = make_dataset(
            split.images[train],
            labels[train],
            self.batch_size,
            self.seed,
            weights=weights,
            epoch_size=epoch_size,
            epochs=self.epochs,
        )
        val_ds = make_dataset(split.images[validation], labels[validation], self.batch_size)
        steps_per_epoch = int(np.ceil(epoch_size / self.batch_size))
        steps = steps_per_epoch * self.epochs
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
        mode = "min" if self.spec.monitor == "val_loss" else "max"
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = Path(tmp) / "best.keras"
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=self.epochs,
                steps_per_epoch=steps_per_epoch,
                shuffle=False,  # the training stream is drawn at random already
                verbose=2,
                callbacks=[
                    # validate, checkpoint and finally keep the weights' moving average, not the raw weights
                    keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
                    ValidationAUC(
                        val_ds, labels[validation], np.array([split.examples[i].age_group for i in validation])
                    ),
                    keras.callbacks.ModelCheckpoint(
                        checkpoint, monitor=self.spec.monitor, mode=mode, save_best_only=True
                    ),
                    keras.callbacks.EarlyStopping(monitor=self.spec.monitor, mode=mode, patience=self.patience),
                ],
            ).history
            model = keras.saving.load_model(checkpoint)
        return model, {k: [float(v) for v in values] for k, values in history.items()}

    def best_epoch_of(self, history: History) -> int:
        """The epoch (from 1) that the checkpoint kept: the best of the monitored validation score."""
        values = np.array(history[self.spec.monitor])
        return int(np.nanargmin(values) if self.spec.monitor == "val_loss" else np.nanargmax(values)) + 1

    def predict(self, model: keras.Model, images: np.ndarray) -> np.ndarray:
        """Class probabilities of preprocessed `images`, in order."""
        probabilities, _ = with_attention(model).predict(images, batch_size=self.batch_size, verbose=0)
        return probabilities

    def deploy_model(self, run: FittedRun) -> Path:
        """Choose the threshold (or an argmax model's class offsets, folded into its output layer) and score the
        validation predictions, then write ``<weights_dir>/<dataset>.keras``,
        its LiteRT export ``.tflite``, the model card ``.json`` and its plots."""
        examples = [run.split.examples[i] for i in run.validation_rows]
        age_groups = [e.age_group for e in examples]
        offsets = None
        if not self.spec.positive_class:
            offsets = scores.choose_class_offsets(
                run.labels, run.probabilities, age_groups, self.spec.classes, self.spec.recall_floors
            )
            log.info("class offsets %s (%s)", dict(zip(self.spec.classes, offsets.offsets, strict=True)), offsets.rule)
            add_class_offsets(run.model, offsets.offsets)
            run = replace(run, probabilities=offsets.apply(run.probabilities))
        validation = scores.validate(
            run.labels,
            run.probabilities,
            self.spec.classes,
            self.spec.positive_class,
            run.folds,
            sources=[e.source for e in examples],
            age_groups=age_groups,
            class_offsets=offsets,
        )
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        stem = self.weights_dir / self.dataset
        plot_files = plots.write_plots(self.weights_dir, self.dataset, run, validation, self.spec.classes)
        run.model.save(stem.with_suffix(".keras"))
        export_litert(run.model, stem.with_suffix(".tflite"))
        typicality_statistics(run.model, run.split, run.training_rows, run.validation_rows).save(
            self.weights_dir / f"{self.dataset}{TYPICALITY_SUFFIX}"
        )
        card = build_card(
            self.spec,
            run,
            validation,
            image_size=self.image_size,
            seed=self.seed,
            hyperparameters=self.hyperparameters(),
            plots=plot_files,
        )
        card.save(stem.with_suffix(".json"))
        log.info("deployed %s", stem.with_suffix(".keras"))
        return stem.with_suffix(".keras")

    def write_typicality(self) -> Path:
        """Recompute the deployed model's training split (same data, seed and split as its training) and write
        ``<weights_dir>/<dataset>.typicality.npz``: the Gaussian of its training images' pooled features, with
        the validation images as the reference (every image when cross-validated: each fold saw most of them)."""
        path = self.weights_dir / f"{self.dataset}.keras"
        if not path.is_file():
            raise UserError(f"{path} not found: train it first (python -m classifier train --dataset {self.dataset})")
        split = self.get_data()
        every_row = np.arange(len(split.examples))
        training, reference = (every_row, every_row) if self.folds else (split.train, split.validation)
        density = typicality_statistics(keras.saving.load_model(path), split, training, reference)
        return density.save(self.weights_dir / f"{self.dataset}{TYPICALITY_SUFFIX}")

    def hyperparameters(self) -> dict[str, float | int | str]:
        """The training recipe, as the model card records it."""
        return {
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
            "epoch_size": self.spec.epoch_size or "the training part's size",
            "sampling": "each class equally often"
            if self.spec.balance == "class"
            else f"each (source, class) pair equally often, at most {self.spec.max_oversampling:g}x class balance",
        }
