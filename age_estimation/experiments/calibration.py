"""How the interval's calibration choices score on trained runs: held-out coverage and width of each.

For each run folder, the model predicts its validation subjects (those that selected the checkpoint and,
in a run trained with ``data.calibration_share`` > 0, those held back from selecting it) and its
held-out subjects, and the interval is refitted each way below and scored on the held-out subjects:

- ``whole fold, one bin``: what training writes by default: one residual scale, the conformal quantile
  from every validation subject;
- ``whole fold``: four predicted-age bins whose scales are fitted on the quantile's own residuals;
- ``held back``: scales from the selecting subjects, the quantile from the held-back ones, which did
  nothing else (strict split-conformal; needs held-back subjects);
- ``held back, one bin``: the held-back subjects' plain residual quantile.

Run ``python -m age_estimation.experiments.calibration RUN [RUN ...]``; it prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import load_config
from age_estimation.data.pipeline import build_split_datasets
from age_estimation.evaluation.predictions import collect_predictions
from age_estimation.inference.decision import threshold_rates
from age_estimation.inference.interval import fit_interval, interval_report
from age_estimation.models.siam.model import load_siam
from age_estimation.runs import CONFIG_NAME, MODEL_NAME

LEVELS = (0.5, 0.9, 0.95)
FOLD_FLOOR = 0.85  # a fold whose 90% interval holds less than this share of held-out ages is counted
SETS_NAME = "calibration_sets.json"  # the run's ages on each subject set, so a rerun only refits


def compare_run(run_dir: Path) -> dict[str, Any]:
    """Held-out coverage and mean width at each level of ``LEVELS`` for each calibration, in one run."""
    sets = predicted_sets(run_dir)
    selecting, held_back, heldout = (sets[name] for name in ("selecting", "held_back", "heldout"))
    whole = tuple(np.concatenate([a, b]) for a, b in zip(selecting, held_back))
    fits = {
        "whole fold, one bin": lambda level: fit_interval(*whole, level, bins=1),
        "whole fold": lambda level: fit_interval(*whole, level, bins=4),
    }
    if len(held_back[0]):
        fits["held back"] = lambda level: fit_interval(*held_back, level, bins=4, scale_data=selecting)
        fits["held back, one bin"] = lambda level: fit_interval(*held_back, level, bins=1)
    fitted = {name: {level: fit(level) for level in LEVELS} for name, fit in fits.items()}
    scores = {name: {level: interval_report(one, *heldout) for level, one in by_level.items()}
              for name, by_level in fitted.items()}
    minors = {name: threshold_rates(heldout[0], *by_level[0.9].bounds(heldout[1]), thresholds=(18,))["18"]
              for name, by_level in fitted.items()}
    return {"run": str(run_dir), "heldout_mae": float(np.abs(heldout[0] - heldout[1]).mean()),
            "calibration_mae": float(np.abs(whole[0] - whole[1]).mean()), "scores": scores, "at_18": minors}


def predicted_sets(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(true, predicted) ages of the run's selecting, held-back (maybe none) and held-out subjects'
    videos, predicted once and kept in the run folder (``SETS_NAME``)."""
    cached = run_dir / SETS_NAME
    if not cached.is_file():
        cfg = load_config(run_dir / CONFIG_NAME)
        split = build_split_datasets(cfg, landmarks=cfg.model.reads_landmarks)
        model = load_siam(run_dir / MODEL_NAME)
        ids = {"selecting": split.val_ids, "held_back": split.calibration_ids, "heldout": split.heldout_ids}
        ages = {name: [[], []] for name in ids}
        for name, chosen in ids.items():
            if chosen:
                one = collect_predictions(model, split.cache_dir, chosen, cfg.data,
                                          test_time_flip=cfg.inference.test_time_flip)
                ages[name] = [one.true.tolist(), one.pred.tolist()]
        write_json_atomic(cached, ages)
    return {name: (np.asarray(true, float), np.asarray(pred, float))
            for name, (true, pred) in json.loads(cached.read_text()).items()}


def markdown(results: list[dict[str, Any]], command: str) -> str:
    """A summary per calibration over the runs (mean coverage and width, spread, lowest, folds under
    ``FOLD_FLOOR`` at 90%, the mean share of under-18s its 90% interval passes as 18 or over), then one
    row per run and calibration."""
    names = list(dict.fromkeys(name for result in results for name in result["scores"]))
    level_heads = " | ".join(f"{level:.0%} coverage (width)" for level in LEVELS)
    lines = [f"<!-- written by: {command} on {time.strftime('%Y-%m-%d')} -->", "", "# Interval calibration", "",
             (f"Written by `{command}` on {time.strftime('%Y-%m-%d')}. Each run's interval refitted each way "
              "and scored on its held-out subjects (coverage, and mean width in years). `whole fold, one bin`: "
              "one residual scale, the quantile from every validation subject (what training writes); `whole "
              "fold`: four predicted-age bins whose scales come from the quantile's own residuals; `held back`: "
              "scales from the validation subjects that chose the checkpoint, the quantile from those held back "
              "(`data.calibration_share` 0.5); `held back, one bin`: the held-back subjects' plain residuals."), "",
             (f"| calibration | runs | {level_heads} | std at 90% | lowest at 90% | runs under {FOLD_FLOOR:.0%} "
              "| under-18s passed at 18 (90%) |"),
             "|---|---|" + "---|" * len(LEVELS) + "---|---|---|---|"]
    for name in names:
        scored = [r["scores"][name] for r in results if name in r["scores"]]
        cells = [f"{np.mean([s[level]['empirical_coverage'] for s in scored]):.1%} "
                 f"({np.mean([s[level]['mean_width'] for s in scored]):.1f})" for level in LEVELS]
        at_90 = np.array([s[0.9]["empirical_coverage"] for s in scored])
        passed = [r["at_18"][name]["false_positive_rate"] for r in results if name in r["scores"]]
        passed = [rate for rate in passed if rate is not None]
        lines.append(f"| {name} | {len(scored)} | " + " | ".join(cells)
                     + f" | {at_90.std():.1%} | {at_90.min():.1%} | {int((at_90 < FOLD_FLOOR).sum())} | "
                     + (f"{np.mean(passed):.1%} |" if passed else "- |"))
    lines += ["", f"| run | held-out MAE | calibration MAE | calibration | {level_heads} |",
              "|---|---|---|---|" + "---|" * len(LEVELS)]
    for result in results:
        run = Path(result["run"])
        for name, scores in result["scores"].items():
            cells = [f"{r['empirical_coverage']:.1%} ({r['mean_width']:.1f})" for r in scores.values()]
            lines.append(f"| {run.parent.name}/{run.name} | {result['heldout_mae']:.2f} | "
                         f"{result['calibration_mae']:.2f} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders")
    args = parser.parse_args(argv)
    results = [compare_run(run) for run in args.runs]
    print(markdown(results, "python -m age_estimation.experiments.calibration " + " ".join(map(str, args.runs))))


if __name__ == "__main__":
    main()
