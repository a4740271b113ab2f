"""Train one pipeline config with Keras ``fit`` and write a complete run directory.

A killed run resumes: training the same config again finds the unfinished run directory (same
resolved config, no ``model.keras`` yet) and continues from its last backup.

Example:
    >>> result = train(load_config("pipelines/ci_tiny.yaml"))
    >>> result.metrics["heldout"]["mae"]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import yaml

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig, save_config, to_dict
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import SplitData, build_split_datasets, steps_per_epoch
from age_estimation.evaluation.metrics import regression_report
from age_estimation.evaluation.plots import plot_run
from age_estimation.evaluation.predictions import Predictions, collect_predictions, write_predictions_csv
from age_estimation.models.siam.model import build_siam
from age_estimation.runs import CONFIG_NAME, METRICS_NAME, MODEL_NAME, PREDICTIONS_NAME, new_run_dir
from age_estimation.training.callbacks import BEST_WEIGHTS, make_callbacks, read_history
from age_estimation.training.optim import make_loss, make_optimizer
from age_estimation.training.runtime import configure_runtime, make_strategy
from age_estimation.training.task import TrainingError, age_prior, age_targets, age_view, crop_size_of


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    model: keras.Model
    metrics: dict[str, Any]
    heldout: Predictions


def train(
    cfg: PipelineConfig,
    split: SplitData | None = None,
    run_dir: Path | None = None,
    resume: bool = True,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train ``cfg`` on its prepared cache, evaluate on held-out subjects, and save everything."""
    configure_runtime(cfg.runtime)
    if cfg.runtime.strategy == "multi_worker":
        from age_estimation.training.multi_worker import train_multi_worker

        return train_multi_worker(cfg, split=split, run_dir=run_dir)
    split = split or build_split_datasets(cfg, repeat_train=True)
    index = read_index(split.cache_dir)
    run_dir, resuming = open_run_dir(cfg, run_dir, resume)
    steps = cfg.train.steps_per_epoch or split.steps_per_epoch
    train_ages = np.array([index["videos"][v]["age"] for v in split.train_ids], float)

    strategy = make_strategy(cfg.runtime)
    with strategy.scope():
        model = build_siam(cfg.model, crop_size=crop_size_of(index), age_prior=age_prior(train_ages))
        fitted = age_view(model)
        fitted.compile(
            optimizer=make_optimizer(cfg.train, steps),
            loss=make_loss(cfg.train),
            metrics=[keras.metrics.MeanAbsoluteError(name="age_mae")],
        )
    callbacks, nan_guard = make_callbacks(cfg, run_dir, steps, resuming, train_batches=age_targets(split.train))
    if resuming:
        print(f"resuming the unfinished run {run_dir}")
    started = time.perf_counter()
    fitted.fit(
        age_targets(split.train), validation_data=age_targets(split.val), epochs=cfg.train.epochs,
        shuffle=False, steps_per_epoch=steps, validation_steps=steps_per_epoch(len(split.val_ids), cfg.data.batch_size),
        callbacks=callbacks, verbose=verbose,
    )
    train_seconds = time.perf_counter() - started

    best = run_dir / "checkpoints" / BEST_WEIGHTS
    if not best.is_file():
        raise TrainingError(f"{run_dir}: no epoch reached a finite validation MAE, so there is no model to save")
    fitted.load_weights(best)
    heldout = collect_predictions(model, split.cache_dir, split.heldout_ids, cfg.data, keep_frames=8,
                                  test_time_flip=cfg.inference.test_time_flip)
    metrics = run_metrics(cfg, split, index, heldout, train_ages, run_dir, train_seconds, nan_guard.stopped_at)
    write_predictions_csv(run_dir / PREDICTIONS_NAME, heldout, index)
    save_model_atomic(model, run_dir / MODEL_NAME)
    write_json_atomic(run_dir / METRICS_NAME, metrics)
    plot_run(run_dir, heldout, read_history(run_dir))
    return TrainResult(run_dir=run_dir, model=model, metrics=metrics, heldout=heldout)


def open_run_dir(cfg: PipelineConfig, run_dir: Path | None, resume: bool) -> tuple[Path, bool]:
    """Reuse an unfinished run of the same resolved config (to resume it), else create a new one."""
    if run_dir is not None:
        run_dir = Path(run_dir)
        for sub in ("checkpoints", "plots", "logs"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        resuming = (run_dir / "checkpoints" / "backup").is_dir()
    else:
        found = find_unfinished_run(cfg) if resume else None
        run_dir, resuming = (found, True) if found else (new_run_dir(cfg.runtime.runs_dir, cfg.name), False)
    save_config(cfg, run_dir / CONFIG_NAME)
    return run_dir, resuming


def find_unfinished_run(cfg: PipelineConfig) -> Path | None:
    """The newest run dir of ``cfg.name`` with an identical config, a backup, and no final model."""
    wanted = to_dict(cfg)
    candidates = sorted(Path(cfg.runtime.runs_dir).glob(f"{cfg.name}-*"), reverse=True)
    for path in candidates:
        if (path / MODEL_NAME).exists() or not (path / "checkpoints" / "backup").is_dir():
            continue
        try:
            if yaml.safe_load((path / CONFIG_NAME).read_text()) == wanted:
                return path
        except (OSError, yaml.YAMLError):
            continue
    return None


def run_metrics(
    cfg: PipelineConfig,
    split: SplitData,
    index: dict[str, Any],
    heldout: Predictions,
    train_ages: np.ndarray,
    run_dir: Path,
    train_seconds: float,
    nan_stop: tuple[int, int] | None,
) -> dict[str, Any]:
    """Held-out report, the reference floors, and the training summary."""
    history = read_history(run_dir)
    epochs_run = len(history.get("epoch", []))
    report = regression_report(heldout.true, heldout.pred, train_mean=float(train_ages.mean()))
    return {
        "config": cfg.name,
        "heldout": report,
        "oracle_floor_mae": oracle_floor(cfg),
        "counts": split.counts,
        "fold": split.fold,
        "epochs_run": epochs_run,
        "best_val_mae": float(np.nanmin(history["val_age_mae"])) if history.get("val_age_mae") else None,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(1, epochs_run),
        "nan_stopped_at": list(nan_stop) if nan_stop else None,
    }


def oracle_floor(cfg: PipelineConfig) -> float | None:
    """The synthetic generator's oracle MAE (from its ground truth), or None for real data."""
    path = Path(cfg.data.path) / "ground_truth.json"
    if cfg.data.source != "synthetic" or not path.is_file():
        return None
    return float(json.loads(path.read_text())["oracle_floor_mae"])


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Save the ``.keras`` file under a temporary name and rename it, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    tmp.replace(path)


def summary_line(metrics: dict[str, Any]) -> str:
    """The closing line of ``make train``."""
    floor = (metrics.get("attention") or {}).get("heldout_oracle_mae", metrics.get("oracle_floor_mae"))
    floor_text = f"{floor:.2f}" if floor is not None else "n/a"
    heldout = metrics["heldout"]
    return (
        f"held-out MAE: {heldout['mae']:.2f} years (oracle floor {floor_text}, "
        f"mean predictor {heldout['mean_predictor_mae']:.2f})"
    )
