"""Multi-worker training with ``MultiWorkerMirroredStrategy``: a custom loop that drives ``fit``'s callbacks.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` on TF 2.21 (keras-team/keras#20585:
"Attempt to convert a value (PerReplica ...)"), so this module runs the epochs itself: the model is
built and compiled under ``strategy.scope()`` (the same loss, metric and optimizer as ``fit``), each
step is a ``tf.function`` calling ``strategy.run`` on the model's own ``compute_loss`` and
``strategy.reduce``. The callbacks are ``fit``'s (``callbacks.make_callbacks``: NaN stop, EMA swap, BN
recalibration, best checkpoint, early stopping, LR plateau, CSV and TensorBoard logs), driven through
``keras.callbacks.CallbackList`` with the logs ``fit`` gives them. Every worker validates on the whole
validation fold and the workers agree on the figures through an all-reduce before any callback sees
them, so they keep the same best weights, lower the learning rate and stop at the same epoch.

Two pieces stay specific to this loop: BatchNorm statistics are averaged over the workers after each
epoch's steps and after each recalibration (each worker updates them from its own shard), and
``WorkerBackup`` replaces ``BackupAndRestore`` (which needs ``fit``'s internals): after every epoch each
worker backs up its whole training state under ``checkpoints/backup``; started again with the same
config, the workers continue from the newest epoch all of them saved (the chief reopens its unfinished
run directory). The chief writes the run directory (``model.keras``, ``metrics.json``, ``config.yaml``,
checkpoint, logs, plots); every other worker writes its config, logs, best weights and metrics to its
own scratch folder ``<runs_dir>/_workers/<name>-<task>-<index>``.

Each worker runs the same command with its own ``TF_CONFIG`` (see :mod:`age_estimation.training.cluster`),
e.g. on two machines::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        age-estimation train --config pipelines/default.yaml --set runtime.strategy=multi_worker --no-export
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig, same_config, save_config
from age_estimation.data.pipeline import SplitData, build_split_datasets
from age_estimation.runs import CONFIG_NAME, new_run_dir
from age_estimation.training.callbacks import BEST_WEIGHTS, RESUME_STATE, make_callbacks
from age_estimation.training.cluster import is_chief
from age_estimation.training.run import (
    BACKUP_DIR,
    TrainResult,
    find_unfinished_run,
    finish,
    make_run_folders,
    recalibration_batches,
    set_up,
)
from age_estimation.training.runtime import progress_verbosity
from age_estimation.training.task import AGE_METRIC, TrainingError, age_targets


def train_multi_worker(
    cfg: PipelineConfig,
    split: SplitData | None = None,
    run_dir: Path | None = None,
    resume: bool = True,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train ``cfg`` on every worker of ``TF_CONFIG`` in lockstep; the chief writes the run directory.

    Without ``TF_CONFIG`` it trains as a one-worker cluster. Returns the same ``TrainResult`` as
    ``fit.train``; on non-chief workers ``run_dir`` is the worker's scratch folder. A ``split`` passed in
    must give every worker the same batch order (a seeded training dataset).
    """
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    chief = is_chief(task_type, task_id, resolver.cluster_spec().as_dict())
    run_dir = _worker_dir(cfg, run_dir, resume, chief, task_type, task_id)

    # Every worker must see the same batches in the same order: DATA sharding splits each global batch.
    split = split or build_split_datasets(cfg, seed=cfg.runtime.seed, repeat_train=True,
                                          landmarks=cfg.model.reads_landmarks)
    session = set_up(cfg, split, run_dir, strategy)
    print(f"multi-worker training: task {task_type}:{task_id}, {strategy.num_replicas_in_sync} replica(s), "
          f"{'chief' if chief else 'worker'}; writing {run_dir}")
    loop = _Loop(strategy, session.fitted, age_targets(split.val, session.fitted))

    backup = WorkerBackup(run_dir / "checkpoints" / BACKUP_DIR)
    initial_epoch = backup.restore(session.fitted, loop.agree_min)
    callbacks, nan_guard = make_callbacks(
        cfg.train, run_dir, session.steps, resuming=initial_epoch > 0,
        train_batches=recalibration_batches(cfg, split, session.fitted),
        backup=backup.snapshot, synchronise=loop.sync_state,
    )
    verbose = progress_verbosity(verbose)
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, backup], add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=cfg.train.epochs, steps=session.steps, model=session.fitted,
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_batches = age_targets(split.train, session.fitted).with_options(options)
    train_iter = iter(strategy.experimental_distribute_dataset(train_batches))
    started = time.perf_counter()
    loop.run_epochs(callback_list, train_iter, session.steps, cfg.train.epochs, initial_epoch)
    train_seconds = time.perf_counter() - started

    # A plain (undistributed) copy takes the best weights: evaluated and saved with no collectives.
    distribution = {"strategy": "multi_worker", "task": f"{task_type}:{task_id}",
                    "replicas": strategy.num_replicas_in_sync, "chief": chief}
    result = finish(session, session.build_model(), train_seconds, nan_guard.stopped_at, chief,
                    extra={"distribution": distribution})
    shutil.rmtree(backup.folder, ignore_errors=True)
    loop.agree([0.0])  # a barrier: no worker leaves (and stops its heartbeat) before the chief has written
    return result


