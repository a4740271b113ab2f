"""The interval's widening on atypical input, calibrated on corrupted copies of validation videos.

An age-stratified share of the validation videos (``inference.atypicality.videos``) is predicted clean and as
each corrupted copy of ``inference.atypicality``'s corruptions and severities, through the corruption
benchmark (``evaluation.robustness``), so with every gate and measure ``predict`` has. Each answered copy
gives its input measures and its residual over the interval's scale at its prediction; ``fit_widening``
turns them into atypicality bins and factors, relative to the clean copies' own conformal quantile (the
predict path and the cached clips the interval was fitted on differ a little).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import AtypicalityConfig, PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import build_split_datasets
from age_estimation.evaluation.corruptions import CORRUPTIONS
from age_estimation.evaluation.robustness import Video, cached_sources, corruption_table, stratified_subset
from age_estimation.inference.atypicality import (
    Atypicality,
    conformal_quantile,
    fit_widening,
    input_measures,
)
from age_estimation.inference.interval import IntervalCalibration
from age_estimation.inference.spec import INTERVAL_NAME
from age_estimation.runs import MODEL_NAME


def calibrate_atypicality(
    predict_fn: Callable[[list[Path]], Iterable[Any]],
    videos: list[Video],
    interval: IntervalCalibration,
    cfg: AtypicalityConfig,
) -> tuple[Atypicality, dict[str, Any]]:
    """The widening for ``interval`` from ``cfg.videos`` of ``videos`` (validation videos) predicted by
    ``predict_fn`` clean and corrupted, and the benchmark table it came from. ``predict_fn`` must not widen or
    refuse by atypicality itself (predict with the interval's ``atypicality`` removed)."""
    unknown = [name for name in cfg.corruptions if name not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"inference.atypicality.corruptions: unknown {', '.join(unknown)} "
                         f"(known: {', '.join(CORRUPTIONS)})")
    chosen = stratified_subset(videos, cfg.videos)
    with tempfile.TemporaryDirectory(prefix="atypicality-") as workdir:
        table = corruption_table(predict_fn, chosen, list(cfg.corruptions), list(cfg.severities), workdir,
                                 progress=False)
    ages = np.array([video[1] for video in chosen], float)
    clean, copies = [], []
    for row in table["rows"]:
        for i, result in enumerate(row["results"]):
            if "age" not in result:
                continue
            measures = input_measures(result.get("quality"), result.get("flip_gap"))
            residual = abs(ages[i] - result["age"]) / float(interval.scale(result["age"]))
            copies.append((measures, residual))
            if row["corruption"] == "clean":
                clean.append((measures, residual))
    if not clean:
        reasons = "; ".join(f"{count} x {reason}" for reason, count in table["rows"][0]["reasons"].items())
        raise ValueError(f"no clean validation video got an age ({reasons or 'none answered'}), so the widening "
                         "on atypical input cannot be calibrated")
    base = conformal_quantile(np.array([r for _, r in clean]), interval.coverage)
    return fit_widening([m for m, _ in clean], copies, base, interval.coverage), table


def without_atypicality(interval: IntervalCalibration | None) -> IntervalCalibration | None:
    """``interval`` with no widening: what predict uses while the widening is calibrated."""
    return None if interval is None else dataclasses.replace(interval, atypicality=None)


def calibrate_run(cfg: PipelineConfig, run_dir: str | Path, progress: bool = False) -> dict[str, Any] | None:
    """Calibrate a finished run's widening on its validation videos and write it into its ``interval.json``;
    a summary for ``metrics.json``, or None with ``inference.atypicality.videos`` 0 or no interval."""
    from age_estimation.inference.predict import predict_videos
    from age_estimation.inference.run_exports import run_spec
    from age_estimation.inference.runtimes import KerasPredictor

    run_dir = Path(run_dir)
    spec = run_spec(run_dir)
    if cfg.inference.atypicality.videos < 1 or spec.interval is None:
        return None
    started = time.perf_counter()
    predictor = KerasPredictor(run_dir / MODEL_NAME)  # the run's spec: its interval and face ranges
    predictor.spec = predictor.spec.updated({"interval": without_atypicality(spec.interval)})
    window = int(predictor.clip_length or cfg.data.clip_length)

    def predict_fn(paths: list[Path]) -> Iterable[Any]:
        return predict_videos(paths, predictor, cfg.align, window, progress=False)

    settings = cfg.inference.atypicality
    if progress:
        print(f"atypical input: predicting {settings.videos} validation videos clean and as corrupted copies "
              f"({', '.join(settings.corruptions)}; severities {', '.join(map(str, settings.severities))})",
              file=sys.stderr, flush=True)
    # The benchmark's per-row lines would read as results; the calibration's summary goes to metrics.json.
    widening, table = calibrate_atypicality(predict_fn, validation_videos(cfg), spec.interval, settings)
    write_json_atomic(run_dir / INTERVAL_NAME,
                      dataclasses.replace(spec.interval, atypicality=widening).to_json())
    return {"videos": len(table["videos"]), "copies_answered": sum(r["answered"] for r in table["rows"]),
            "edges": [round(e, 3) for e in widening.edges], "factors": [round(f, 3) for f in widening.factors],
            "limit": round(widening.limit, 3) if math.isfinite(widening.limit) else None,
            "seconds": round(time.perf_counter() - started, 1)}


def validation_videos(cfg: PipelineConfig) -> list[Video]:
    """(source path, age, subject) of the run config's validation videos, through its cache index; a
    warning names each one whose source file is gone (it is left out)."""
    index = read_index(cfg.data.cache_dir)["videos"]
    split = build_split_datasets(cfg, landmarks=cfg.model.reads_landmarks)
    videos, missing = cached_sources(cfg.data.cache_dir, {
        vid: (str(index[vid]["subject"]), float(index[vid]["age"])) for vid in split.val_ids})
    for line in missing:
        print(f"warning: atypical input: left out validation video {line}", file=sys.stderr)
    return videos
