"""Age-regression metrics: MAE, per-age-group MAE, the cumulative score CS(k), subject-bootstrap intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

AGE_GROUPS = ((8, 12), (13, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 200))


def group_name(low: int, high: int) -> str:
    """'8-12', ..., '60+' for an inclusive age range."""
    return f"{low}+" if high >= 200 else f"{low}-{high}"


def age_group_mae(true: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """MAE and count per age group of the true age (groups with no sample are left out)."""
    true, pred = np.asarray(true, float).ravel(), np.asarray(pred, float).ravel()
    out = {}
    for low, high in AGE_GROUPS:
        chosen = (true >= low) & (true < high + 1)
        if chosen.any():
            out[group_name(low, high)] = {
                "mae": float(np.mean(np.abs(pred[chosen] - true[chosen]))),
                "count": int(chosen.sum()),
            }
    return out


def cumulative_score(true: np.ndarray, pred: np.ndarray, years: float = 5.0) -> float:
    """CS(years): the fraction of estimates within ``years`` of the true age."""
    err = np.abs(np.asarray(pred, float).ravel() - np.asarray(true, float).ravel())
    return float(np.mean(err <= years)) if err.size else float("nan")


def regression_report(true: np.ndarray, pred: np.ndarray, train_mean: float | None = None) -> dict[str, Any]:
    """MAE, RMSE, CS(5), per-group MAE and, given the training mean age, the mean-predictor MAE."""
    true, pred = np.asarray(true, float).ravel(), np.asarray(pred, float).ravel()
    if true.size == 0:
        raise ValueError("no predictions to evaluate")
    report = {
        "count": int(true.size),
        "mae": float(np.mean(np.abs(pred - true))),
        "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
        "cs5": cumulative_score(true, pred, 5.0),
        "age_groups": age_group_mae(true, pred),
    }
    if train_mean is not None:
        report["mean_predictor_mae"] = float(np.mean(np.abs(train_mean - true)))
    return report


def subject_bootstrap_interval(
    values: np.ndarray, subjects: np.ndarray, denominator: np.ndarray | None = None, resamples: int = 4000,
    level: float = 0.95, seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the mean of per-video ``values`` (or of mean(values) / mean(denominator)),
    resampling whole subjects with replacement.

    A subject's videos share a face, so they are not independent draws: resampling subjects (with all
    their videos) gives an honest interval for a test set of a few dozen people. With ``denominator``
    (e.g. the oracle's errors on the same videos) it is the interval of a ratio such as MAE / floor.

    Example:
        >>> subject_bootstrap_interval(np.array([1.0, 1.0, 3.0]), np.array(["a", "a", "b"]))
        (1.0, 3.0)
    """
    values = np.asarray(values, float).ravel()
    _, owner = np.unique(np.asarray(subjects).ravel(), return_inverse=True)
    if values.size == 0 or values.size != owner.size:
        raise ValueError(f"need one subject per value, got {values.size} values and {owner.size} subjects")
    below = np.ones_like(values) if denominator is None else np.asarray(denominator, float).ravel()
    if below.size != values.size:
        raise ValueError(f"need one denominator per value, got {below.size} for {values.size} values")
    sums, totals = np.bincount(owner, weights=values), np.bincount(owner, weights=below)
    draws = np.random.default_rng(seed).integers(0, sums.size, (resamples, sums.size))
    means = sums[draws].sum(axis=1) / totals[draws].sum(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