class _Loop:
    """The distributed train step, the local validation and the agreements between workers for one model."""

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model, val_ds: tf.data.Dataset):
        self.strategy, self.model, self.val_ds = strategy, model, val_ds
        # Build the compiled loss in cross-replica context (as ``fit`` does before its first step):
        # it cannot create state inside ``strategy.run``.
        inputs, ages = next(iter(val_ds))
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
            model.compute_loss(inputs, ages, model(inputs, training=False), training=False)

    def run_epochs(self, callbacks: keras.callbacks.CallbackList, train_iter: Any, steps: int, epochs: int,
                   initial_epoch: int) -> None:
        """``fit``'s epoch loop: the same callback calls in the same order, ``model.stop_training`` honoured."""
        model = self.model
        model.stop_training = False
        callbacks.on_train_begin()
        logs: dict[str, float] | None = None
        for epoch in range(initial_epoch, epochs):
            callbacks.on_epoch_begin(epoch)
            totals = _Totals()
            for step in range(steps):
                callbacks.on_train_batch_begin(step)
                totals.add(*self.train_step(train_iter))
                callbacks.on_train_batch_end(step, totals.logs())
                if model.stop_training:
                    break
            logs = totals.logs()
            self.sync_state()
            logs.update({f"val_{name}": value for name, value in self.validate(callbacks).items()})
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        if epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs)

    def _replica_step(self, inputs: dict[str, tf.Tensor], ages: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """``Model.train_step`` of the TF backend, with its metric returned as a sum to reduce over replicas."""
        model = self.model
        with tf.GradientTape() as tape:
            pred = model(inputs, training=True)
            loss = model.compute_loss(inputs, ages, pred, training=True)  # already divided by the replicas
            scaled = model.optimizer.scale_loss(loss)
        variables = model.trainable_variables
        model.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return loss, _abs_error_sum(ages, pred), tf.shape(ages)[0]

    @tf.function
    def train_step(self, iterator: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One global batch on every replica: the mean loss, the summed absolute error, the examples."""
        results = self.strategy.run(self._replica_step, args=next(iterator))
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in results)

    @tf.function
    def _test_step(self, inputs: dict[str, tf.Tensor], ages: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pred = self.model(inputs, training=False)
        return self.model.compute_loss(inputs, ages, pred, training=False), _abs_error_sum(ages, pred)

    def validate(self, callbacks: keras.callbacks.CallbackList) -> dict[str, float]:
        """Loss and MAE over the whole validation fold on this worker, averaged over the workers.

        The callbacks see the agreed figures at ``on_test_end``, as ``fit``'s ``evaluate`` would give them.
        """
        callbacks.on_test_begin()
        totals = _Totals()
        for step, (inputs, ages) in enumerate(self.val_ds):
            callbacks.on_test_batch_begin(step)
            loss, abs_error = self._test_step(inputs, ages)
            count = int(ages.shape[0])
            totals.add(float(loss) * count, abs_error, count)
            callbacks.on_test_batch_end(step, totals.logs(per_example_loss=True))
        loss, mae = self.agree(list(totals.logs(per_example_loss=True).values()))
        logs = {"loss": loss, AGE_METRIC: mae}
        callbacks.on_test_end(logs)
        return logs

    def agree(self, values: list[float]) -> list[float]:
        """The mean of each of ``values`` over all replicas, so every worker takes the same decision."""
        return [float(v) for v in self._all_mean(tf.constant(values, tf.float32)).numpy()]

    def agree_min(self, value: int) -> int:
        """The smallest ``value`` over all workers."""
        return int(tf.reduce_min(self._all_gather(tf.constant([value], tf.int64))))

    def sync_state(self) -> None:
        """Average the non-trainable state (BatchNorm moving statistics) over all replicas.

        Gradients are all-reduced, so trainable weights stay identical; the moving statistics are updated
        from each replica's own shard (and each worker recalibrates on its own batches) and drift apart
        unless averaged.
        """
        if self.model.non_trainable_variables:
            self._sync_state()

    @tf.function
    def _sync_state(self) -> None:
        for variable in self.model.non_trainable_variables:
            local = self.strategy.run(tf.identity, args=(variable.value,))
            variable.assign(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None))

    @tf.function
    def _all_gather(self, value: tf.Tensor) -> tf.Tensor:
        return self.strategy.gather(self.strategy.run(tf.identity, args=(value,)), axis=0)

    @tf.function
    def _all_mean(self, value: tf.Tensor) -> tf.Tensor:
        per_replica = self.strategy.run(tf.identity, args=(value,))
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)


def _abs_error_sum(ages: tf.Tensor, pred: tf.Tensor) -> tf.Tensor:
    """The summed per-example error of ``fit``'s ``age_mae`` metric (``MeanAbsoluteError``)."""
    return tf.reduce_sum(keras.losses.mean_absolute_error(ages, tf.cast(pred, ages.dtype)))


class _Totals:
    """Running sums over an epoch's steps, turned into the logs ``fit`` reports (running means)."""

    def __init__(self) -> None:
        self.loss, self.abs_error, self.examples, self.steps = 0.0, 0.0, 0, 0

    def add(self, loss: Any, abs_error: Any, examples: Any) -> None:
        self.loss += float(loss)
        self.abs_error += float(abs_error)
        self.examples += int(examples)
        self.steps += 1

    def logs(self, per_example_loss: bool = False) -> dict[str, float]:
        """``loss`` is the mean over steps (batch means) or, with ``per_example_loss``, over examples."""
        loss = self.loss / max(1, self.examples if per_example_loss else self.steps)
        return {"loss": loss, AGE_METRIC: self.abs_error / max(1, self.examples)}


class _Snapshot(keras.callbacks.Callback):
    """Take the training weights and optimizer state at an epoch's end, where ``BackupAndRestore`` sits."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[np.ndarray] = []
        self.optimizer: list[np.ndarray] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.weights = self.model.get_weights()
        self.optimizer = [np.asarray(variable) for variable in self.model.optimizer.variables]


class WorkerBackup(keras.callbacks.Callback):
    """This worker's backup of every epoch, and the restore of the newest epoch all workers saved.

    ``BackupAndRestore`` depends on ``fit``'s own epoch bookkeeping, so the custom loop keeps this one.
    Its ``snapshot`` takes the raw training weights before the EMA swap; this callback, last in the list,
    writes them (atomically, keeping the last two epochs) with the epoch's best checkpoint and
    ``ResumeState``'s bookkeeping, so a restored epoch has all three from the same moment. Each worker
    keeps its own copy (the states are identical), as TF's multi-worker guidance asks.
    """

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)
        self.checkpoints = self.folder.parent
        self.snapshot = _Snapshot()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        target, tmp = self.folder / f"epoch-{epoch:05d}", self.folder / f".epoch-{epoch:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.savez(tmp / "model.npz", *self.snapshot.weights)
        np.savez(tmp / "optimizer.npz", *self.snapshot.optimizer)
        for name in (BEST_WEIGHTS, RESUME_STATE):
            if (self.checkpoints / name).is_file():
                shutil.copy2(self.checkpoints / name, tmp / name)
        write_json_atomic(tmp / "state.json", {"epoch": epoch})
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        for old in self.epochs()[:-2]:
            shutil.rmtree(self.folder / f"epoch-{old:05d}", ignore_errors=True)

    def restore(self, model: keras.Model, agree_min: Any) -> int:
        """Put back the newest epoch every worker backed up; returns the epoch to start from (0: afresh).

        A kill can land between two workers' backups of one epoch, so the workers agree on the oldest
        newest epoch (each keeps two) and drop anything later, the training log's rows included.
        """
        epochs = self.epochs()
        agreed = agree_min(epochs[-1] if epochs else -1)
        for later in (e for e in epochs if e > agreed):
            shutil.rmtree(self.folder / f"epoch-{later:05d}", ignore_errors=True)
        source = self.folder / f"epoch-{agreed:05d}"
        if agreed >= 0 and not source.is_dir():
            raise TrainingError(f"{source}: the workers' backups disagree (this worker lacks epoch {agreed + 1}); "
                                f"delete {self.folder} on every worker to start over")
        for name in (BEST_WEIGHTS, RESUME_STATE):  # a fresh start keeps nothing of an earlier run
            (self.checkpoints / name).unlink(missing_ok=True)
            if agreed >= 0 and (source / name).is_file():
                shutil.copy2(source / name, self.checkpoints / name)
        if agreed < 0:
            return 0
        model.set_weights(_load_arrays(source / "model.npz"))
        for variable, value in zip(model.optimizer.variables, _load_arrays(source / "optimizer.npz")):
            variable.assign(value)
        _truncate_log(self.checkpoints.parent / "logs" / "training.csv", agreed)
        print(f"resuming multi-worker training after epoch {agreed + 1} from {source}")
        return agreed + 1

    def epochs(self) -> list[int]:
        """The epochs backed up completely, oldest first."""
        return sorted(int(p.name.split("-")[1]) for p in self.folder.glob("epoch-*") if (p / "state.json").is_file())


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def _truncate_log(path: Path, last_epoch: int) -> None:
    """Keep the CSV log's header and its rows up to ``last_epoch`` (the resumed run appends the later ones)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], [r for r in reader if int(float(r["epoch"])) <= last_epoch]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _worker_dir(cfg: PipelineConfig, run_dir: Path | None, resume: bool, chief: bool, task_type: str | None,
                task_id: int | None) -> Path:
    """The chief's run directory (with ``resume``, an unfinished one of the same config), or a worker's scratch.

    A backup left by a different config, or any backup without ``resume``, is removed; the resolved config
    is (re)written.
    """
    if not chief:
        path = Path(cfg.runtime.runs_dir) / "_workers" / f"{cfg.name}-{task_type}-{task_id}"
    elif run_dir is not None:
        path = Path(run_dir)
    else:
        path = (find_unfinished_run(cfg) if resume else None) or new_run_dir(cfg.runtime.runs_dir, cfg.name)
    make_run_folders(path)
    config = path / CONFIG_NAME
    if not resume or (config.is_file() and not same_config(config, cfg)):
        shutil.rmtree(path / "checkpoints" / BACKUP_DIR, ignore_errors=True)
    save_config(cfg, config)
    return path

