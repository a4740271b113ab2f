"""Multi-worker training with ``MultiWorkerMirroredStrategy`` through a custom loop, and TF_CONFIG helpers.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` on TF 2.21 (keras-team/keras#20585:
"Attempt to convert a value (PerReplica ...)"), so this module trains with its own loop: model and
optimizer built under ``strategy.scope()``, ``strategy.experimental_distribute_dataset``, a
``tf.function`` step calling ``strategy.run`` and ``strategy.reduce``. Every worker validates on the whole
validation fold each epoch and the workers agree on one value through an all-reduce, so they keep the same
best weights and stop at the same epoch. The chief writes the run directory (``model.keras``,
``metrics.json``, ``config.yaml``, checkpoint, logs, plots); every other worker writes its config, log,
best weights and metrics to its own scratch folder ``<runs_dir>/_workers/<name>-<task>-<index>``.
After every epoch each worker backs up its whole training state (weights, optimizer, best weights, early
stopping) under ``checkpoints/backup``; started again with the same config, the workers continue from the
newest epoch all of them saved (the chief reopens its unfinished run directory).

Each worker runs the same command with its own ``TF_CONFIG``, e.g. on two machines::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        age-estimation train --config pipelines/default.yaml --set runtime.strategy=multi_worker --no-export
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import yaml

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig, TrainConfig, save_config, to_dict
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import SplitData, build_split_datasets
from age_estimation.evaluation.predictions import collect_predictions, write_predictions_csv
from age_estimation.models.siam.model import build_siam
from age_estimation.runs import CONFIG_NAME, METRICS_NAME, MODEL_NAME, PREDICTIONS_NAME, new_run_dir
from age_estimation.training.callbacks import cycle_inputs, read_history, recalibrate_batch_norm
from age_estimation.training.fit import (
    TrainingError,
    TrainResult,
    age_prior,
    age_targets,
    age_view,
    crop_size_of,
    find_unfinished_run,
    run_metrics,
    save_model_atomic,
)
from age_estimation.training.optim import make_loss, make_optimizer

BEST_WEIGHTS = "best.weights.h5"
BACKUP_DIR = "backup"  # under checkpoints/, where train.find_unfinished_run looks for an unfinished run
HISTORY_COLUMNS = ("epoch", "age_mae", "loss", "val_age_mae", "val_loss", "seconds")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for local clusters in tests and demos)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tf_config(workers: list[str], index: int, task_type: str = "worker", chief: str | None = None) -> dict[str, Any]:
    """The ``TF_CONFIG`` mapping for task ``(task_type, index)`` of a cluster of ``workers`` (+ optional chief)."""
    cluster: dict[str, list[str]] = {"worker": list(workers)}
    if chief:
        cluster["chief"] = [chief]
    members = cluster.get(task_type)
    if members is None or not 0 <= index < len(members):
        raise ValueError(f"task {task_type}:{index} is not in the cluster {cluster}")
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def local_cluster(num_workers: int, host: str = "127.0.0.1") -> list[str]:
    """One ``TF_CONFIG`` JSON string per worker of a cluster on this machine (free ports picked now)."""
    if num_workers < 1:
        raise ValueError(f"a cluster needs at least one worker, got {num_workers}")
    workers = [f"{host}:{free_port(host)}" for _ in range(num_workers)]
    return [json.dumps(tf_config(workers, i)) for i in range(num_workers)]


def is_chief(task_type: str | None, task_id: int | None, cluster: dict[str, Any] | None = None) -> bool:
    """The chief writes the run directory: task ``chief``, or worker 0 of a cluster without a chief."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in (cluster or {})


