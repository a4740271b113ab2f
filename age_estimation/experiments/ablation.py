"""The paper-style ablation: every variant trained on every fold of a subject k-fold, compared per subject.

Fold ``i`` holds out the ``i``-th age-stratified fold of all subjects (``data.heldout_fold``), so over
all folds every subject is held out once and each variant is scored on every video. Each run trains
through :func:`age_estimation.training.fit.train` into ``<out>/<variant>-fold<i>``; the summary is
written as ``ablation.json`` and ``ablation.md`` next to them after every run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import PipelineConfig, same_config, with_changes
from age_estimation.evaluation.attention import oracle_errors, synthetic_scores
from age_estimation.evaluation.metrics import subject_bootstrap_interval
from age_estimation.evaluation.predictions import read_predictions_csv
from age_estimation.runs import CONFIG_NAME, PREDICTIONS_NAME
from age_estimation.training.fit import train

# Ablation entry -> the ``model`` config keys it sets; every other key comes from the pipeline config.
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "siam_dynamics": {"variant": "siam", "dynamics": True},
    "siam": {"variant": "siam", "dynamics": False},  # the paper's pixel-only model
    "no_spatial": {"variant": "no_spatial", "dynamics": True},
    "no_temporal": {"variant": "no_temporal", "dynamics": True},
    "frame_average": {"variant": "frame_average", "dynamics": True},
    "dynamics_only": {"variant": "dynamics_only", "dynamics": True},  # landmarks, RNN, temporal attention
}

_ABLATION_RESULT = "result.json"
# The figures of one cue in ``cue_usage`` (``evaluation.attention.cue_usage``).
CUE_FIGURES = ("model", "oracle", "slope_share")


def ablation_plan(
    cfg: PipelineConfig, variants: Sequence[str] = tuple(ABLATION_VARIANTS), folds: Sequence[int] | None = None
) -> tuple[list[str], list[int]]:
    """The ablation entries and fold indices to run (all folds by default), checked before any training."""
    variants = list(dict.fromkeys(variants))
    folds = list(range(cfg.data.folds)) if folds is None else list(dict.fromkeys(folds))
    if not variants or not folds:
        raise ValueError("the ablation needs at least one variant and one fold")
    unknown = [v for v in variants if v not in ABLATION_VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {unknown}; choose from {list(ABLATION_VARIANTS)}")
    outside = [f for f in folds if not 0 <= f < cfg.data.folds]
    if outside:
        raise ValueError(f"fold(s) {outside} outside [0, {cfg.data.folds}) (data.folds is {cfg.data.folds})")
    return variants, folds


def ablation_config(cfg: PipelineConfig, variant: str, fold: int) -> PipelineConfig:
    """``cfg`` for one ablation run: the entry's model keys, fold ``fold`` held out, no export."""
    return with_changes(cfg, model=ABLATION_VARIANTS[variant], data={"heldout_fold": fold},
                        export={"after_training": False})


