"""The main job as one call: data (generate if synthetic, then prepare) -> train -> evaluate -> calibrate the
interval's widening on corrupted validation copies -> export.

``make train`` runs :func:`run_pipeline` through ``age-estimation train``; every step is idempotent, so
a rerun reuses the generated videos, the prepared cache and an unfinished run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig
from age_estimation.data.prepare import prepare_data
from age_estimation.evaluation.attention import synthetic_scores
from age_estimation.evaluation.input_calibration import calibrate_run
from age_estimation.evaluation.landmark_tracking import smile_tracking
from age_estimation.export.run import export_run
from age_estimation.runs import METRICS_NAME
from age_estimation.training.fit import train


@dataclass
class PipelineOutcome:
    """Everything the summary needs."""

    run_dir: Path
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    prepare_report: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] | None = None


def run_pipeline(cfg: PipelineConfig, progress: bool = True, export: bool | None = None) -> PipelineOutcome:
    """Prepare, train, score attention on synthetic data, calibrate the widening, and export; returns the
    outcome with timings."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    report = prepare_data(cfg, progress)
    timings["data"] = time.perf_counter() - started

    started = time.perf_counter()
    result = train(cfg, verbose="auto" if progress else 0)
    timings["train"] = time.perf_counter() - started
    metrics = result.metrics
    if not metrics.get("distribution", {}).get("chief", True):
        return PipelineOutcome(result.run_dir, metrics, timings, report)  # a multi-worker helper: chief reports

    scores = synthetic_scores(result.heldout, cfg.data)
    if scores is not None:
        metrics.update(scores)
        tracking = smile_tracking(result.heldout.video_ids, cfg.data.path, cfg.data.cache_dir, cfg.synth)
        if tracking is not None:
            metrics["landmark_tracking"] = tracking
        write_json_atomic(result.run_dir / METRICS_NAME, metrics)

    started = time.perf_counter()
    try:
        widening = calibrate_run(cfg, result.run_dir, progress)
    except ValueError as err:  # the run stands; its interval keeps one width for every input
        print(f"warning: {result.run_dir}: {err}", file=sys.stderr)
        widening = {"skipped": str(err)}
    if widening is not None:
        timings["atypicality"] = time.perf_counter() - started
        metrics["atypicality"] = widening
        write_json_atomic(result.run_dir / METRICS_NAME, metrics)

    exported = None
    wanted = cfg.export.after_training if export is None else export
    if wanted and cfg.model.variant == "dynamics_only":
        print("not exporting: variant dynamics_only is an ablation model without frames")
        wanted = False
    if wanted:
        started = time.perf_counter()
        exported = export_run(result.run_dir, export_cfg=cfg.export)
        timings["export"] = time.perf_counter() - started
    return PipelineOutcome(result.run_dir, metrics, timings, report, exported)