def train_multi_worker(cfg: PipelineConfig, split: SplitData | None = None, run_dir: Path | None = None) -> TrainResult:
    """Train ``cfg`` on every worker of ``TF_CONFIG`` in lockstep; the chief writes the run directory.

    Without ``TF_CONFIG`` it trains as a one-worker cluster. Returns the same ``TrainResult`` as
    ``train.train``; on non-chief workers ``run_dir`` is the worker's scratch folder. A ``split`` passed in
    must give every worker the same batch order (a seeded training dataset).
    """
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    chief = is_chief(task_type, task_id, resolver.cluster_spec().as_dict())
    run_dir = _worker_dir(cfg, run_dir, chief, task_type, task_id)

    # Every worker must see the same batches in the same order: DATA sharding splits each global batch.
    split = split or build_split_datasets(cfg, seed=cfg.runtime.seed, repeat_train=True)
    index = read_index(split.cache_dir)
    steps = cfg.train.steps_per_epoch or split.steps_per_epoch
    train_ages = np.array([index["videos"][v]["age"] for v in split.train_ids], float)
    prior, crop = age_prior(train_ages), crop_size_of(index)
    print(f"multi-worker training: task {task_type}:{task_id}, {strategy.num_replicas_in_sync} replica(s), "
          f"{'chief' if chief else 'worker'}; writing {run_dir}")

    with strategy.scope():
        model = build_siam(cfg.model, crop_size=crop, age_prior=prior)
        fitted = age_view(model)
        optimizer = make_optimizer(cfg.train, steps)
        if cfg.runtime.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(fitted.trainable_variables)
    loop = _Loop(strategy, model, fitted, optimizer, make_loss(cfg.train), cfg.data.batch_size)

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_iter = iter(strategy.experimental_distribute_dataset(age_targets(split.train).with_options(options)))
    val_ds = age_targets(split.val)

    progress = _restore(loop, run_dir / "checkpoints" / BACKUP_DIR)
    # Training batches for the BN recalibration before each validation (averaged over the workers).
    loop.recalibration = cycle_inputs(age_targets(split.train))
    history, best, stopped_at = _fit(cfg, loop, train_iter, val_ds, steps, run_dir, chief, progress)
    if best is None:
        raise TrainingError(f"{run_dir}: no epoch reached a finite validation MAE, so there is no model to save")

    # A plain (undistributed) copy with the best weights: evaluated and saved with no collectives.
    final = build_siam(cfg.model, crop_size=crop, age_prior=prior)
    final.set_weights(best)
    age_view(final).save_weights(run_dir / "checkpoints" / BEST_WEIGHTS)
    heldout = collect_predictions(final, split.cache_dir, split.heldout_ids, cfg.data,
                                  keep_frames=8 if chief else 0, test_time_flip=cfg.inference.test_time_flip)
    metrics = run_metrics(cfg, split, index, heldout, train_ages, run_dir, history["seconds"], stopped_at)
    metrics["distribution"] = {"strategy": "multi_worker", "task": f"{task_type}:{task_id}",
                               "replicas": strategy.num_replicas_in_sync, "chief": chief}
    write_json_atomic(run_dir / METRICS_NAME, metrics)
    if chief:
        write_predictions_csv(run_dir / PREDICTIONS_NAME, heldout, index)
        save_model_atomic(final, run_dir / MODEL_NAME)
        from age_estimation.evaluation.plots import plot_run

        plot_run(run_dir, heldout, read_history(run_dir))
    shutil.rmtree(run_dir / "checkpoints" / BACKUP_DIR, ignore_errors=True)
    loop.agree(0.0)  # a barrier: no worker leaves (and stops its heartbeat) before the chief has written
    return TrainResult(run_dir=run_dir, model=final, metrics=metrics, heldout=heldout)


