"""The paper-style ablation: every variant trained with several seeds on one split, compared per subject.

Each run trains through :func:`age_estimation.training.fit.train` into its own run directory; the
summary is written as ``ablation.json`` and ``ablation.md`` next to them after every run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import VARIANTS, PipelineConfig, to_dict, with_changes
from age_estimation.evaluation.attention import oracle_errors, synthetic_scores
from age_estimation.evaluation.metrics import subject_bootstrap_interval
from age_estimation.evaluation.predictions import read_predictions_csv
from age_estimation.runs import CONFIG_NAME, PREDICTIONS_NAME
from age_estimation.training.fit import train


def ablation(cfg: PipelineConfig, out_dir: Path, seeds: list[int], variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Train every variant with every seed on the same split; held-out MAE and attention figures per run.

    Resumable: a finished run leaves ``result.json`` in its directory and is not trained again, an
    interrupted one continues from its backup, and the table is rewritten after every run.
    """
    if not seeds or not variants:
        raise ValueError("ablation needs at least one variant and one seed")
    runs = []
    for variant in variants:
        for seed in seeds:
            run_cfg = with_changes(cfg, model={"variant": variant}, runtime={"seed": seed}, export={"after_training": False})
            run_dir = out_dir / f"{variant}-seed{seed}"
            row = _finished_ablation_run(run_cfg, run_dir) or _ablation_run(run_cfg, run_dir)
            runs.append(row)
            print(f"{variant:14s} seed {seed}: held-out MAE {row['mae']:.2f}")
            summary = _write_ablation(cfg, out_dir, runs, variants)
    return summary


_ABLATION_RESULT = "result.json"


def _finished_ablation_run(run_cfg: PipelineConfig, run_dir: Path) -> dict[str, Any] | None:
    """The recorded figures of a finished run of exactly ``run_cfg`` in ``run_dir``, else None."""
    result = run_dir / _ABLATION_RESULT
    if not result.exists():
        return None
    if yaml.safe_load((run_dir / CONFIG_NAME).read_text()) != to_dict(run_cfg):
        raise ValueError(f"{run_dir}: holds a finished run of another configuration; "
                         "pass another output folder or delete this one")
    return json.loads(result.read_text())


