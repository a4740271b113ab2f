"""Clips for export: cache clips for int8 calibration and parity, random clips when there is no cache.

Calibration draws from the development side of the held-out split; parity takes the held-out videos
first, so its MAE change says what the conversion costs on videos training never saw.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from age_estimation.config import PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import build_dataset
from age_estimation.data.splits import heldout_split

Clip = dict[str, np.ndarray]


def cache_clips(
    cfg: PipelineConfig, count: int, purpose: str, heldout_first: bool = False
) -> tuple[list[Clip], list[float], int]:
    """Up to ``count`` batch-1 clips of T frames from the cache, their ages, and how many are held out.

    Calibration draws from the development side; parity (``heldout_first``) takes the held-out videos
    first and fills up with development ones. A missing cache is a ``FileNotFoundError`` naming ``purpose``.
    """
    cache_dir = Path(cfg.data.cache_dir)
    try:
        index = read_index(cache_dir)
    except (FileNotFoundError, ValueError) as err:
        raise FileNotFoundError(f"{purpose} needs clips from the prepared cache: {err}") from err
    try:
        dev, heldout = heldout_split(index, cfg.data.heldout_fraction, cfg.data.split_seed)
    except ValueError:
        dev, heldout = sorted(index.get("videos", {})), []
    ids = ((heldout + dev) if heldout_first else (dev + heldout))[:count]
    if not ids:
        raise FileNotFoundError(f"{purpose} needs clips, but the cache at {cache_dir} lists no videos")
    data = dataclasses.replace(cfg.data, batch_size=1)
    clips, ages = [], []
    for inputs, targets in build_dataset(cache_dir, ids, data, training=False).as_numpy_iterator():
        clips.append({"frames": inputs["frames"], "mask": inputs["mask"].astype(np.float32)})
        ages.append(float(targets["age"][0, 0]))
    held = sum(1 for vid in ids if vid in set(heldout)) if heldout_first else 0
    return clips, ages, held


def parity_clips(cfg: PipelineConfig, crop_size: int) -> tuple[list[Clip], list[float] | None, int, str]:
    """Parity clips from the cache (held-out first), or seeded random clips when there is no cache.

    Returns the clips, their ages (None for random clips), how many are held out, and where they came from.
    """
    count = cfg.export.parity_clips
    try:
        clips, ages, heldout = cache_clips(cfg, count, "parity", heldout_first=True)
        return clips, ages, heldout, f"cache {cfg.data.cache_dir}: {len(clips)} clips, {heldout} held out"
    except FileNotFoundError as err:
        rng = np.random.default_rng(0)
        shape = (1, cfg.data.clip_length, crop_size, crop_size, 3)
        clips = [
            {"frames": rng.integers(0, 256, shape, dtype=np.uint8), "mask": np.ones(shape[:2], np.float32)}
            for _ in range(count)
        ]
        return clips, None, 0, f"random clips ({err})"
