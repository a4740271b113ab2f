"""What every training path does before and after its epochs: open the run, build the model, score and save.

``set_up`` reads the split's cache index, builds and compiles the model under the strategy's scope;
``finish`` loads the best checkpoint, predicts the held-out subjects, calibrates the age interval on the
validation subjects and writes the run directory (metrics, predictions, interval, model card, face ranges,
``model.keras``, plots). ``fit`` and the multi-worker loop differ only in between.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig, same_config, save_config
from age_estimation.data.cache import read_clip, read_index
from age_estimation.data.pipeline import SplitData, build_dataset
from age_estimation.evaluation.metrics import AGE_GROUPS, group_name, regression_report
from age_estimation.evaluation.plots import plot_run
from age_estimation.evaluation.predictions import Predictions, collect_predictions, write_predictions_csv
from age_estimation.inference.decision import threshold_rates
from age_estimation.inference.interval import IntervalCalibration, fit_interval, interval_report
from age_estimation.inference.model_card import ModelCard
from age_estimation.inference.quality import FaceRanges, clip_medians, fit_ranges
from age_estimation.inference.spec import FACE_RANGES_NAME, INTERVAL_NAME, MODEL_CARD_NAME
from age_estimation.models.siam.model import build_siam
from age_estimation.runs import CONFIG_NAME, METRICS_NAME, MODEL_NAME, PREDICTIONS_NAME, new_run_dir
from age_estimation.training.callbacks import BEST_WEIGHTS, read_history
from age_estimation.training.task import (
    age_prior,
    age_targets,
    age_view,
    compile_task,
    crop_size_of,
    no_model_error,
)

BACKUP_DIR = "backup"  # under checkpoints/: a run with one and no model.keras is unfinished
REPORTED_COVERAGES = (0.5, 0.9, 0.95)  # held-out coverage and width reported beside the configured one
# The age groups of the held-out report, as the interval report's name -> inclusive (low, high) years.
AGE_GROUP_RANGES = {group_name(low, high): (low, high) for low, high in AGE_GROUPS}


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    model: keras.Model
    metrics: dict[str, Any]
    heldout: Predictions


@dataclass
class Session:
    """One run being trained: its config, data, run directory and model (``fitted`` is its compiled age view)."""

    cfg: PipelineConfig
    split: SplitData
    index: dict[str, Any]
    train_ages: np.ndarray
    steps: int
    run_dir: Path
    model: keras.Model
    fitted: keras.Model

    def build_model(self) -> keras.Model:
        """A fresh model of the same shape (crop size, age prior), outside any strategy."""
        return build_siam(self.cfg.model, crop_size=crop_size_of(self.index), age_prior=age_prior(self.train_ages))


def set_up(cfg: PipelineConfig, split: SplitData, run_dir: Path, strategy: tf.distribute.Strategy) -> Session:
    """Read the split's index and build + compile the model under ``strategy``'s scope."""
    index = read_index(split.cache_dir)
    train_ages = np.array([index["videos"][v]["age"] for v in split.train_ids], float)
    steps = cfg.train.steps_per_epoch or split.steps_per_epoch
    with strategy.scope():
        model = build_siam(cfg.model, crop_size=crop_size_of(index), age_prior=age_prior(train_ages))
        fitted = age_view(model)
        compile_task(fitted, cfg.train, steps)
    return Session(cfg, split, index, train_ages, steps, run_dir, model, fitted)


def recalibration_batches(
    cfg: PipelineConfig, split: SplitData, model: keras.Model
) -> tf.data.Dataset | None:
    """Repeating training batches of ``model``'s inputs for the BN recalibration, from a dataset of their own
    (None when it is off).

    A seeded dataset gives each new iterator the next random stream, so batches drawn from the training
    dataset itself would depend on how often, and how, the training path had iterated it.
    """
    if cfg.train.bn_recalibration_batches < 1:
        return None
    seed = cfg.runtime.seed if (cfg.data.deterministic or cfg.runtime.deterministic) else None
    return age_targets(build_dataset(split.cache_dir, split.train_ids, cfg.data, training=True, seed=seed,
                                     repeat=True, landmarks=split.landmarks), model)


def finish(
    session: Session,
    model: keras.Model,
    train_seconds: float,
    nan_stop: tuple[int, int] | None,
    chief: bool = True,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Load the best checkpoint into ``model``, score the held-out subjects and write the run directory.

    The interval is calibrated on validation subjects (``calibrate_interval``) and scored on the
    held-out subjects (``metrics["interval"]``, with the rates of the age-threshold decisions it gives in
    ``metrics["age_threshold"]``). Every task writes ``metrics.json``; only the chief writes the predictions,
    ``interval.json``, ``model_card.json``, plots and, last, ``model.keras``: a run with a model is complete.
    """
    cfg, split, run_dir = session.cfg, session.split, session.run_dir
    best = run_dir / "checkpoints" / BEST_WEIGHTS
    if not best.is_file():
        raise no_model_error(run_dir)
    age_view(model).load_weights(best)
    heldout = collect_predictions(model, split.cache_dir, split.heldout_ids, cfg.data, keep_frames=8 if chief else 0,
                                  test_time_flip=cfg.inference.test_time_flip)
    calibrations = calibrate_interval(model, cfg, split)
    calibration = calibrations[cfg.inference.coverage]
    metrics = run_metrics(cfg, split, session.index, heldout, session.train_ages, run_dir, train_seconds, nan_stop)
    metrics["interval"] = interval_report(calibration, heldout.true, heldout.pred, groups=AGE_GROUP_RANGES)
    metrics["interval"]["calibrated_on"] = "calibration subjects" if split.calibration_ids else "validation fold"
    metrics["interval"]["levels"] = {
        f"{level:g}": {key: report[key] for key in ("empirical_coverage", "mean_width")}
        for level, one in sorted(calibrations.items())
        for report in [interval_report(one, heldout.true, heldout.pred)]
    }
    metrics["age_threshold"] = threshold_rates(heldout.true, *calibration.bounds(heldout.pred))
    metrics.update(extra or {})
    write_json_atomic(run_dir / METRICS_NAME, metrics)
    if chief:
        write_predictions_csv(run_dir / PREDICTIONS_NAME, heldout, session.index)
        write_json_atomic(run_dir / INTERVAL_NAME, calibration.to_json())
        write_json_atomic(run_dir / MODEL_CARD_NAME, model_card(cfg, metrics).to_json())
        write_json_atomic(run_dir / FACE_RANGES_NAME, training_face_ranges(split.cache_dir, split.train_ids).to_json())
        plot_run(run_dir, heldout, read_history(run_dir))
        save_model_atomic(model, run_dir / MODEL_NAME)
    return TrainResult(run_dir=run_dir, model=model, metrics=metrics, heldout=heldout)


