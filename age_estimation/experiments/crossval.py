"""Subject-independent k-fold cross-validation: one model per fold, scored on its fold and the held-out subjects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig, with_changes
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import build_split_datasets
from age_estimation.evaluation.metrics import regression_report
from age_estimation.evaluation.plots import plot_age_groups, plot_predictions
from age_estimation.evaluation.predictions import Predictions, collect_predictions, write_predictions_csv
from age_estimation.training.fit import train


def cross_validate(cfg: PipelineConfig, out_dir: Path, folds: list[int] | None = None) -> dict[str, Any]:
    """Train one model per fold; score it on its validation fold and on the fixed held-out subjects."""
    folds = list(range(cfg.data.folds)) if folds is None else folds
    index = read_index(cfg.data.cache_dir)
    per_fold, pooled = [], []
    for fold in folds:
        fold_cfg = with_changes(cfg, data={"fold": fold})
        split = build_split_datasets(fold_cfg, repeat_train=True, landmarks=cfg.model.reads_landmarks)
        result = train(fold_cfg, split=split, run_dir=out_dir / f"fold{fold}", verbose=0)
        val = collect_predictions(result.model, cfg.data.cache_dir, split.val_ids, cfg.data,
                                  test_time_flip=cfg.inference.test_time_flip)
        train_mean = float(np.mean([index["videos"][v]["age"] for v in split.train_ids]))
        per_fold.append({
            "fold": fold,
            "run_dir": str(result.run_dir),
            "val": regression_report(val.true, val.pred, train_mean),
            "heldout": result.metrics["heldout"],
        })
        pooled.append((fold, val))
        print(f"fold {fold}: validation MAE {per_fold[-1]['val']['mae']:.2f}, "
              f"held-out MAE {per_fold[-1]['heldout']['mae']:.2f}")
    summary = _cv_summary(per_fold, pooled)
    _write_cv_outputs(out_dir, summary, pooled, index)
    return summary


def _cv_summary(per_fold: list[dict[str, Any]], pooled: list[tuple[int, Predictions]]) -> dict[str, Any]:
    true = np.concatenate([p.true for _, p in pooled])
    pred = np.concatenate([p.pred for _, p in pooled])
    val_mae = [f["val"]["mae"] for f in per_fold]
    heldout_mae = [f["heldout"]["mae"] for f in per_fold]
    return {
        "folds": per_fold,
        "val_mae_mean": float(np.mean(val_mae)),
        "val_mae_std": float(np.std(val_mae)),
        "heldout_mae_mean": float(np.mean(heldout_mae)),
        "heldout_mae_std": float(np.std(heldout_mae)),
        "pooled_val": regression_report(true, pred),
    }


def _write_cv_outputs(out_dir: Path, summary: dict[str, Any], pooled: list[tuple[int, Predictions]],
                      index: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "crossval.json", summary)
    true = np.concatenate([p.true for _, p in pooled])
    pred = np.concatenate([p.pred for _, p in pooled])
    plot_predictions(true, pred, out_dir / "crossval_predicted_vs_true.png")
    plot_age_groups(true, pred, out_dir / "crossval_error_by_age_group.png")
    merged = Predictions(
        video_ids=[v for _, p in pooled for v in p.video_ids], true=true, pred=pred,
        mask=np.zeros((0, 0)), source_index=np.zeros((0, 0)), temporal=np.zeros((0, 0)), spatial=None,
    )
    folds = [fold for fold, p in pooled for _ in p.video_ids]
    write_predictions_csv(out_dir / "crossval_predictions.csv", merged, index, folds=folds)
