"""Training callbacks, the one set both training paths run: Keras' own, plus the state they lose on a restart.

``fit`` drives them itself; the multi-worker loop drives them through ``keras.callbacks.CallbackList``
with the same logs. ``BackupAndRestore`` restores weights, optimizer state and the epoch after a crash,
but ``ModelCheckpoint`` and ``EarlyStopping`` start over and would overwrite a better checkpoint with a
worse one. ``ResumeState`` saves their bookkeeping every epoch and puts it back on restart.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import TrainConfig
from age_estimation.training.task import AGE_METRIC

MONITOR = f"val_{AGE_METRIC}"
BEST_WEIGHTS = "best.weights.h5"  # under checkpoints/: the weights a run keeps
RESUME_STATE = "resume_state.json"  # under checkpoints/: ResumeState's bookkeeping


class ResumeState(keras.callbacks.Callback):
    """Persist ``ModelCheckpoint.best`` and ``EarlyStopping``'s best/wait across a killed run."""

    def __init__(self, path: Path, checkpoint: keras.callbacks.ModelCheckpoint, stopper: keras.callbacks.EarlyStopping):
        super().__init__()
        self.path, self.checkpoint, self.stopper = Path(path), checkpoint, stopper

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.path.is_file():
            return
        state = json.loads(self.path.read_text())
        self.checkpoint.best = state["best"]
        self.stopper.best = state["best"]
        self.stopper.best_epoch = state["best_epoch"]
        self.stopper.wait = state["wait"]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        write_json_atomic(
            self.path,
            {"best": float(self.checkpoint.best), "best_epoch": int(self.stopper.best_epoch),
             "wait": int(self.stopper.wait), "epoch": epoch},
        )


class NanGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss, say so, and leave the best checkpoint as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_at = (self._epoch, batch)
            print(
                f"\nerror: loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}; training "
                "stopped. The best checkpoint so far is kept. Lower train.learning_rate or check the data."
            )
            self.model.stop_training = True


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """Recompute BatchNormalization statistics for the weights about to be validated and checkpointed.

    The weight EMA averages trainable weights only, so the moving statistics describe the raw weights,
    not the averaged ones that validation and the checkpoint use. Before each validation (after
    ``SwapEMAWeights``) this runs ``batches`` training batches through the model and sets each BN
    layer's statistics to their plain average, as SWA's ``update_bn`` does.
    """

    def __init__(self, batches: Any, count: int, synchronise: Callable[[], None] | None = None):
        super().__init__()
        self.batches, self.count = batches, int(count)
        self.synchronise = synchronise  # run after recalibrating, e.g. to average the statistics over workers
        self._next_inputs: Callable[[], Any] | None = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._next_inputs is None:
            self._next_inputs = cycle_inputs(self.batches)
        recalibrate_batch_norm(self.model, self._next_inputs, self.count)
        if self.synchronise is not None:
            self.synchronise()


def cycle_inputs(batches: Any) -> Callable[[], Any]:
    """A function returning the inputs of the next ``(inputs, targets)`` batch, restarting a finite dataset."""
    iterator = iter(batches)

    def next_inputs() -> Any:
        nonlocal iterator
        try:
            return next(iterator)[0]
        except StopIteration:
            iterator = iter(batches)
            return next(iterator)[0]

    return next_inputs


def recalibrate_batch_norm(model: keras.Model, next_inputs: Callable[[], Any], count: int) -> None:
    """Set every BN layer's statistics of ``model`` to their plain average over ``count`` training batches."""
    layers = batch_norm_layers(model)
    if not layers or count < 1:
        return
    saved = [layer.momentum for layer in layers]
    try:
        for step in range(count):
            for layer in layers:  # a running mean: the k-th batch gets weight 1/k
                layer.momentum = step / (step + 1.0)
            model(next_inputs(), training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer in ``model``, nested models (backbones) included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def make_callbacks(
    train: TrainConfig,
    run_dir: Path,
    steps_per_epoch: int,
    resuming: bool,
    train_batches: Any = None,
    backup: keras.callbacks.Callback | None = None,
    synchronise: Callable[[], None] | None = None,
) -> tuple[list[keras.callbacks.Callback], NanGuard]:
    """The standard set: NaN stop, backup, best checkpoint, early stopping, LR plateau, CSV, TensorBoard.

    ``backup`` replaces ``BackupAndRestore`` (which only ``fit`` can drive) and ``synchronise`` runs after
    each BN recalibration (see ``weight_averaging_callbacks``). With ``train.ema`` the EMA weights are
    swapped in for validation and at each epoch's end, before the best checkpoint is saved, so the
    checkpoint (and the final model) holds the averaged weights. ReduceLROnPlateau (``train.schedule``
    plateau) comes before the CSV log, so the log has the learning rate of every epoch.
    """
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = keras.callbacks.ModelCheckpoint(
        ckpt_dir / BEST_WEIGHTS, monitor=MONITOR, mode="min", save_best_only=True, save_weights_only=True
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="min", patience=train.early_stopping_patience, restore_best_weights=False
    )
    nan_guard = NanGuard()
    if backup is None:
        backup = keras.callbacks.BackupAndRestore(
            str(ckpt_dir / "backup"), save_freq=max(1, steps_per_epoch // 4), double_checkpoint=True
        )
    callbacks: list[keras.callbacks.Callback] = [
        nan_guard,
        backup,
        *weight_averaging_callbacks(train, train_batches, synchronise),
        checkpoint,
        stopper,
        ResumeState(ckpt_dir / RESUME_STATE, checkpoint, stopper),
    ]
    if train.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=MONITOR, mode="min", factor=0.5, patience=2, min_lr=1e-5)
        )
    callbacks += [
        keras.callbacks.CSVLogger(str(run_dir / "logs" / "training.csv"), append=resuming),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False, profile_batch=0),
    ]
    return callbacks, nan_guard


def weight_averaging_callbacks(
    train: TrainConfig, train_batches: Any = None, synchronise: Callable[[], None] | None = None
) -> list[keras.callbacks.Callback]:
    """Validate the weights a run keeps: the EMA swapped in (``train.ema``), BN statistics recomputed for it.

    Put them before any callback that saves or scores the model at an epoch's end (checkpoint, tuner).
    ``synchronise`` runs after each recalibration (the multi-worker loop averages the statistics there).
    """
    callbacks: list[keras.callbacks.Callback] = []
    if train.ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if train_batches is not None and train.bn_recalibration_batches > 0:
        callbacks.append(RecalibrateBatchNorm(train_batches, train.bn_recalibration_batches, synchronise))
    return callbacks


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """The per-epoch training log (CSV) as columns; empty when the run logged nothing."""
    path = Path(run_dir) / "logs" / "training.csv"
    if not path.is_file():
        return {}
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, Any] = {key: [] for key in (rows[0] if rows else {})}
    for row in rows:
        for key, value in row.items():
            columns[key].append(float(value) if value not in ("", None) else float("nan"))
    return columns