def calibrate_interval(
    model: keras.Model, cfg: PipelineConfig, split: SplitData
) -> dict[float, IntervalCalibration]:
    """Intervals of ``inference.coverage`` and of ``REPORTED_COVERAGES``, predicted as held-out is.

    With calibration subjects held back, the residual scales (``inference.interval_bins``) come from the
    validation subjects that selected the checkpoint and the conformal quantile from the held-back ones,
    which did nothing else; without them both come from the whole validation fold.
    """
    def predicted(ids: list[str]) -> Predictions:
        return collect_predictions(model, split.cache_dir, ids, cfg.data, test_time_flip=cfg.inference.test_time_flip)

    val = predicted(split.val_ids)
    quantile_set = predicted(split.calibration_ids) if split.calibration_ids else val
    return {
        level: fit_interval(quantile_set.true, quantile_set.pred, coverage=level, bins=cfg.inference.interval_bins,
                            scale_data=(val.true, val.pred))
        for level in sorted({cfg.inference.coverage, *REPORTED_COVERAGES})
    }


def training_face_ranges(cache_dir: str | Path, video_ids: list[str]) -> FaceRanges:
    """The range of the face measures over the training videos' cached crops (their face frames), which
    ``predict`` holds a video's face to."""
    index = read_index(cache_dir)
    medians = []
    for vid in video_ids:
        clip = read_clip(Path(cache_dir) / index["videos"][vid]["shard"])
        found = np.asarray(clip["face_found"], bool)
        medians.append(clip_medians(clip["frames"][found] if found.any() else clip["frames"]))
    return fit_ranges(np.array(medians))


def model_card(cfg: PipelineConfig, metrics: dict[str, Any]) -> ModelCard:
    """The run's card: its data and split sizes, held-out MAE and interval coverage, today's date."""
    counts = metrics["counts"]
    splits = {name: {"videos": counts[name], "subjects": counts[f"subjects_{name}"]}
              for name in ("train", "val", "heldout")}
    return ModelCard.from_run(cfg, splits, metrics["heldout"]["mae"], metrics["interval"])


def open_run_dir(cfg: PipelineConfig, run_dir: Path | None, resume: bool) -> tuple[Path, bool]:
    """Reuse an unfinished run of the same resolved config (to resume it), else create a new one.

    Returns the folder and whether it holds a backup to resume from; without ``resume`` a backup in a given
    ``run_dir`` is removed, so that training starts afresh.
    """
    if run_dir is not None:
        run_dir = Path(run_dir)
        make_run_folders(run_dir)
        backup = run_dir / "checkpoints" / BACKUP_DIR
        if not resume:
            shutil.rmtree(backup, ignore_errors=True)
        resuming = backup.is_dir()
    else:
        found = find_unfinished_run(cfg) if resume else None
        run_dir, resuming = (found, True) if found else (new_run_dir(cfg.runtime.runs_dir, cfg.name), False)
    save_config(cfg, run_dir / CONFIG_NAME)
    return run_dir, resuming


def make_run_folders(run_dir: Path) -> None:
    """The run directory's sub-folders: checkpoints, plots, logs."""
    for sub in ("checkpoints", "plots", "logs"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)


def find_unfinished_run(cfg: PipelineConfig) -> Path | None:
    """The newest run dir of ``cfg.name`` with an identical config, a backup, and no final model."""
    candidates = sorted(Path(cfg.runtime.runs_dir).glob(f"{cfg.name}-*"), reverse=True)
    for path in candidates:
        if (path / MODEL_NAME).exists() or not (path / "checkpoints" / BACKUP_DIR).is_dir():
            continue
        if same_config(path / CONFIG_NAME, cfg):
            return path
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
