"""How much work each bench measurement does, and the median-with-range summary of its repeats."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class BenchSizes:
    """How much work each measurement does."""

    videos: int
    repeats: int
    train_steps: int
    latency_runs: int
    predict_seconds: float
    variants: tuple[str, ...]
    # Length of the long 1080p video of the memory figures, at 25 fps. Ten minutes is a long interview;
    # writing it costs about 30 ms a frame here (7-8 minutes), and prepare and predict each read it once.
    long_video_seconds: float = 600.0
    # Frames of each 1080p video of the prepare figures: 150 (5 s at 30 fps) make one decode pass of the
    # four videos about 2 s here, long enough for a steady frame rate; 40 frames gave ratios 0.1 apart.
    hd_video_frames: int = 150


QUICK = BenchSizes(videos=4, repeats=3, train_steps=3, latency_runs=5, predict_seconds=2.0,
                   variants=("float32", "dynamic_range"), long_video_seconds=12.0,
                   hd_video_frames=40)
FULL = BenchSizes(videos=48, repeats=3, train_steps=10, latency_runs=30, predict_seconds=10.0,
                  variants=("float32", "float16", "dynamic_range", "int8"))


def median_spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def repeat(measure: Callable[[], float], times: int) -> dict[str, Any]:
    """Call ``measure`` ``times`` times and summarise the results."""
    return median_spread([measure() for _ in range(times)])


def paired_ratio(values: list[float], references: list[float]) -> float:
    """Median of ``values[i] / references[i]``: each ratio of two figures measured back to back."""
    return statistics.median(value / reference for value, reference in zip(values, references, strict=True))
