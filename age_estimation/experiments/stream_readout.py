"""A linear reader of the landmark stream's smile track: how much age, and which cues, the stream offers.

Per prepared clip, the mouth-corner lift (``video.landmarks.smile_lift``) over its frames, frames
without a mesh filled by interpolation, resampled to ``TRACK_POINTS`` steps, gives fixed features:
the track, its differences, its sorted values, those rescaled to the clip's own range (how long the
smile stays at each level of its swing, whatever its amplitude), the range and the expression label.
A ridge regressor on them, fitted on the other folds of the ablation's subject k-fold, predicts every
clip's age when its fold is held out. Its MAE and, on synthetic data, its cue usage are a reference
for the learned models: what a reader of the stream alone can take from it.

On synthetic data the reader also runs beside the generator's regional cues with Gaussian noise
(a stand-in for an appearance model that reads them imperfectly), which shows whether the track
still adds the timing cues next to appearance. Given a trained variant's held-out ages from the
same folds (``ablation_predictions``), it also stacks the track on them: what the network leaves
of the stream's reading.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from age_estimation.config import PipelineConfig
from age_estimation.data.cache import read_clip, read_index
from age_estimation.data.splits import kfold_splits
from age_estimation.evaluation.attention import cue_usage, load_ground_truth, truth_rows
from age_estimation.experiments.ablation import FoldPredictions, variant_run_dir
from age_estimation.runs import PREDICTIONS_NAME
from age_estimation.video.landmarks import smile_lift

TRACK_POINTS = 40
PENALTIES = (1.0, 10.0, 100.0, 1000.0)
DYNAMIC_CUES = ("smile_onset", "smile_amplitude", "smile_apex")
REGIONAL_CUES = ("forehead_lines", "crows_feet", "eye_bags", "nasolabial_folds", "skin_spots", "hair_grey")
_MIN_FOUND = 3
_EDGE = 3  # the range runs from the mean of the lowest to that of the highest _EDGE values, not one frame
_MIN_RANGE = 0.02


def smile_track(clip: dict[str, Any], points: int = TRACK_POINTS) -> np.ndarray | None:
    """The clip's smile lift at ``points`` evenly spaced times, mesh misses interpolated; None below 3 found."""
    found = np.asarray(clip["landmark_found"], bool)
    if found.sum() < _MIN_FOUND:
        return None
    lift = smile_lift(np.asarray(clip["landmarks"], np.float32))
    steps = np.arange(len(found))
    track = np.interp(steps, steps[found], lift[found])
    return np.interp(np.linspace(0, len(found) - 1, points), steps, track)


def track_features(track: np.ndarray, posed: bool) -> np.ndarray:
    """Fixed-length features of a smile track: itself, its differences, sorted, sorted over its range, range, label."""
    ordered = np.sort(track)
    low = ordered[:_EDGE].mean()
    swing = ordered[-_EDGE:].mean() - low
    rescaled = (ordered - low) / max(swing, _MIN_RANGE)
    return np.concatenate([track, np.diff(track), ordered, rescaled, [swing, float(posed)]])


def fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge weights on standardised ``x``: (weights with the intercept last, feature means, feature scales).

    The intercept is the mean of ``y`` and is not penalised, so a strong penalty shrinks the readings
    toward the mean age, not toward zero."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    weights = np.linalg.solve(z.T @ z + penalty * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return np.append(weights, y.mean()), mean, scale