class _Loop:
    """The distributed train step and the local evaluation of one model."""

    def __init__(self, strategy: tf.distribute.Strategy, full: keras.Model, model: keras.Model, optimizer: Any,
                 loss: Any, global_batch: int):
        self.strategy, self.model, self.optimizer, self.loss = strategy, model, optimizer, loss
        self.full = full  # the dict-output model whose weights are kept (``model``, its age view, shares them)
        self.global_batch = global_batch
        self.scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.recalibration: Callable[[], Any] | None = None  # training inputs for BN recalibration

    @contextmanager
    def kept_weights(self, train: TrainConfig) -> Iterator[None]:
        """Within the block the model holds the weights a run keeps, as ``fit``'s callbacks arrange.

        That is the optimizer's EMA (``train.ema``) with BN statistics recomputed for it
        (``train.bn_recalibration_batches``); the training weights and statistics come back after.
        """
        recalibrate = self.recalibration is not None and train.bn_recalibration_batches > 0
        if not (train.ema or recalibrate):
            yield
            return
        training_state = [variable.numpy() for variable in self.full.variables]
        try:
            if train.ema:
                self.optimizer.finalize_variable_values(self.model.trainable_variables)
            if recalibrate:
                recalibrate_batch_norm(self.full, self.recalibration, train.bn_recalibration_batches)
                self.sync_state()  # workers' augmented batches differ: average, so all keep the same model
            yield
        finally:
            for variable, value in zip(self.full.variables, training_state):
                variable.assign(value)

    def _replica_step(self, inputs: dict[str, tf.Tensor], ages: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            pred = tf.cast(self.model(inputs, training=True), tf.float32)
            per_example = self.loss.call(ages, pred)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled = self.optimizer.scale_loss(loss) if self.scaled else loss
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return loss, tf.reduce_sum(tf.abs(ages - pred))

    @tf.function
    def train_step(self, iterator: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """One global batch on every replica; returns the mean loss and the summed absolute error."""
        loss, abs_error = self.strategy.run(self._replica_step, args=next(iterator))
        total = tf.distribute.ReduceOp.SUM
        return self.strategy.reduce(total, loss, axis=None), self.strategy.reduce(total, abs_error, axis=None)

    @tf.function
    def _predict(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.cast(self.model(inputs, training=False), tf.float32)

    def evaluate(self, ds: tf.data.Dataset) -> tuple[float, float]:
        """Mean loss and MAE over a whole (finite) dataset, on this worker alone."""
        loss_sum, error_sum, count = 0.0, 0.0, 0
        for inputs, ages in ds:
            pred = self._predict(inputs)
            loss_sum += float(tf.reduce_sum(self.loss.call(ages, pred)))
            error_sum += float(tf.reduce_sum(tf.abs(ages - pred)))
            count += int(ages.shape[0])
        return loss_sum / max(count, 1), error_sum / max(count, 1)

    def agree(self, value: float) -> float:
        """The mean of ``value`` over all replicas, so every worker takes the same decision."""
        return float(self._all_mean(tf.constant(value, tf.float32)))

    def sync_state(self) -> None:
        """Average the non-trainable state (BatchNorm moving statistics) over all replicas.

        Gradients are all-reduced, so trainable weights stay identical; the moving statistics are updated
        from each replica's own shard and drift apart unless averaged.
        """
        if self.model.non_trainable_variables:
            self._sync_state()

    @tf.function
    def _sync_state(self) -> None:
        for variable in self.model.non_trainable_variables:
            local = self.strategy.run(tf.identity, args=(variable.value,))
            variable.assign(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None))

    def agree_min(self, value: int) -> int:
        """The smallest ``value`` over all workers."""
        return int(tf.reduce_min(self._all_gather(tf.constant([value], tf.int64))))

    @tf.function
    def _all_gather(self, value: tf.Tensor) -> tf.Tensor:
        return self.strategy.gather(self.strategy.run(tf.identity, args=(value,)), axis=0)

    @tf.function
    def _all_mean(self, value: tf.Tensor) -> tf.Tensor:
        per_replica = self.strategy.run(tf.identity, args=(value,))
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)


@dataclass
class _Progress:
    """Where training stands after ``epoch`` (-1: nothing done): best weights and early-stopping count."""

    epoch: int = -1
    best: list[np.ndarray] | None = None
    best_mae: float = math.inf
    wait: int = 0


def _fit(
    cfg: PipelineConfig, loop: _Loop, train_iter: Any, val_ds: tf.data.Dataset, steps: int, run_dir: Path,
    chief: bool, progress: _Progress,
) -> tuple[dict[str, float], list[np.ndarray] | None, tuple[int, int] | None]:
    """Epochs of training with validation, best-weights tracking, early stopping, a NaN stop and a backup."""
    log_path = run_dir / "logs" / "training.csv"
    _truncate_log(log_path, progress.epoch)
    writer = tf.summary.create_file_writer(str(run_dir / "logs" / "validation")) if chief else None
    stopped_at = None
    started = time.perf_counter()
    with open(log_path, "a", newline="") as handle:
        log = csv.writer(handle)
        for epoch in range(progress.epoch + 1, cfg.train.epochs):
            epoch_start = time.perf_counter()
            loss_sum, error_sum = 0.0, 0.0
            for step in range(steps):
                loss, abs_error = loop.train_step(train_iter)
                if not math.isfinite(float(loss)):
                    stopped_at = (epoch, step)
                    break
                loss_sum, error_sum = loss_sum + float(loss), error_sum + float(abs_error)
            if stopped_at:
                print(f"error: loss became non-finite at epoch {epoch + 1}, batch {stopped_at[1] + 1}; training "
                      "stopped. The best weights so far are kept. Lower train.learning_rate or check the data.")
                break
            loop.sync_state()
            with loop.kept_weights(cfg.train):
                val_loss, val_mae = loop.evaluate(val_ds)
                val_mae = loop.agree(val_mae)
                validated = loop.full.get_weights()
            row = {"epoch": epoch, "age_mae": error_sum / (steps * loop.global_batch), "loss": loss_sum / steps,
                   "val_age_mae": val_mae, "val_loss": val_loss, "seconds": time.perf_counter() - epoch_start}
            log.writerow([row[key] for key in HISTORY_COLUMNS])
            handle.flush()
            _summaries(writer, row)
            print(f"epoch {epoch + 1}/{cfg.train.epochs}: loss {row['loss']:.3f}, mae {row['age_mae']:.2f}, "
                  f"val_mae {val_mae:.2f} ({row['seconds']:.1f}s)", flush=True)
            progress.epoch = epoch
            if math.isfinite(val_mae) and val_mae < progress.best_mae:
                progress.best, progress.best_mae, progress.wait = validated, val_mae, 0
            else:
                progress.wait += 1
            _backup(loop, run_dir / "checkpoints" / BACKUP_DIR, progress)
            if progress.wait >= cfg.train.early_stopping_patience:
                print(f"early stopping after epoch {epoch + 1}: no improvement in {progress.wait} epochs")
                break
    return {"seconds": time.perf_counter() - started}, progress.best, stopped_at


def _backup(loop: _Loop, folder: Path, progress: _Progress) -> None:
    """Save this worker's full training state after an epoch (atomically, keeping the last two epochs).

    Each worker keeps its own copy (the states are identical), as TF's multi-worker guidance asks.
    """
    target = folder / f"epoch-{progress.epoch:05d}"
    tmp = folder / f".epoch-{progress.epoch:05d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.savez(tmp / "model.npz", *loop.full.get_weights())
    np.savez(tmp / "optimizer.npz", *[np.asarray(v) for v in loop.optimizer.variables])
    if progress.best is not None:
        np.savez(tmp / "best.npz", *progress.best)
    write_json_atomic(tmp / "state.json", {"epoch": progress.epoch, "best_mae": progress.best_mae,
                                           "wait": progress.wait})
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for old in _backup_epochs(folder)[:-2]:
        shutil.rmtree(folder / f"epoch-{old:05d}", ignore_errors=True)


def _restore(loop: _Loop, folder: Path) -> _Progress:
    """Continue from the newest epoch that every worker has backed up, or start afresh.

    A kill can land between two workers' backups of one epoch, so the workers agree on the oldest newest
    epoch (each keeps two) and drop anything later.
    """
    epochs = _backup_epochs(folder)
    agreed = loop.agree_min(epochs[-1] if epochs else -1)
    for later in (e for e in epochs if e > agreed):
        shutil.rmtree(folder / f"epoch-{later:05d}", ignore_errors=True)
    if agreed < 0:
        return _Progress()
    source = folder / f"epoch-{agreed:05d}"
    if not source.is_dir():
        raise TrainingError(f"{source}: the workers' backups disagree (this worker lacks epoch {agreed + 1}); "
                            f"delete {folder} on every worker to start over")
    state = json.loads((source / "state.json").read_text())
    loop.full.set_weights(_load_arrays(source / "model.npz"))
    for variable, value in zip(loop.optimizer.variables, _load_arrays(source / "optimizer.npz")):
        variable.assign(value)
    best = _load_arrays(source / "best.npz") if (source / "best.npz").is_file() else None
    print(f"resuming multi-worker training after epoch {agreed + 1} from {source}")
    return _Progress(epoch=agreed, best=best, best_mae=float(state["best_mae"]), wait=int(state["wait"]))


def _backup_epochs(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("epoch-*") if (p / "state.json").is_file())


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def _truncate_log(path: Path, last_epoch: int) -> None:
    """Keep the header and the rows of epochs up to ``last_epoch`` (a resumed run rewrites later ones)."""
    rows = []
    if path.is_file() and last_epoch >= 0:
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(float(r["epoch"])) <= last_epoch]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _summaries(writer: Any, row: dict[str, float]) -> None:
    if writer is None:
        return
    with writer.as_default(step=int(row["epoch"])):
        for key in ("loss", "age_mae", "val_loss", "val_age_mae"):
            tf.summary.scalar(f"epoch_{key}", row[key])
    writer.flush()


def _worker_dir(cfg: PipelineConfig, run_dir: Path | None, chief: bool, task_type: str | None,
                task_id: int | None) -> Path:
    """The chief's run directory (an unfinished one of the same config is resumed), or a worker's scratch folder.

    A backup left by a different config is removed; the resolved config is (re)written.
    """
    if not chief:
        path = Path(cfg.runtime.runs_dir) / "_workers" / f"{cfg.name}-{task_type}-{task_id}"
    elif run_dir is not None:
        path = Path(run_dir)
    else:
        path = find_unfinished_run(cfg) or new_run_dir(cfg.runtime.runs_dir, cfg.name)
    for sub in ("checkpoints", "plots", "logs"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    config = path / CONFIG_NAME
    if config.is_file() and yaml.safe_load(config.read_text()) != to_dict(cfg):
        shutil.rmtree(path / "checkpoints" / BACKUP_DIR, ignore_errors=True)
    save_config(cfg, config)
    return path