def ablation(
    cfg: PipelineConfig, out_dir: Path, variants: Sequence[str] = tuple(ABLATION_VARIANTS),
    folds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Train every variant on every held-out fold; the per-variant table over the folds done.

    Folds are the outer loop, so a partial ablation compares all variants on the first folds.
    Resumable: a finished run leaves ``result.json`` in its directory and is not trained again, an
    interrupted one continues from its backup, and the summary is rewritten after every run. The
    summary also counts the variants' runs that ``out_dir`` holds from earlier calls on other folds,
    so an ablation run a few folds at a time ends with one table over all of them.
    """
    variants, folds = ablation_plan(cfg, variants, folds)
    out_dir = Path(out_dir)
    runs = [row for fold in range(cfg.data.folds) if fold not in folds for variant in variants
            if (row := _finished_ablation_run(ablation_config(cfg, variant, fold),
                                              variant_run_dir(out_dir, variant, fold)))]
    planned = len(set(folds) | {row["fold"] for row in runs})
    summary: dict[str, Any] = {}
    for fold in folds:
        for variant in variants:
            run_cfg, run_dir = ablation_config(cfg, variant, fold), variant_run_dir(out_dir, variant, fold)
            row = _finished_ablation_run(run_cfg, run_dir) or _ablation_run(run_cfg, run_dir, variant, fold)
            runs.append(row)
            print(f"{variant:14s} fold {fold}: held-out MAE {row['mae']:.2f}")
            summary = _write_ablation(cfg, out_dir, runs, planned)
    return summary


def variant_run_dir(out_dir: Path, variant: str, fold: int) -> Path:
    """The run directory of ``variant`` on ``fold`` inside the ablation folder ``out_dir``."""
    return out_dir / f"{variant}-fold{fold}"


def _finished_ablation_run(run_cfg: PipelineConfig, run_dir: Path) -> dict[str, Any] | None:
    """The recorded figures of a finished run of ``run_cfg`` in ``run_dir``, else None (not started or interrupted).

    A run directory whose config differs from ``run_cfg`` is an error, finished or not: resuming its
    backup would mix two configurations. The recorded config is read with today's defaults, so a key
    added since the run was written, at its default, is not a difference.
    """
    config = run_dir / CONFIG_NAME
    if config.exists() and not same_config(config, run_cfg):
        raise ValueError(f"{run_dir}: holds a run of another configuration; "
                         "pass another output folder or delete this one")
    result = run_dir / _ABLATION_RESULT
    return json.loads(result.read_text()) if result.exists() else None


def _ablation_run(cfg: PipelineConfig, run_dir: Path, variant: str, fold: int) -> dict[str, Any]:
    """Train one variant on one fold and record its figures in ``run_dir/result.json``."""
    started = time.perf_counter()
    result = train(cfg, run_dir=run_dir, verbose=0)
    row = {
        "variant": variant, "fold": fold, "run_dir": str(result.run_dir),
        "mae": result.metrics["heldout"]["mae"],
        "mean_predictor_mae": result.metrics["heldout"]["mean_predictor_mae"],
        "seconds": time.perf_counter() - started,
    }
    scores = synthetic_scores(result.heldout, cfg.data)
    if scores is not None:
        att = scores["attention"]
        row.update(temporal_ratio=att["temporal_ratio"], spatial_ratio=att["spatial_ratio"],
                   oracle_mae=att["heldout_oracle_mae"], cue_usage=scores["cue_usage"])
    write_json_atomic(run_dir / _ABLATION_RESULT, row)
    return row


def _write_ablation(cfg: PipelineConfig, out_dir: Path, runs: list[dict[str, Any]], folds_planned: int) -> dict[str, Any]:
    """Write ``ablation.json`` and ``ablation.md`` for the runs finished so far; return the summary."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    predictions = {v: FoldPredictions.read({r["fold"]: variant_run_dir(out_dir, v, r["fold"]) for r in runs
                                            if r["variant"] == v}) for v in variants}
    videos = sorted({video for p in predictions.values() for video in p.videos})
    oracle = _oracle_errors(cfg, videos)
    summary = {"folds_planned": folds_planned, "runs": runs,
               "table": ablation_table(runs, predictions, oracle, folds_planned)}
    write_json_atomic(out_dir / "ablation.json", summary)
    write_bytes_atomic(out_dir / "ablation.md", ablation_markdown(summary["table"]).encode())
    return summary


def _oracle_errors(cfg: PipelineConfig, videos: list[str]) -> dict[str, float] | None:
    """The oracle's error on each of the held-out ``videos`` (synthetic data), else None."""
    if cfg.data.source != "synthetic":
        return None
    return oracle_errors(videos, Path(cfg.data.path), cfg.data.cache_dir)


def ablation_table(
    runs: list[dict[str, Any]], predictions: Mapping[str, FoldPredictions], oracle: dict[str, float] | None = None,
    folds_planned: int | None = None,
) -> list[dict[str, Any]]:
    """One entry per variant of ``predictions`` (its folds' held-out predictions), in that order.

    ``folds_planned`` (default: the most folds any variant has done) is what "folds done" counts against.
    The best variant has the lowest pooled MAE; every other one gets its paired difference from it.
    """
    best = min(predictions, key=lambda v: predictions[v].mae())
    folds_planned = folds_planned or max(len(p.run_dirs) for p in predictions.values())
    table = []
    for variant, pooled in predictions.items():
        rows = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["fold"])
        maes = [r["mae"] for r in rows]
        entry: dict[str, Any] = {
            "variant": variant, "folds": [r["fold"] for r in rows],
            "folds_planned": folds_planned, "best": variant == best,
            "mae_per_fold": maes, "mae_mean": float(np.mean(maes)),
            "mae_std": float(np.std(maes)) if len(maes) > 1 else None,
            "pooled_mae": pooled.mae(),
            "oracle_mae": float(np.mean([oracle[v] for v in pooled.videos])) if oracle else None,
            "floor_ratio": floor_ratio(pooled, oracle) if oracle else None,
            "minus_best": None if variant == best else difference_from(pooled, predictions[best]),
            "mean_predictor_mae": _mean_known([r.get("mean_predictor_mae") for r in rows]),
            "cue_usage": _mean_cue_usage([r["cue_usage"] for r in rows if r.get("cue_usage")]),
        }
        for key in ("temporal_ratio", "spatial_ratio"):
            per_fold = [r.get(key) for r in rows]
            known = [v for v in per_fold if v is not None]
            entry[key], entry[f"{key}_min"] = per_fold, (min(known) if known else None)
        table.append(entry)
    return table