def _ablation_run(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Train one variant with one seed and record its figures in ``run_dir/result.json``."""
    started = time.perf_counter()
    result = train(cfg, run_dir=run_dir, verbose=0)
    row = {
        "variant": cfg.model.variant, "seed": cfg.runtime.seed, "run_dir": str(result.run_dir),
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


def _write_ablation(
    cfg: PipelineConfig, out_dir: Path, runs: list[dict[str, Any]], variants: tuple[str, ...]
) -> dict[str, Any]:
    done = tuple(v for v in variants if any(r["variant"] == v for r in runs))
    predictions = {v: SeedPredictions.read([out_dir / f"{v}-seed{r['seed']}" for r in runs if r["variant"] == v])
                   for v in done}
    oracle = _oracle_errors(cfg, predictions[done[0]].videos)
    summary = {"runs": runs, "table": _ablation_table(runs, predictions, oracle)}
    write_json_atomic(out_dir / "ablation.json", summary)
    write_bytes_atomic(out_dir / "ablation.md", ablation_markdown(summary["table"]).encode())
    return summary


def _oracle_errors(cfg: PipelineConfig, videos: list[str]) -> dict[str, float] | None:
    """The oracle's error on each of the held-out ``videos`` (synthetic data), else None."""
    if cfg.data.source != "synthetic":
        return None
    return oracle_errors(videos, Path(cfg.data.path), cfg.data.cache_dir)


def _ablation_table(
    runs: list[dict[str, Any]], predictions: dict[str, SeedPredictions], oracle: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """One entry per variant of ``predictions`` (its seeds' held-out predictions, in table order)."""
    reference = predictions.get("siam")
    table = []
    for variant, seeds in predictions.items():
        rows = [r for r in runs if r["variant"] == variant]
        entry = {"variant": variant, "seeds": len(rows),
                 "mae_mean": float(np.mean([r["mae"] for r in rows])), "mae_std": float(np.std([r["mae"] for r in rows])),
                 "seed_ensemble_mae": seed_ensemble_mae(seeds),
                 "minus_siam": (difference_from(seeds, reference)
                                if reference is not None and variant != "siam" else None),
                 "floor_ratio": floor_ratio(seeds, oracle) if oracle else None}
        for key in ("temporal_ratio", "spatial_ratio", "oracle_mae", "mean_predictor_mae"):
            entry[key] = _mean_known([r.get(key) for r in rows])
        entry["cue_usage"] = _mean_cue_usage([r["cue_usage"] for r in rows if r.get("cue_usage")])
        table.append(entry)
    return table


@dataclasses.dataclass
class SeedPredictions:
    """The held-out predictions of several runs on the same videos (sorted by id), one row per run."""

    run_dirs: list[Path]
    videos: list[str]
    subjects: np.ndarray
    ages: np.ndarray
    predicted: np.ndarray  # (runs, videos)

    @classmethod
    def read(cls, run_dirs: list[Path]) -> SeedPredictions:
        """Load each run's predictions CSV; every run must cover the same videos."""
        run_dirs = [Path(run_dir) for run_dir in run_dirs]
        tables = [read_predictions_csv(run_dir / PREDICTIONS_NAME) for run_dir in run_dirs]
        first, videos = tables[0], sorted(tables[0])
        for run_dir, table in zip(run_dirs[1:], tables[1:]):
            _check_same_videos(sorted(table), run_dir, videos, run_dirs[0])
        return cls(run_dirs, videos, np.array([first[v][0] for v in videos]), np.array([first[v][1] for v in videos]),
                   np.array([[table[v][2] for v in videos] for table in tables]))

    def run_errors(self) -> np.ndarray:
        """Per video, the absolute error averaged over the runs (its mean is the runs' mean MAE)."""
        return np.mean(np.abs(self.predicted - self.ages), axis=0)


def _check_same_videos(videos: list[str], source: Path, expected: list[str], origin: Path) -> None:
    """Raise, naming ``source``, unless its held-out ``videos`` are those of ``origin``."""
    if videos != expected:
        raise ValueError(f"{source}: its held-out videos differ from those of {origin}; "
                         "compared runs must share the split")


def seed_ensemble_mae(runs: SeedPredictions) -> float | None:
    """Held-out MAE of the runs' predictions averaged per video; None for fewer than two runs.

    Averaging over seeds removes what changes from one training to the next, so two variants can
    be compared with less of that noise (and it is what an ensemble of those runs would score).
    """
    if len(runs.predicted) < 2:
        return None
    return float(np.mean(np.abs(runs.predicted.mean(axis=0) - runs.ages)))


def floor_ratio(runs: SeedPredictions, oracle_errors: dict[str, float]) -> dict[str, float]:
    """Mean-over-seeds MAE divided by the oracle's MAE on the same videos, with a 95% subject interval."""
    missing = [v for v in runs.videos if v not in oracle_errors]
    if missing:
        raise ValueError(f"{runs.run_dirs[0]}: {len(missing)} held-out videos (e.g. {missing[0]}) "
                         "have no oracle error")
    errors, floor = runs.run_errors(), np.array([oracle_errors[v] for v in runs.videos])
    low, high = subject_bootstrap_interval(errors, runs.subjects, denominator=floor)
    return {"ratio": float(errors.mean() / floor.mean()), "low": low, "high": high}


def difference_from(runs: SeedPredictions, reference: SeedPredictions) -> dict[str, float]:
    """Mean-over-seeds MAE of ``runs`` minus that of ``reference``, with a 95% interval.

    The interval resamples held-out subjects (paired: both sides are scored on the same videos), so it
    says whether a difference between two variants is larger than this test set can tell apart.
    """
    _check_same_videos(runs.videos, runs.run_dirs[0], reference.videos, reference.run_dirs[0])
    difference = runs.run_errors() - reference.run_errors()
    low, high = subject_bootstrap_interval(difference, reference.subjects)
    return {"difference": float(difference.mean()), "low": low, "high": high}


def _mean_cue_usage(usages: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]] | None:
    """Per cue, the model's correlation averaged over seeds, and the oracle's (the same in every run)."""
    if not usages:
        return None
    return {cue: {"model": _mean_known([u[cue]["model"] for u in usages]), "oracle": usages[0][cue]["oracle"]}
            for cue in usages[0]}


def _mean_known(values: list[float | None]) -> float | None:
    """Mean of the values that are not None; None when none is known."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def ablation_markdown(table: list[dict[str, Any]]) -> str:
    """The ablation table as Markdown: held-out MAE (mean +- std over seeds; the difference from SIAM with
    a subject-bootstrap 95% interval; the MAE of the seeds' averaged predictions), attention, cue usage."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    def versus(value: dict[str, float] | None) -> str:
        return "" if value is None else f"{value['difference']:+.2f} [{value['low']:+.2f}, {value['high']:+.2f}]"

    def times(value: dict[str, float] | None) -> str:
        return "n/a" if value is None else f"{value['ratio']:.2f}x [{value['low']:.2f}, {value['high']:.2f}]"

    columns = ["variant", "seeds", "held-out MAE (years)", "x oracle floor [95% CI]", "minus siam [95% CI]",
               "seed ensemble", "temporal ratio", "spatial ratio"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        lines.append(f"| {row['variant']} | {row['seeds']} | {row['mae_mean']:.2f} ± {row['mae_std']:.2f} | "
                     f"{times(row.get('floor_ratio'))} | {versus(row.get('minus_siam'))} | "
                     f"{fmt(row.get('seed_ensemble_mae'))} | "
                     f"{fmt(row['temporal_ratio'])} | {fmt(row['spatial_ratio'])} |")
    if table and table[0].get("oracle_mae") is not None:
        lines.append("")
        lines.append(f"Oracle floor on these held-out videos: {table[0]['oracle_mae']:.2f} years; "
                     f"mean predictor: {fmt(table[0]['mean_predictor_mae'])} years.")
    lines += cue_usage_markdown(table)
    return "\n".join(lines) + "\n"


def cue_usage_markdown(table: list[dict[str, Any]]) -> list[str]:
    """Lines of a table: per variant, how its error follows each generator cue (the oracle's last)."""
    usages = [(row["variant"], row.get("cue_usage")) for row in table if row.get("cue_usage")]
    if not usages:
        return []
    cues = list(usages[0][1])
    lines = ["", "Cue usage: correlation of the error with each cue's residual (0 = the cue is not read).", "",
             "| variant | " + " | ".join(cues) + " |", "|---|" + "---|" * len(cues)]
    rows = [(variant, {c: u[c]["model"] for c in cues}) for variant, u in usages]
    rows.append(("oracle", {c: usages[0][1][c]["oracle"] for c in cues}))
    for name, values in rows:
        cells = ["n/a" if values[c] is None else f"{values[c]:+.2f}" for c in cues]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
