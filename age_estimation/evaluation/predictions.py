"""Predictions on prepared videos and the held-out / cross-validation reports built from them."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from age_estimation.config import DataConfig
from age_estimation.data.pipeline import build_dataset
from age_estimation.inference.runtimes import KerasPredictor


@dataclass
class Predictions:
    """Per-video predictions, in ``video_ids`` order, with the attention the model gave each clip."""

    video_ids: list[str]
    true: np.ndarray
    pred: np.ndarray
    mask: np.ndarray
    source_index: np.ndarray
    temporal: np.ndarray
    spatial: np.ndarray | None
    frames: np.ndarray | None = None


def collect_predictions(
    model: keras.Model,
    cache_dir: str | Path,
    video_ids: list[str],
    data: DataConfig,
    keep_frames: int = 0,
    test_time_flip: bool = False,
) -> Predictions:
    """Run ``model`` on the evaluation clip of each video; keep the frames of the first ``keep_frames``.

    The clips go through the same ``KerasPredictor`` that ``predict`` uses, so ``test_time_flip``
    (``inference.test_time_flip``) averages each age with the mirrored clip's exactly as deployment does.
    """
    predictor = KerasPredictor(model, {"test_time_flip": test_time_flip})
    landmarks = bool(getattr(model, "reads_landmarks", False))
    ds = build_dataset(cache_dir, video_ids, data, training=False, include_meta=True, landmarks=landmarks)
    ids, true, pred, masks, sources, temporal, spatial, frames = [], [], [], [], [], [], [], []
    for inputs, targets, meta in ds:
        stream = {name: inputs[name].numpy() for name in ("landmarks", "landmark_mask") if name in inputs}
        out = predictor.predict(inputs["frames"].numpy(), inputs["mask"].numpy(), **stream)
        ids += [v.decode() for v in meta["video_id"].numpy()]
        true.append(targets["age"].numpy()[:, 0])
        pred.append(out["age"])
        masks.append(inputs["mask"].numpy())
        sources.append(meta["source_index"].numpy())
        temporal.append(np.asarray(out["temporal_attention"]))
        if "spatial_attention" in out:
            spatial.append(np.asarray(out["spatial_attention"]))
        if sum(len(f) for f in frames) < keep_frames:
            frames.append(inputs["frames"].numpy())
    return Predictions(
        video_ids=ids,
        true=np.concatenate(true),
        pred=np.concatenate(pred),
        mask=np.concatenate(masks),
        source_index=np.concatenate(sources),
        temporal=np.concatenate(temporal),
        spatial=np.concatenate(spatial) if spatial else None,
        frames=np.concatenate(frames)[:keep_frames] if frames else None,
    )


def read_predictions_csv(path: str | Path) -> dict[str, tuple[str, float, float]]:
    """Video id -> (subject, true age, predicted age) from a file ``write_predictions_csv`` wrote."""
    with open(path, newline="") as handle:
        return {row["video_id"]: (row["subject"], float(row["age"]), float(row["predicted"]))
                for row in csv.DictReader(handle)}


def write_predictions_csv(
    path: str | Path, predictions: Predictions, index: dict[str, Any], folds: list[Any] | None = None
) -> None:
    """One row per video: id, subject, label, true age, predicted age, absolute error, and its fold."""
    folds = folds if folds is not None else [""] * len(predictions.video_ids)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "subject", "label", "age", "predicted", "abs_error", "fold"])
        for vid, t, p, fold in zip(predictions.video_ids, predictions.true, predictions.pred, folds):
            info = index["videos"].get(vid, {})
            writer.writerow([vid, info.get("subject", ""), info.get("label", ""), f"{t:.2f}", f"{p:.2f}",
                             f"{abs(p - t):.2f}", fold])