@dataclasses.dataclass
class FoldPredictions:
    """One variant's held-out predictions over the folds it has done, one entry per video (by fold, then id)."""

    run_dirs: dict[int, Path]  # fold -> its run directory
    folds: np.ndarray  # the fold that held each video out
    videos: list[str]
    subjects: np.ndarray
    ages: np.ndarray
    predicted: np.ndarray

    @classmethod
    def read(cls, run_dirs: Mapping[int, Path]) -> FoldPredictions:
        """Load the predictions CSV of each fold's run (fold -> run dir); no video may be held out twice."""
        rows, held_by = [], {}
        for fold, run_dir in sorted(run_dirs.items()):
            table = read_predictions_csv(Path(run_dir) / PREDICTIONS_NAME)
            for video in sorted(table):
                if video in held_by:
                    raise ValueError(f"{run_dir}: video {video} is also held out by {held_by[video]}; "
                                     "the folds must not overlap")
                held_by[video] = run_dir
                rows.append((fold, video, *table[video]))
        return cls({f: Path(run_dirs[f]) for f in sorted(run_dirs)}, np.array([r[0] for r in rows], int),
                   [r[1] for r in rows], np.array([r[2] for r in rows]), np.array([r[3] for r in rows], float),
                   np.array([r[4] for r in rows], float))

    @property
    def source(self) -> Path:
        """The first fold's run directory, to name these predictions in messages."""
        return next(iter(self.run_dirs.values()))

    def errors(self) -> np.ndarray:
        """Per video, the absolute error."""
        return np.abs(self.predicted - self.ages)

    def mae(self) -> float:
        """MAE pooled over every held-out video of the folds done."""
        return float(self.errors().mean())

    def on_folds(self, folds: Sequence[int]) -> FoldPredictions:
        """The videos held out by ``folds`` only (to compare two variants over the folds both have done)."""
        keep = np.isin(self.folds, list(folds))
        return FoldPredictions({f: d for f, d in self.run_dirs.items() if f in folds},
                               self.folds[keep], [v for v, k in zip(self.videos, keep) if k],
                               self.subjects[keep], self.ages[keep], self.predicted[keep])


def floor_ratio(runs: FoldPredictions, oracle_errors: dict[str, float]) -> dict[str, float]:
    """Pooled MAE divided by the oracle's MAE on the same videos, with a 95% subject-bootstrap interval."""
    missing = [v for v in runs.videos if v not in oracle_errors]
    if missing:
        raise ValueError(f"{runs.source}: {len(missing)} held-out videos (e.g. {missing[0]}) "
                         "have no oracle error")
    errors, floor = runs.errors(), np.array([oracle_errors[v] for v in runs.videos])
    low, high = subject_bootstrap_interval(errors, runs.subjects, denominator=floor)
    return {"ratio": float(errors.mean() / floor.mean()), "low": low, "high": high}


def difference_from(runs: FoldPredictions, reference: FoldPredictions) -> dict[str, float] | None:
    """Pooled MAE of ``runs`` minus that of ``reference`` over the folds both have done, with a 95% interval.

    The interval resamples held-out subjects (paired: both sides are scored on the same videos), so it
    says whether a difference between two variants is larger than this many subjects can tell apart.
    None when the two share no fold.
    """
    common = sorted(set(runs.folds.tolist()) & set(reference.folds.tolist()))
    if not common:
        return None
    runs, reference = runs.on_folds(common), reference.on_folds(common)
    if runs.videos != reference.videos:
        raise ValueError(f"{runs.source}: its held-out videos differ from those of {reference.source}; "
                         "compared runs must share the folds")
    difference = runs.errors() - reference.errors()
    low, high = subject_bootstrap_interval(difference, reference.subjects)
    return {"difference": float(difference.mean()), "low": low, "high": high, "folds": len(common)}


def _mean_cue_usage(usages: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]] | None:
    """Per cue, the model's and the oracle's correlations and the slope share, each averaged over the folds
    that know it (a record may lack the slope share)."""
    if not usages:
        return None
    return {cue: {key: _mean_known([u[cue].get(key) for u in usages]) for key in CUE_FIGURES}
            for cue in usages[0]}


