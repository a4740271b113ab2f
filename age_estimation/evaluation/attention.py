"""Interpretability against the synthetic generator's ground truth.

- temporal ratio: mean temporal weight of an informative frame / that of a distractor frame;
- spatial ratio: mean spatial attention of a map cell whose centre lies inside a cue region /
  that of a cell outside every cue region (over informative frames);
- held-out oracle MAE: the oracle floor restricted to the evaluated videos;
- cue usage: for each cue, the correlation of the model's error (predicted - true age) with the
  video's cue residual (latent value - its mean at the true age), beside the oracle's. A cue the
  model reads pulls its error the way the cue's noise points. Errors of other origin dilute that
  correlation, so each cue also has its slope share: the least-squares slope of the model's error on
  the residual over the oracle's (1 = the cue's noise moves the age as much as the oracle's, 0 = not read).
A model that ignores the cues scores 1.0 on both ratios and about 0 in cue usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import DataConfig
from age_estimation.data.cache import read_index, source_under
from age_estimation.data.synth.oracle import GROUND_TRUTH_NAME


def load_ground_truth(data_path: Path) -> dict[str, Any]:
    """The generator's ``ground_truth.json``; a clear error if the dataset is not synthetic."""
    path = Path(data_path) / GROUND_TRUTH_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic ground truth; attention can only be scored on synth data")
    return json.loads(path.read_text())


def synthetic_scores(predictions: Any, data: DataConfig) -> dict[str, Any] | None:
    """``{"attention": attention_mass, "cue_usage": cue_usage}`` of ``predictions``; None unless ``data`` is synthetic."""
    if data.source != "synthetic":
        return None
    data_path = Path(data.path)
    return {"attention": attention_mass(predictions, data_path, data.cache_dir),
            "cue_usage": cue_usage(predictions, data_path, data.cache_dir)}


def cue_cell_mask(regions: dict[str, list[float]], height: int, width: int) -> np.ndarray:
    """(height, width) booleans: cells whose centre falls inside any normalised cue box."""
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    inside = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in regions.values():
        inside |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return inside


def truth_rows(video_ids: list[str], truth: dict[str, Any], data_path: Path, cache_dir: str | Path) -> list[tuple]:
    """(position in ``video_ids``, ground-truth record) of every listed video the generator made."""
    index = read_index(cache_dir)
    rows = []
    for row, vid in enumerate(video_ids):
        video = truth["videos"].get(source_under(index["videos"][vid], data_path))
        if video is not None:
            rows.append((row, video))
    if not rows:
        raise ValueError(f"{data_path}: none of the evaluated videos is in the ground truth")
    return rows


def attention_mass(predictions: Any, data_path: Path, cache_dir: str | Path) -> dict[str, Any]:
    """Temporal and spatial attention ratios and the held-out oracle MAE for ``predictions``."""
    truth = load_ground_truth(data_path)
    informative_w, distractor_w, inside_a, outside_a, oracle_err = [], [], [], [], []
    inside_cells = None
    for row, video in truth_rows(predictions.video_ids, truth, data_path, cache_dir):
        oracle_err.append(abs(video["oracle_age"] - video["age"]))
        flags = np.asarray(video["informative"])
        valid = predictions.mask[row] > 0
        frames = predictions.source_index[row][valid]
        informative = flags[np.clip(frames, 0, len(flags) - 1)] == 1
        weights = predictions.temporal[row][valid]
        informative_w += list(weights[informative])
        distractor_w += list(weights[~informative])
        if predictions.spatial is not None:
            maps = predictions.spatial[row][valid][informative]
            if inside_cells is None:
                inside_cells = cue_cell_mask(truth["cue_regions"], *maps.shape[1:])
            inside_a += list(maps[:, inside_cells].ravel())
            outside_a += list(maps[:, ~inside_cells].ravel())
    return {
        "temporal_ratio": _ratio(informative_w, distractor_w),
        "spatial_ratio": _ratio(inside_a, outside_a) if predictions.spatial is not None else None,
        "heldout_oracle_mae": float(np.mean(oracle_err)),
        "frames": {"informative": len(informative_w), "distractor": len(distractor_w)},
    }


def cue_usage(predictions: Any, data_path: Path, cache_dir: str | Path) -> dict[str, dict[str, float | None]]:
    """Per cue, ``{"model": r, "oracle": r, "slope_share": s}``: how the model's and the oracle's errors
    follow that cue, and the model's error slope on it as a share of the oracle's.

    Example: ``{"hair_grey": {"model": -0.05, "oracle": 0.24, "slope_share": -0.1}}`` says the model does
    not read greying.
    """
    truth = load_ground_truth(data_path)
    generator, cue_model = truth["generator"], truth["cue_model"]
    rows = truth_rows(predictions.video_ids, truth, data_path, cache_dir)
    ages = np.array([video["age"] for _, video in rows], float)
    t = (ages - generator["min_age"]) / (generator["max_age"] - generator["min_age"])
    model_error = np.array([predictions.pred[row] for row, _ in rows]) - ages
    oracle_error = np.array([video["oracle_age"] for _, video in rows]) - ages
    usage = {}
    for name, spec in cue_model.items():
        residual = np.array([video["cues"][name] for _, video in rows]) - t ** spec["exponent"]
        usage[name] = {"model": _correlation(model_error, residual),
                       "oracle": _correlation(oracle_error, residual),
                       "slope_share": slope_share(model_error, oracle_error, residual)}
    return usage


def slope_share(model_error: np.ndarray, oracle_error: np.ndarray, residual: np.ndarray) -> float | None:
    """OLS slope of ``model_error`` on ``residual`` over that of ``oracle_error``: the share of the cue's
    effect on age the model takes up, which its other errors, unlike a correlation's, leave whole."""
    if len(residual) < 3 or np.var(residual) == 0:
        return None
    centred, oracle_centred = residual - residual.mean(), oracle_error - oracle_error.mean()
    oracle_slope = float(np.dot(oracle_centred, centred))  # both slopes times the same n * var(residual)
    if not abs(oracle_slope) > 1e-12 * np.linalg.norm(oracle_centred) * np.linalg.norm(centred):
        return None  # the oracle's error does not follow this cue (or is not finite)
    return float(np.dot(model_error - model_error.mean(), centred)) / oracle_slope


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _ratio(numerator: list[float], denominator: list[float]) -> float | None:
    if not numerator or not denominator or np.mean(denominator) <= 0:
        return None
    return float(np.mean(numerator) / np.mean(denominator))


def oracle_errors(video_ids: list[str], data_path: Path, cache_dir: str | Path) -> dict[str, float]:
    """Video id -> the oracle's absolute error on it, for the ids the generator made."""
    truth = load_ground_truth(data_path)
    return {video_ids[row]: abs(video["oracle_age"] - video["age"])
            for row, video in truth_rows(video_ids, truth, data_path, cache_dir)}
