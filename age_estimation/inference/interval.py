"""A calibrated interval for every age: split-conformal prediction, optionally scaled by predicted age.

The conformal quantile q of the residuals |y - ŷ| divided by a residual scale is taken on videos the model
did not train on; the interval ŷ ± q·scale(ŷ), clipped at 0 years, then holds the true age with the
nominal coverage on new videos like the calibration ones. The scale is the mean absolute residual in
quantile bins of ŷ (one bin: a constant), shrunk towards the overall mean so a small bin cannot explode
or vanish; with several bins it is fitted on other videos than the quantile's, since scales fitted on
the quantile's own residuals make it optimistic. numpy only, so every runtime (the edge path included)
applies the same calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from age_estimation.inference.atypicality import Atypicality, conformal_quantile

METHOD = "split-conformal, residuals scaled per predicted-age bin"
# A bin needs this many calibration videos; fewer videos give fewer bins (one bin at the least).
MIN_PER_BIN = 10
# Each bin's scale is shrunk towards the overall one as if this many videos had the overall scale.
SHRINK_VIDEOS = 5
# A bin's scale stays within this factor of the overall scale, and never below FLOOR_YEARS.
SCALE_RATIO = 4.0
FLOOR_YEARS = 0.1


@dataclass(frozen=True)
class IntervalCalibration:
    """The fitted interval: nominal coverage, conformal quantile and the residual scale per age bin."""

    coverage: float
    quantile: float
    bin_edges: tuple[float, ...]
    bin_scales: tuple[float, ...]
    calibration_videos: int
    # The calibration videos' MAE: beside the held-out MAE it shows whether they were as hard as the
    # videos the interval is used on (an easier calibration set gives narrower intervals than it should).
    calibration_mae: float | None = None
    # How much wider the interval is on inputs unlike the clean validation videos (None: the same width).
    atypicality: Atypicality | None = None

    def __post_init__(self) -> None:
        _check_coverage(self.coverage)
        if len(self.bin_scales) < 1 or len(self.bin_edges) != len(self.bin_scales) + 1:
            raise ValueError(
                f"interval calibration needs k >= 1 bin scales and k + 1 bin edges, got "
                f"{len(self.bin_scales)} scales and {len(self.bin_edges)} edges"
            )
        if not all(s > 0 and math.isfinite(s) for s in self.bin_scales):
            raise ValueError(f"interval bin scales must be positive, got {list(self.bin_scales)}")
        if not (self.quantile >= 0 and math.isfinite(self.quantile)):
            raise ValueError(f"interval quantile must be a finite number >= 0, got {self.quantile}")

    def scale(self, age: Any) -> np.ndarray:
        """The residual scale at predicted ``age`` (the outer bins extend without end)."""
        inner = np.asarray(self.bin_edges[1:-1], float)
        return np.asarray(self.bin_scales, float)[np.searchsorted(inner, np.asarray(age, float), side="right")]

    def bounds(
        self, age: Any, widest: bool = False, factor: float = 1.0
    ) -> tuple[np.ndarray | float, np.ndarray | float]:
        """(low, high) of the interval around predicted ``age`` (a number or an array); low is >= 0.

        ``widest`` takes the largest bin scale wherever the age falls: for an input that the calibration
        videos were not like (damaged frames left out), whose age bin says little about its error.
        ``factor`` widens it for an atypical input (``Atypicality.factor``).
        """
        ages = np.asarray(age, float)
        half = factor * self.quantile * (np.full(ages.shape, max(self.bin_scales)) if widest else self.scale(ages))
        low, high = np.maximum(ages - half, 0.0), ages + half
        if ages.ndim == 0:
            return float(low), float(high)
        return low, high

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in ``interval.json`` and in every deployment spec."""
        return {
            "method": METHOD,
            "coverage": self.coverage,
            "quantile": self.quantile,
            "bin_edges": list(self.bin_edges),
            "bin_scales": list(self.bin_scales),
            "calibration_videos": self.calibration_videos,
            "calibration_mae": self.calibration_mae,
            **({"atypicality": self.atypicality.to_json()} if self.atypicality else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IntervalCalibration:
        """The calibration ``to_json`` wrote; a missing key is a ``ValueError`` naming it."""
        missing = [k for k in ("coverage", "quantile", "bin_edges", "bin_scales") if k not in data]
        if missing:
            raise ValueError(f"interval calibration lacks {', '.join(missing)}")
        return cls(
            coverage=float(data["coverage"]),
            quantile=float(data["quantile"]),
            bin_edges=tuple(float(e) for e in data["bin_edges"]),
            bin_scales=tuple(float(s) for s in data["bin_scales"]),
            calibration_videos=int(data.get("calibration_videos", 0)),
            calibration_mae=None if data.get("calibration_mae") is None else float(data["calibration_mae"]),
            atypicality=Atypicality.from_json(data["atypicality"]) if data.get("atypicality") else None,
        )


def fit_interval(
    true: np.ndarray,
    pred: np.ndarray,
    coverage: float = 0.9,
    bins: int = 4,
    scale_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> IntervalCalibration:
    """Calibrate the interval on videos' true and predicted ages (``bins`` predicted-age bins).

    ``scale_data`` (true, predicted) fits the residual scales on other videos than the quantile's, so
    the quantile is taken on residuals used for nothing else; without it both come from ``true``/``pred``.
    The quantile is the ⌈(n+1)·coverage⌉-th smallest normalised residual, the finite-sample conformal
    choice; with too few videos for it (n < coverage / (1 - coverage)) the largest one is used.
    """
    true, pred = _pair(true, pred)
    _check_coverage(coverage)
    if bins < 1:
        raise ValueError(f"interval bins must be at least 1, got {bins}")
    edges, scales = fit_scales(*(_pair(*scale_data) if scale_data is not None else (true, pred)), bins)
    residual = np.abs(true - pred)
    which = np.searchsorted(edges[1:-1], pred, side="right")
    normalised = residual / np.asarray(scales)[which]
    return IntervalCalibration(
        coverage=float(coverage),
        quantile=conformal_quantile(normalised, coverage),
        bin_edges=tuple(float(e) for e in edges),
        bin_scales=tuple(scales),
        calibration_videos=len(pred),
        calibration_mae=float(residual.mean()),
    )


def fit_scales(true: np.ndarray, pred: np.ndarray, bins: int) -> tuple[np.ndarray, list[float]]:
    """Predicted-age bin edges and each bin's residual scale: the mean |residual| in the bin, shrunk
    towards the overall mean and kept within ``SCALE_RATIO`` of it."""
    residual = np.abs(true - pred)
    overall = max(float(residual.mean()), FLOOR_YEARS)
    count = max(1, min(bins, len(pred) // MIN_PER_BIN))
    edges = np.unique(np.quantile(pred, np.linspace(0.0, 1.0, count + 1)))
    if len(edges) < 2:
        edges = np.array([pred[0], pred[0]])
    which = np.searchsorted(edges[1:-1], pred, side="right")
    scales = []
    for b in range(len(edges) - 1):
        chosen = residual[which == b]
        shrunk = (chosen.sum() + SHRINK_VIDEOS * overall) / (len(chosen) + SHRINK_VIDEOS)
        scales.append(float(np.clip(shrunk, max(overall / SCALE_RATIO, FLOOR_YEARS), overall * SCALE_RATIO)))
    return edges, scales


def interval_report(
    calibration: IntervalCalibration,
    true: np.ndarray,
    pred: np.ndarray,
    groups: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Empirical coverage and mean width (years) of the interval on ``true``/``pred``, overall and per
    true-age group in ``groups`` (name -> inclusive (low, high) years; groups with no video are left out),
    with the MAE of these videos beside the calibration videos' MAE."""
    true, pred = _pair(true, pred)
    low, high = calibration.bounds(pred)
    inside, width = (true >= low) & (true <= high), high - low
    report: dict[str, Any] = {
        "coverage": calibration.coverage,
        "empirical_coverage": float(inside.mean()),
        "mean_width": float(width.mean()),
        "videos": len(true),
        "mae": float(np.abs(true - pred).mean()),
        "calibration_mae": calibration.calibration_mae,
        "by_age_group": {},
    }
    for name, (first, last) in (groups or {}).items():
        chosen = (true >= first) & (true < last + 1)
        if chosen.any():
            report["by_age_group"][name] = {
                "empirical_coverage": float(inside[chosen].mean()),
                "mean_width": float(width[chosen].mean()),
                "count": int(chosen.sum()),
            }
    return report


def _pair(true: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """``true`` and ``pred`` as flat float arrays of one non-zero length with finite values."""
    true, pred = np.asarray(true, float).ravel(), np.asarray(pred, float).ravel()
    if len(true) != len(pred):
        raise ValueError(f"true and predicted ages differ in length: {len(true)} vs {len(pred)}")
    if len(true) == 0:
        raise ValueError("interval calibration needs at least one video with a true and a predicted age")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise ValueError("true and predicted ages must be finite numbers (found NaN or inf)")
    return true, pred


def _check_coverage(coverage: float) -> None:
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"interval coverage must be strictly between 0 and 1, got {coverage}")