def _mean_known(values: list[float | None]) -> float | None:
    """Mean of the values that are not None; None when none is known."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def ablation_markdown(table: list[dict[str, Any]]) -> str:
    """The ablation table as Markdown: held-out MAE over folds and pooled, its ratio to the oracle floor and
    difference from the best variant (95% subject intervals), attention per fold, cue usage."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    def mae(row: dict[str, Any]) -> str:
        return fmt(row["mae_mean"]) + ("" if row["mae_std"] is None else f" ± {row['mae_std']:.2f}")

    def versus(row: dict[str, Any]) -> str:
        value = row.get("minus_best")
        if row["best"] or value is None:
            return "best" if row["best"] else "n/a"
        shared = value["folds"]
        fewer = f" (over {shared} fold{'s' * (shared != 1)})" if shared < len(row["folds"]) else ""
        return f"{value['difference']:+.2f} [{value['low']:+.2f}, {value['high']:+.2f}]{fewer}"

    def times(value: dict[str, float] | None) -> str:
        return "n/a" if value is None else f"{value['ratio']:.2f}x [{value['low']:.2f}, {value['high']:.2f}]"

    def per_fold(values: list[float | None], lowest: float | None) -> str:
        return "n/a" if lowest is None else " / ".join(fmt(v) for v in values) + f" (min {lowest:.2f})"

    best = next((row["variant"] for row in table if row["best"]), "best")
    columns = ["variant", "folds", "held-out MAE (years)", "per fold", "pooled MAE", "x oracle floor [95% CI]",
               f"minus {best} [95% CI]", "temporal ratio", "spatial ratio"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        lines.append(f"| {row['variant']} | {len(row['folds'])}/{row['folds_planned']} | {mae(row)} | "
                     f"{' / '.join(fmt(v) for v in row['mae_per_fold'])} | {fmt(row['pooled_mae'])} | "
                     f"{times(row.get('floor_ratio'))} | {versus(row)} | "
                     f"{per_fold(row['temporal_ratio'], row['temporal_ratio_min'])} | "
                     f"{per_fold(row['spatial_ratio'], row['spatial_ratio_min'])} |")
    widest = max(table, key=lambda row: len(row["folds"]), default=None)
    if widest is not None and widest.get("oracle_mae") is not None:
        lines.append("")
        lines.append(f"Oracle floor on the held-out videos of {len(widest['folds'])} folds: "
                     f"{widest['oracle_mae']:.2f} years; mean predictor: {fmt(widest['mean_predictor_mae'])} years.")
    lines += cue_usage_markdown(table)
    return "\n".join(lines) + "\n"


def cue_usage_markdown(table: list[dict[str, Any]], over: str = "mean over the folds") -> list[str]:
    """Lines of two tables: per variant, how its error follows each generator cue (the oracle's last),
    then its slope share of each cue where the records carry one; ``over`` says how folds were combined."""
    usages = [(row, row["cue_usage"]) for row in table if row.get("cue_usage")]
    if not usages:
        return []
    cues = list(usages[0][1])
    widest = max(usages, key=lambda item: len(item[0]["folds"]))[1]
    lines = ["", f"Cue usage, {over}: correlation of the error with each cue's residual "
             + "(0 = the cue is not read).", "",
             "| variant | " + " | ".join(cues) + " |", "|---|" + "---|" * len(cues)]
    rows = [(row["variant"], {c: u[c]["model"] for c in cues}) for row, u in usages]
    rows.append(("oracle", {c: widest[c]["oracle"] for c in cues}))
    lines += [_cue_row(name, values, cues) for name, values in rows]
    shares = [(row["variant"], {c: u[c].get("slope_share") for c in cues}) for row, u in usages]
    if any(v is not None for _, values in shares for v in values.values()):
        lines += ["", f"Slope share, {over}: slope of the error on each cue's residual over "
                  + "the oracle's, which the model's other errors do not shrink (1 = read as the oracle "
                  + "reads it, 0 = not read).", "",
                  "| variant | " + " | ".join(cues) + " |", "|---|" + "---|" * len(cues)]
        lines += [_cue_row(name, values, cues) for name, values in shares]
    return lines


def _cue_row(name: str, values: dict[str, float | None], cues: list[str]) -> str:
    """One row of a cue table: signed figures, n/a where unknown."""
    cells = ["n/a" if values[c] is None else f"{values[c]:+.2f}" for c in cues]
    return f"| {name} | " + " | ".join(cells) + " |"
