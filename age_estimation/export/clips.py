"""Clips for export: cache clips for int8 calibration and parity, random clips when there is no cache.

Calibration draws from the development side of the held-out split; parity takes the held-out videos
first, so its MAE change says what the conversion costs on videos training never saw. A clip holds the
inputs of the model it is for: ``frames`` and ``mask``, and for a model that reads the landmark stream
``landmarks`` and ``landmark_mask``; its keys are ``Predictor.predict``'s arguments.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from age_estimation.config import PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import build_dataset
from age_estimation.data.splits import dev_heldout_split

Clip = dict[str, np.ndarray]


def cache_clips(
    cfg: PipelineConfig, count: int, purpose: str, heldout_first: bool = False, landmarks: bool = False
) -> tuple[list[Clip], list[float], int]:
    """Up to ``count`` batch-1 clips of T frames from the cache, their ages, and how many are held out.

    Calibration draws from the development side; parity (``heldout_first``) takes the held-out videos
    first and fills up with development ones. ``landmarks`` adds the landmark stream (the cache must hold
    it). A missing cache, or one prepared at another crop size than the run's (not this run's data), is a
    ``FileNotFoundError`` naming ``purpose``.
    """
    cache_dir = Path(cfg.data.cache_dir)
    try:
        index = read_index(cache_dir)
    except (FileNotFoundError, ValueError) as err:
        raise FileNotFoundError(f"{purpose} needs clips from the prepared cache: {err}") from err
    cached_crop = index.get("align", {}).get("crop_size", cfg.align.crop_size)
    if cached_crop != cfg.align.crop_size:
        raise FileNotFoundError(f"{purpose} needs clips of this run's data, but the cache at {cache_dir} holds "
                                f"{cached_crop} px crops and the run reads {cfg.align.crop_size} px ones")
    try:
        dev, heldout = dev_heldout_split(index, cfg.data.heldout_fraction, cfg.data.split_seed, cfg.data.folds,
                                         cfg.data.heldout_fold)
    except ValueError:
        dev, heldout = sorted(index.get("videos", {})), []
    ids = ((heldout + dev) if heldout_first else (dev + heldout))[:count]
    if not ids:
        raise FileNotFoundError(f"{purpose} needs clips, but the cache at {cache_dir} lists no videos")
    data = dataclasses.replace(cfg.data, batch_size=1)
    clips, ages = [], []
    dataset = build_dataset(cache_dir, ids, data, training=False, landmarks=landmarks)
    for inputs, targets in dataset.as_numpy_iterator():
        clips.append({name: value.astype(np.uint8 if name == "frames" else np.float32)
                      for name, value in inputs.items()})
        ages.append(float(targets["age"][0, 0]))
    held = sum(1 for vid in ids if vid in set(heldout)) if heldout_first else 0
    return clips, ages, held


def parity_clips(
    cfg: PipelineConfig, crop_size: int, landmark_points: int = 0
) -> tuple[list[Clip], list[float] | None, int, str]:
    """Parity clips from the cache (held-out first), or seeded random clips when there is no cache.

    ``landmark_points`` K > 0 adds the landmark stream of K points. Returns the clips, their ages (None
    for random clips), how many are held out, and where they came from.
    """
    count = cfg.export.parity_clips
    try:
        clips, ages, heldout = cache_clips(cfg, count, "parity", heldout_first=True, landmarks=landmark_points > 0)
        return clips, ages, heldout, f"cache {cfg.data.cache_dir}: {len(clips)} clips, {heldout} held out"
    except FileNotFoundError as err:
        clips = random_clips(count, cfg.data.clip_length, crop_size, landmark_points)
        return clips, None, 0, f"random clips ({err})"


def random_clips(count: int, steps: int, crop_size: int, landmark_points: int = 0, seed: int = 0) -> list[Clip]:
    """``count`` seeded batch-1 clips of noise frames (and, for K = ``landmark_points`` > 0, noise landmarks
    of about an eye distance's spread, every frame found)."""
    rng = np.random.default_rng(seed)
    shape = (1, steps, crop_size, crop_size, 3)
    clips = []
    for _ in range(count):
        clip = {"frames": rng.integers(0, 256, shape, dtype=np.uint8), "mask": np.ones(shape[:2], np.float32)}
        if landmark_points:
            clip["landmarks"] = rng.normal(0.0, 0.5, (1, steps, landmark_points, 2)).astype(np.float32)
            clip["landmark_mask"] = np.ones(shape[:2], np.float32)
        clips.append(clip)
    return clips
