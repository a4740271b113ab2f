"""Train one pipeline config and write a complete run directory: Keras ``fit``, or the multi-worker loop.

``runtime.strategy`` picks the path: ``default`` and ``mirrored`` train with ``model.fit``,
``multi_worker`` with the custom loop of :mod:`age_estimation.training.multi_worker`. Both share the
set-up, the callbacks and the finish (:mod:`age_estimation.training.run`).

A killed run resumes: training the same config again finds the unfinished run directory (same
resolved config, no ``model.keras`` yet) and continues from its last backup.

Example:
    >>> result = train(load_config("pipelines/ci_tiny.yaml"))
    >>> result.metrics["heldout"]["mae"]
"""

from __future__ import annotations

import time
from pathlib import Path

from age_estimation.config import PipelineConfig
from age_estimation.data.pipeline import SplitData, build_split_datasets, steps_per_epoch
from age_estimation.training.callbacks import make_callbacks
from age_estimation.training.multi_worker import train_multi_worker
from age_estimation.training.run import TrainResult, finish, open_run_dir, recalibration_batches, set_up
from age_estimation.training.runtime import configure_runtime, make_strategy, progress_verbosity
from age_estimation.training.task import age_targets

__all__ = ["TrainResult", "train"]


def train(
    cfg: PipelineConfig,
    split: SplitData | None = None,
    run_dir: Path | None = None,
    resume: bool = True,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train ``cfg`` on its prepared cache, evaluate on held-out subjects, and save everything.

    ``resume`` continues an unfinished run of the same config; ``verbose`` is Keras' progress setting
    (``"auto"``: the step bar on a terminal, one line per epoch when stdout is not one).
    """
    configure_runtime(cfg.runtime)
    verbose = progress_verbosity(verbose)
    if cfg.runtime.strategy == "multi_worker":
        return train_multi_worker(cfg, split=split, run_dir=run_dir, resume=resume, verbose=verbose)
    return train_with_fit(cfg, split, run_dir, resume, verbose)


def train_with_fit(
    cfg: PipelineConfig, split: SplitData | None, run_dir: Path | None, resume: bool, verbose: int | str
) -> TrainResult:
    """The ``fit`` path: one process, the default strategy or MirroredStrategy over the local devices."""
    split = split or build_split_datasets(cfg, repeat_train=True, landmarks=cfg.model.reads_landmarks)
    run_dir, resuming = open_run_dir(cfg, run_dir, resume)
    session = set_up(cfg, split, run_dir, make_strategy(cfg.runtime))
    callbacks, nan_guard = make_callbacks(cfg.train, run_dir, session.steps, resuming,
                                          train_batches=recalibration_batches(cfg, split, session.fitted))
    if resuming:
        print(f"resuming the unfinished run {run_dir}")
    started = time.perf_counter()
    session.fitted.fit(
        age_targets(split.train, session.fitted), validation_data=age_targets(split.val, session.fitted),
        epochs=cfg.train.epochs,
        shuffle=False, steps_per_epoch=session.steps,
        validation_steps=steps_per_epoch(len(split.val_ids), cfg.data.batch_size),
        callbacks=callbacks, verbose=verbose,
    )
    return finish(session, session.model, time.perf_counter() - started, nan_guard.stopped_at)