def predict_ridge(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    weights, mean, scale = model
    return np.hstack([(x - mean) / scale, np.ones((len(x), 1))]) @ weights


def readout_predictions(
    features: np.ndarray, ages: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray,
    inner_fold: np.ndarray,
) -> np.ndarray:
    """Ages of ``test_rows`` from a ridge fitted on ``train_rows``, its penalty chosen by inner folds of them."""
    def inner_mae(penalty: float) -> float:
        errors = []
        for k in np.unique(inner_fold[train_rows]):
            fit_rows, check_rows = train_rows[inner_fold[train_rows] != k], train_rows[inner_fold[train_rows] == k]
            model = fit_ridge(features[fit_rows], ages[fit_rows], penalty)
            errors.append(np.abs(predict_ridge(model, features[check_rows]) - ages[check_rows]))
        return float(np.mean(np.concatenate(errors)))

    penalty = min(PENALTIES, key=inner_mae)
    return predict_ridge(fit_ridge(features[train_rows], ages[train_rows], penalty), features[test_rows])


def ablation_predictions(out_dir: str | Path, variant: str, folds: int) -> dict[str, float]:
    """Video id -> held-out age of ``variant`` over the folds of the ablation folder ``out_dir`` it has done."""
    run_dirs = {fold: variant_run_dir(Path(out_dir), variant, fold) for fold in range(folds)}
    done = {fold: run_dir for fold, run_dir in run_dirs.items() if (run_dir / PREDICTIONS_NAME).is_file()}
    if not done:
        raise ValueError(f"{out_dir}: no {variant}-fold*/{PREDICTIONS_NAME}; run the ablation with that variant first")
    predictions = FoldPredictions.read(done)
    return dict(zip(predictions.videos, predictions.predicted.tolist()))


def stream_readout(
    cfg: PipelineConfig, appearance_noise: tuple[float, ...] = (0.1, 0.2), network: dict[str, float] | None = None
) -> dict[str, Any]:
    """The readers' held-out MAE and cue usage over every fold of ``data.folds``; see the module docstring.

    With ``network`` (video id -> a trained variant's held-out age), only the clips it predicted are
    read, and two readers join: a ridge on that age alone and on that age beside the smile track.
    """
    cache_dir = Path(cfg.data.cache_dir)
    index = read_index(cache_dir)
    if not index.get("align", {}).get("landmarks"):
        raise ValueError(f"{cache_dir}: prepared without the landmark stream (align.landmarks); nothing to read")
    video_ids, tracks, posed, ages = [], [], [], []
    for vid in sorted(index["videos"]):
        entry = index["videos"][vid]
        if network is not None and vid not in network:
            continue
        track = smile_track(read_clip(cache_dir / entry["shard"]))
        if track is not None:
            video_ids.append(vid)
            tracks.append(track)
            posed.append(entry["label"] == "posed")
            ages.append(float(entry["age"]))
    if len(video_ids) < 2 * cfg.data.folds:
        raise ValueError(f"{cache_dir}: only {len(video_ids)} clips with a landmark track; "
                         f"{cfg.data.folds} folds need more")
    ages_array = np.array(ages)
    readers = {"smile track": np.array([track_features(t, p) for t, p in zip(tracks, posed)])}
    if cfg.data.source == "synthetic":
        regional = _regional_cues(video_ids, cfg)
        rng = np.random.default_rng(cfg.data.split_seed)
        for sigma in appearance_noise:
            noisy = regional + sigma * rng.standard_normal(regional.shape)
            appearance = np.hstack([noisy, noisy**2])
            readers[f"regional cues, noise {sigma:g}"] = appearance
            readers[f"regional cues, noise {sigma:g} + smile track"] = np.hstack([appearance, readers["smile track"]])
    if network is not None:
        network_age = np.array([[network[vid]] for vid in video_ids])
        readers["network"] = network_age
        readers["network + smile track"] = np.hstack([network_age, readers["smile track"]])
    # The folds of every prepared clip, as the ablation's ``data.heldout_fold`` cuts them.
    fold_of_video = {vid: k for k, (_, held_out) in
                     enumerate(kfold_splits(sorted(index["videos"]), index, cfg.data.folds, cfg.data.split_seed))
                     for vid in held_out}
    fold_of = np.array([fold_of_video[vid] for vid in video_ids])
    return {"videos": len(video_ids), "skipped": len(index["videos"]) - len(video_ids),
            "folds": cfg.data.folds,
            "readers": {name: _reader_scores(x, ages_array, fold_of, video_ids, cfg) for name, x in readers.items()}}


def _reader_scores(
    x: np.ndarray, ages: np.ndarray, fold_of: np.ndarray, video_ids: list[str], cfg: PipelineConfig
) -> dict[str, Any]:
    predicted = np.zeros_like(ages)
    for k in range(cfg.data.folds):
        train_rows, test_rows = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        predicted[test_rows] = readout_predictions(x, ages, train_rows, test_rows, fold_of)
    scores: dict[str, Any] = {"mae": float(np.mean(np.abs(predicted - ages)))}
    if cfg.data.source == "synthetic":
        usage = cue_usage(SimpleNamespace(video_ids=video_ids, pred=predicted), Path(cfg.data.path),
                          cfg.data.cache_dir)
        scores["cue_usage"] = {cue: values["model"] for cue, values in usage.items()}
        scores["oracle_cue_usage"] = {cue: values["oracle"] for cue, values in usage.items()}
        scores["cue_slope_share"] = {cue: values["slope_share"] for cue, values in usage.items()}
    return scores


def _regional_cues(video_ids: list[str], cfg: PipelineConfig) -> np.ndarray:
    """(N, 6) the generator's regional cue values of each clip's source video."""
    data_path = Path(cfg.data.path)
    records = dict(truth_rows(video_ids, load_ground_truth(data_path), data_path, cfg.data.cache_dir))
    return np.array([[records[row]["cues"][cue] for cue in REGIONAL_CUES] for row in range(len(video_ids))], float)


def readout_markdown(summary: dict[str, Any]) -> str:
    """The readers as Markdown tables: MAE and the dynamic cues' usage, then their slope share."""
    title = (f"Linear readers, {summary['folds']}-fold by subject over {summary['videos']} clips "
             f"({summary['skipped']} without a landmark track):")
    lines = [title, "",
             "| reader | held-out MAE | " + " | ".join(DYNAMIC_CUES) + " |",
             "|---|---|" + "---|" * len(DYNAMIC_CUES)]
    oracle = None
    for name, scores in summary["readers"].items():
        usage = scores.get("cue_usage") or {}
        oracle = scores.get("oracle_cue_usage", oracle)
        cells = [_signed(usage.get(cue)) for cue in DYNAMIC_CUES]
        lines.append(f"| {name} | {scores['mae']:.2f} | " + " | ".join(cells) + " |")
    if oracle:
        lines.append("| oracle | | " + " | ".join(_signed(oracle.get(cue)) for cue in DYNAMIC_CUES) + " |")
    shares = {name: scores["cue_slope_share"] for name, scores in summary["readers"].items()
              if scores.get("cue_slope_share")}
    if shares:
        lines += ["", "Slope share of each cue (the reader's error slope on its residual over the oracle's):",
                  "",
                  "| reader | " + " | ".join(DYNAMIC_CUES) + " |", "|---|" + "---|" * len(DYNAMIC_CUES)]
        lines += [f"| {name} | " + " | ".join(_signed(share.get(cue)) for cue in DYNAMIC_CUES) + " |"
                  for name, share in shares.items()]
    return "\n".join(lines) + "\n"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
