"""How faithful and how fast the exports are: parity vs Keras, file sizes, op lists, LiteRT latency.

Every figure runs one forward pass per clip on both sides (no test-time flip), so it measures the
conversion alone; every side is a ``Predictor`` fed the clips' inputs (frames, mask and, for a model that
reads it, the landmark stream). ``format_table`` prints the report (with a softmax column for the per-frame
face-age export's, ``export/face_age.py``); ``write_report`` saves it beside the variants.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_json_atomic
from age_estimation.export.clips import Clip
from age_estimation.export.tflite import TFLiteArtifact
from age_estimation.inference.runtimes import KerasPredictor, Predictor, SavedModelPredictor, TFLitePredictor

REPORT_NAME = "report.json"


def clip_ages(predictor: Predictor, clips: list[Clip]) -> np.ndarray:
    """``predictor``'s age for each batch-1 clip, one forward pass each (no test-time flip)."""
    return np.concatenate([predictor.predict(test_time_flip=False, **clip)["age"] for clip in clips])


def keras_ages(model: Any, clips: list[Clip]) -> np.ndarray:
    """The Keras model's age for each batch-1 clip."""
    return clip_ages(KerasPredictor(model), clips)


def savedmodel_parity(model: Any, saved: Path, clips: list[Clip]) -> float:
    """Max |age diff| between the loaded SavedModel's ``padded`` signature and Keras on ``clips`` as one batch."""
    batch = [{name: np.concatenate([c[name] for c in clips]) for name in clips[0]}]
    got = clip_ages(SavedModelPredictor(saved), batch)
    return float(np.max(np.abs(got - keras_ages(model, batch))))


def export_report(
    model: Any,
    artifacts: list[TFLiteArtifact],
    clips: list[Clip],
    ages: list[float] | None = None,
    heldout: int = 0,
    threads: tuple[int, ...] = (1, 2),
    runs: int = 20,
) -> dict[str, Any]:
    """Parity vs Keras on ``clips`` (max |age diff|; MAE change on the first ``heldout`` when ``ages`` is
    given), file size, op list and median LiteRT latency per variant and thread count."""
    reference = keras_ages(model, clips)
    truth = np.asarray(ages[:heldout], dtype=float) if ages and heldout else None
    report: dict[str, Any] = {
        "parity_clips": len(clips),
        "heldout_clips": heldout if truth is not None else 0,
        "variants": {},
    }
    if truth is not None:
        report["keras_heldout_mae"] = float(np.mean(np.abs(reference[:heldout] - truth)))
    for artifact in artifacts:
        predictor = TFLitePredictor(artifact.path, num_threads=max(threads))
        got = clip_ages(predictor, clips)
        entry: dict[str, Any] = {
            "path": str(artifact.path),
            "size_bytes": artifact.size_bytes,
            "max_abs_diff_years": float(np.max(np.abs(got - reference))),
            "mean_abs_diff_years": float(np.mean(np.abs(got - reference))),
            "delegate": predictor.delegate,
            "ops": artifact.ops,
            "latency_ms": {str(n): measure_latency(artifact.path, clips[0], n, runs) for n in threads},
        }
        if truth is not None:
            mae = float(np.mean(np.abs(got[:heldout] - truth)))
            entry["heldout_mae"] = mae
            entry["mae_change_years"] = mae - report["keras_heldout_mae"]
        report["variants"][artifact.variant] = entry
    return report


def measure_latency(path: str | Path, clip: Clip, num_threads: int, runs: int = 20) -> float:
    """Median milliseconds of one LiteRT call on ``clip`` with ``num_threads`` threads (after warm-up)."""
    predictor = TFLitePredictor(path, num_threads=num_threads)
    return median_ms(lambda: predictor.predict(test_time_flip=False, **clip), runs)


def median_ms(call: Callable[[], Any], runs: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``call()`` over ``runs`` calls, after ``warmup`` calls."""
    return float(np.median(call_ms(call, runs, warmup)))


def call_ms(call: Callable[[], Any], runs: int = 20, warmup: int = 3) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``call()``, after ``warmup`` calls (compilation, caches)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def format_table(report: dict[str, Any]) -> str:
    """The size / parity / latency table of ``export_report`` as aligned text."""
    threads = sorted({t for v in report["variants"].values() for t in v["latency_ms"]}, key=int)
    softmax = any("max_abs_diff_softmax" in v for v in report["variants"].values())  # a per-frame model's
    header = ["variant", "size KiB", *(["max|diff| p"] if softmax else []), "max|diff| y", "MAE change y"]
    header += [f"ms @{t} thr" for t in threads]
    rows = [header]
    for name, v in report["variants"].items():
        change = v.get("mae_change_years")
        rows.append(
            [
                name,
                f"{v['size_bytes'] / 1024:.1f}",
                *([f"{v.get('max_abs_diff_softmax', float('nan')):.4g}"] if softmax else []),
                f"{v['max_abs_diff_years']:.4g}",
                "-" if change is None else f"{change:+.3f}",
            ]
            + [f"{v['latency_ms'][t]:.2f}" for t in threads]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    """Save the report as ``report.json`` beside the variants."""
    path = Path(out_dir) / REPORT_NAME
    write_json_atomic(path, json.loads(json.dumps(report)))
    return path
