"""How the interval's calibration choices score on trained runs: held-out coverage and width of each.

For each run folder, the model predicts its validation subjects (the ones that selected the checkpoint
and the ones held back to calibrate) and its held-out subjects, and the interval is refitted three ways:

- ``held back``: what training writes: age-bin scales from the selecting subjects, the conformal
  quantile from the held-back ones (used for nothing else);
- ``held back, one bin``: the quantile of the held-back subjects' plain residuals (one scale);
- ``whole fold``: scales and quantile both from every validation subject, the subjects that also chose
  the checkpoint (the calibration before ``data.calibration_share``);
- ``whole fold, one bin``: the same with a single scale (no per-age scaling).

Run ``python -m age_estimation.experiments.calibration RUN [RUN ...]``; it prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import load_config
from age_estimation.data.pipeline import build_split_datasets
from age_estimation.evaluation.predictions import collect_predictions
from age_estimation.inference.interval import fit_interval, interval_report
from age_estimation.models.siam.model import load_siam
from age_estimation.runs import CONFIG_NAME, MODEL_NAME

LEVELS = (0.5, 0.9, 0.95)


def compare_run(run_dir: Path) -> dict[str, Any]:
    """Held-out coverage and mean width at each level of ``LEVELS`` for each calibration, in one run."""
    cfg = load_config(run_dir / CONFIG_NAME)
    split = build_split_datasets(cfg, landmarks=cfg.model.reads_landmarks)
    model = load_siam(run_dir / MODEL_NAME)

    def predicted(ids: list[str]) -> Any:
        return collect_predictions(model, split.cache_dir, ids, cfg.data, test_time_flip=cfg.inference.test_time_flip)

    selecting, heldout = predicted(split.val_ids), predicted(split.heldout_ids)
    held_back = predicted(split.calibration_ids) if split.calibration_ids else selecting
    whole = (np.concatenate([selecting.true, held_back.true]), np.concatenate([selecting.pred, held_back.pred]))
    fits = {
        "held back": lambda level: fit_interval(held_back.true, held_back.pred, level,
                                                scale_data=(selecting.true, selecting.pred)),
        "held back, one bin": lambda level: fit_interval(held_back.true, held_back.pred, level, bins=1),
        "whole fold": lambda level: fit_interval(*whole, level),
        "whole fold, one bin": lambda level: fit_interval(*whole, level, bins=1),
    }
    scores = {name: {level: interval_report(fit(level), heldout.true, heldout.pred) for level in LEVELS}
              for name, fit in fits.items()}
    return {"run": str(run_dir), "heldout_mae": float(np.abs(heldout.true - heldout.pred).mean()),
            "calibration_mae": float(np.abs(held_back.true - held_back.pred).mean()), "scores": scores}


def markdown(results: list[dict[str, Any]], command: str) -> str:
    """One row per run and calibration: coverage (mean width) at each level, then the mean over runs."""
    lines = [f"<!-- written by: {command} on {time.strftime('%Y-%m-%d')} -->", "", "# Interval calibration", "",
             (f"Written by `{command}` on {time.strftime('%Y-%m-%d')}. Each run's interval refitted four ways "
             "and scored on its held-out subjects (coverage, and mean width in years): `held back` is what "
             "training writes (age-bin scales from the validation subjects that chose the checkpoint, the "
             "conformal quantile from the held-back ones); `held back, one bin` the held-back subjects' plain "
             "residual quantile; `whole fold` scales and quantile from every validation subject, those that "
             "chose the checkpoint included (the calibration before held-back subjects); `one bin` a single "
             "scale."), "",
             "| run | held-out MAE | calibration MAE | calibration | "
             + " | ".join(f"{level:.0%} coverage (width)" for level in LEVELS) + " |",
             "|---|---|---|---|" + "---|" * len(LEVELS)]
    names = list(results[0]["scores"])
    for result in results:
        for name in names:
            cells = [f"{r['empirical_coverage']:.1%} ({r['mean_width']:.1f})"
                     for r in result["scores"][name].values()]
            lines.append(f"| {Path(result['run']).name} | {result['heldout_mae']:.2f} | "
                         f"{result['calibration_mae']:.2f} | {name} | " + " | ".join(cells) + " |")
    for name in names:
        cells = []
        for level in LEVELS:
            covered = [r["scores"][name][level]["empirical_coverage"] for r in results]
            widths = [r["scores"][name][level]["mean_width"] for r in results]
            cells.append(f"{np.mean(covered):.1%} ({np.mean(widths):.1f}), lowest {min(covered):.1%}")
        lines.append(f"| mean of {len(results)} | | | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders")
    args = parser.parse_args(argv)
    results = [compare_run(run) for run in args.runs]
    print(markdown(results, "python -m age_estimation.experiments.calibration " + " ".join(map(str, args.runs))))


if __name__ == "__main__":
    main()
