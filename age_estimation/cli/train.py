"""``age-estimation train``: the main job for one pipeline config, from raw videos to an exported model."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from age_estimation.cli.common import add_config_arguments, config_or_none


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel/TFLite export")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON at the end")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cfg = config_or_none(args)
    if cfg is None:
        return 2
    from age_estimation.training.task import TrainingError
    from age_estimation.workflow import run_pipeline

    try:
        outcome = run_pipeline(cfg, progress=not args.json, export=False if args.no_export else None)
    except (TrainingError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}")
        return 1
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps({"run_dir": str(outcome.run_dir), "wall_seconds": wall, "timings": outcome.timings,
                          "metrics": outcome.metrics, "export": outcome.export}, default=str))
        return 0
    metrics = outcome.metrics
    print()
    print(f"run directory: {outcome.run_dir}  (model.keras, metrics.json, plots/, logs/)")
    prepared = outcome.prepare_report
    print(f"data: {len(prepared.get('prepared', [])) + len(prepared.get('skipped', []))} videos prepared, "
          f"{len(prepared.get('rejected', []))} rejected; {metrics['counts']}")
    print(f"training: {metrics['epochs_run']} epochs, {metrics['seconds_per_epoch']:.1f} s/epoch")
    if "attention" in metrics:
        att = metrics["attention"]
        print(f"attention: temporal informative/distractor {att['temporal_ratio']:.2f}, "
              f"spatial cue/non-cue {att['spatial_ratio']:.2f}")
    if outcome.export:
        tflite = outcome.export.get("tflite", {})
        print(f"exported: SavedModel {outcome.export['savedmodel']['path']}"
              + (f", TFLite {tflite['path']}" if tflite else ""))
    print(f"wall time: {wall / 60:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in outcome.timings.items())})")
    if "interval" in metrics:
        print(interval_line(metrics["interval"]))
    if "atypicality" in metrics:
        print(atypicality_line(metrics["atypicality"]))
    if "age_threshold" in metrics:
        print(threshold_line(metrics["age_threshold"]))
    print(summary_line(metrics))
    return 0


# Held-out MAE this much above the calibration videos' MAE makes under-coverage expected, and is said.
HARDER_HELDOUT = 1.1


def interval_line(interval: dict[str, Any]) -> str:
    """The held-out coverage and width of the calibrated interval, e.g. '90% nominal, 88.5% ... inside',
    and a second line when the held-out videos were clearly harder than the calibration ones."""
    line = (
        f"interval: {interval['coverage']:.0%} nominal, {interval['empirical_coverage']:.1%} of held-out ages "
        f"inside, mean width {interval['mean_width']:.1f} years"
    )
    others = [f"{float(level):.0%}: {one['empirical_coverage']:.1%} (width {one['mean_width']:.1f})"
              for level, one in interval.get("levels", {}).items() if float(level) != interval["coverage"]]
    if others:
        line += f"; {', '.join(others)}"
    calibration, heldout = interval.get("calibration_mae"), interval.get("mae")
    if calibration and heldout and heldout > HARDER_HELDOUT * calibration:
        line += (f"\n  the held-out videos were harder than the videos the interval is calibrated on "
                 f"(MAE {heldout:.2f} vs {calibration:.2f}), so fewer of their ages fall inside")
    return line


def atypicality_line(widening: dict[str, Any]) -> str:
    """The widening calibrated on corrupted validation copies, in one line."""
    if "skipped" in widening:
        return f"atypical input: not calibrated ({widening['skipped']})"
    factors = ", ".join(f"{f:.2f}x from {e:.1f}" for e, f in zip(widening["edges"], widening["factors"]))
    limit = "never refused" if widening["limit"] is None else f"refused beyond {widening['limit']:.1f}"
    return (f"atypical input: interval widened {factors or 'never'}, {limit} "
            f"({widening['copies_answered']} answered copies of {widening['videos']} validation videos)")


def threshold_line(rates: dict[str, dict[str, Any]]) -> str:
    """The held-out rates of the ``--at-least 18`` decision: minors passed, adults refused, undecided."""
    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    one = rates.get("18") or next(iter(rates.values()))
    threshold = "18" if "18" in rates else next(iter(rates))
    return (f"at least {threshold}? held out: under-{threshold}s passed {rate(one['false_positive_rate'])}, "
            f"over-{threshold}s refused {rate(one['over_refused_rate'])}, undecided {rate(one['undecided_rate'])} "
            "(13, 21, 25 in metrics.json)")


def summary_line(metrics: dict[str, Any]) -> str:
    """The closing line of ``make train``."""
    floor = (metrics.get("attention") or {}).get("heldout_oracle_mae", metrics.get("oracle_floor_mae"))
    floor_text = f"{floor:.2f}" if floor is not None else "n/a"
    heldout = metrics["heldout"]
    return (
        f"held-out MAE: {heldout['mae']:.2f} years (oracle floor {floor_text}, "
        f"mean predictor {heldout['mean_predictor_mae']:.2f})"
    )
