"""The tf.data input pipeline: prepared cache -> fixed-length, masked, augmented clip batches.

Each element is ``(inputs, targets)`` or, with ``include_meta``, ``(inputs, targets, meta)``::

    inputs  = {"frames": uint8 (B, T, H, W, 3), "mask": float32 (B, T)}   # mask 0.0 = padding
              (+ "landmarks": float32 (B, T, K, 2), "landmark_mask": float32 (B, T) with ``landmarks``;
               landmark_mask 0.0 where the face mesh found no face or the frame is padding)
    targets = {"age": float32 (B, 1)}
    meta    = {"video_id": string (B,), "source_index": int64 (B, T), "face_found": int64 (B, T)}

Order of stages: read shards (each one element: its header and chunk records) -> parse (parallel) -> cache parsed clips in memory -> shuffle ->
repeat -> sample a clip of T frames and draw its augmentation (parallel; stateless randomness
seeded per element from ``Dataset.random``) -> batch -> flip/brightness/contrast on the whole
batch (one XLA-fused pass) -> prefetch. Caching before sampling means each epoch draws new clips
from the same videos. With a seed (or ``data.deterministic``) the same seed gives the same
batches, run after run and process after process, under the same global TensorFlow seed (tf.data
combines the two; training sets the global one from ``runtime.seed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

from age_estimation.config import AugmentConfig, DataConfig, PipelineConfig
from age_estimation.data.cache import parse_clip, read_index, read_shards
from age_estimation.data.splits import calibration_split, dev_heldout_split, kfold_splits, subsample_subjects

AUTOTUNE = tf.data.AUTOTUNE
# Independent random streams drawn from one per-element seed.
_STRIDE, _START, _FLIP, _CONTRAST, _BRIGHTNESS, _PHASE = range(6)


@dataclass
class SplitData:
    """Train / val datasets of one fold, with the video ids behind them and the held-out ids."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    train_ids: list[str]
    val_ids: list[str]  # the validation subjects that select the checkpoint (early stopping, best epoch)
    heldout_ids: list[str]
    fold: int
    cache_dir: str
    batch_size: int
    counts: dict[str, int] = field(default_factory=dict)
    landmarks: bool = False  # whether the inputs carry the landmark stream
    # The validation subjects held back to calibrate the interval (empty: it is calibrated on ``val_ids``).
    calibration_ids: list[str] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        """Training batches in one pass over ``train_ids``."""
        return steps_per_epoch(len(self.train_ids), self.batch_size)


def steps_per_epoch(n_videos: int, batch_size: int) -> int:
    """Batches needed to see every one of ``n_videos`` once (the last batch may be partial)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return math.ceil(max(n_videos, 0) / batch_size)


def shard_paths(cache_dir: str | Path, index: dict[str, Any], video_ids: list[str]) -> list[str]:
    """Shard files of ``video_ids``; a clear error for an id the index lacks or a missing file."""
    cache_dir = Path(cache_dir)
    videos = index.get("videos", {})
    unknown = [vid for vid in video_ids if vid not in videos]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(f"{cache_dir}: {len(unknown)} video id(s) not in the cache index: {shown}")
    paths = []
    for vid in video_ids:
        path = cache_dir / videos[vid]["shard"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard of video {vid} is missing; run `age-estimation prepare` again")
        paths.append(str(path))
    return paths


def build_dataset(
    cache_dir: str | Path,
    video_ids: list[str],
    data: DataConfig,
    training: bool,
    seed: int | None = None,
    include_meta: bool = False,
    repeat: bool = False,
    landmarks: bool = False,
) -> tf.data.Dataset:
    """Batches of fixed-length masked clips from the cache (see the module docstring for the layout).

    ``landmarks`` adds the landmark stream (for a model with ``dynamics``); the cache must hold it.
    The flip augmentation leaves the landmarks as they are: the model reads them through features
    that a mirror image does not change (``models/siam/layers.py:LandmarkDynamics``).
    Training shuffles, samples clips with temporal jitter and augments (when configured); eval
    takes ``clip_length`` frames spread uniformly over each video, in ``video_ids`` order.
    ``seed`` (or ``data.deterministic``, which means seed 0) makes the batch sequence reproducible.
    """
    cache_dir = Path(cache_dir)
    if not video_ids:
        raise ValueError(f"{cache_dir}: no videos selected for this dataset (empty id list)")
    index = read_index(cache_dir)
    if landmarks and not index.get("align", {}).get("landmarks"):
        raise ValueError(f"{cache_dir}: the model reads the landmark stream (model.dynamics) but this cache "
                         "was prepared without it; set align.landmarks=true and prepare again")
    paths = shard_paths(cache_dir, index, list(video_ids))
    if seed is None and data.deterministic:
        seed = 0
    deterministic = seed is not None or not training

    ds = read_shards(paths)  # one element per video: its shard's records
    ds = ds.map(_parse, num_parallel_calls=AUTOTUNE)
    if data.memory_cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(max(1, min(data.shuffle_buffer, len(paths))), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    crop = index.get("align", {}).get("crop_size")
    augment = data.augment if training and data.augment.enabled else None
    jitter = augment is not None and augment.temporal_jitter
    min_span = data.augment.temporal_min_span
    photometric = augment is not None and (augment.flip or augment.brightness > 0 or augment.contrast > 0)

    def to_example(clip: dict[str, tf.Tensor], rand: tf.Tensor) -> tuple[dict[str, tf.Tensor], ...]:
        element_seed = tf.stack([tf.cast(rand, tf.int64), tf.constant(0, tf.int64)])
        example = _make_example(clip, element_seed, data.clip_length, crop, jitter, min_span, include_meta,
                                landmarks)
        if photometric:
            example[0].update(augment_params(augment, element_seed))
        return example

    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(ds, randoms).map(to_example, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(data.batch_size, num_parallel_calls=AUTOTUNE)
    if photometric:
        ds = ds.map(_augment_batch, num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)


def build_split_datasets(
    cfg: PipelineConfig,
    fold: int | None = None,
    seed: int | None = None,
    repeat_train: bool = False,
    landmarks: bool = False,
) -> SplitData:
    """Held-out split plus fold ``fold`` (default ``cfg.data.fold``) of k-fold over the dev subjects.

    ``landmarks`` adds the landmark stream to the inputs (see ``build_dataset``).
    ``seed`` None means ``cfg.runtime.seed`` in deterministic mode (data or train) and unseeded otherwise.
    """
    data = cfg.data
    fold = data.fold if fold is None else fold
    if not 0 <= fold < data.folds:
        raise ValueError(f"fold {fold} is outside [0, {data.folds}) (data.folds)")
    if seed is None and (data.deterministic or cfg.runtime.deterministic):
        seed = cfg.runtime.seed
    cache_dir = Path(data.cache_dir)
    index = read_index(cache_dir)
    try:
        dev_ids, heldout_ids = dev_heldout_split(index, data.heldout_fraction, data.split_seed, data.folds,
                                                 data.heldout_fold)
        train_ids, val_ids = kfold_splits(dev_ids, index, data.folds, data.split_seed)[fold]
        train_ids = subsample_subjects(train_ids, index, data.train_subjects, data.split_seed)
        val_ids, calibration_ids = calibration_split(val_ids, index, data.calibration_share, data.split_seed)
    except ValueError as err:
        raise ValueError(f"{cache_dir}: dataset too small or unusable for the splits: {err}") from err
    return SplitData(
        train=build_dataset(cache_dir, train_ids, data, training=True, seed=seed, repeat=repeat_train,
                            landmarks=landmarks),
        val=build_dataset(cache_dir, val_ids, data, training=False, seed=seed, landmarks=landmarks),
        train_ids=train_ids,
        val_ids=val_ids,
        heldout_ids=heldout_ids,
        fold=fold,
        cache_dir=str(cache_dir),
        batch_size=data.batch_size,
        landmarks=landmarks,
        calibration_ids=calibration_ids,
        counts={
            "train": len(train_ids),
            "val": len(val_ids),
            "calibration": len(calibration_ids),
            "heldout": len(heldout_ids),
            "subjects_train": _count_subjects(index, train_ids),
            "subjects_val": _count_subjects(index, val_ids),
            "subjects_calibration": _count_subjects(index, calibration_ids),
            "subjects_heldout": _count_subjects(index, heldout_ids),
        },
    )



def sample_indices(
    num_frames: tf.Tensor, clip_length: int, jitter: bool, seed: tf.Tensor, min_span: float = 0.7
) -> tuple[tf.Tensor, tf.Tensor]:
    """Frame indices (T,) into a video of ``num_frames`` and a bool mask of the real ones.

    Without jitter: T indices spread uniformly from the first to the last frame. With jitter: a
    random temporal crop covering ``min_span`` to all of the video at a random start, sampled with
    the matching (fractional) stride and shifted by a random phase of up to half a stride, so the
    clip sees other frames than the eval one. ``min_span`` 1 keeps the eval time scale exactly,
    which matters when the pace of the expression is itself an age cue.
    A video shorter than T gives all its frames, then padding (mask False).
    """
    n = tf.cast(num_frames, tf.int32)
    length = tf.cast(n, tf.float32)
    span, start, phase = length, tf.constant(0.0), tf.constant(0.0)
    if jitter:
        shortest = tf.maximum(float(clip_length), min(max(min_span, 0.0), 1.0) * length)
        span = shortest + tf.random.stateless_uniform([], _substream(seed, _STRIDE)) * (length - shortest)
        start = tf.random.stateless_uniform([], _substream(seed, _START)) * (length - span)
        stride = (span - 1.0) / max(clip_length - 1, 1)
        phase = (tf.random.stateless_uniform([], _substream(seed, _PHASE)) - 0.5) * stride
    positions = tf.clip_by_value(start + phase + tf.linspace(0.0, span - 1.0, clip_length), 0.0,
                                 tf.maximum(length - 1.0, 0.0))
    spread = tf.minimum(tf.cast(tf.round(positions), tf.int32), n - 1)
    steps = tf.range(clip_length, dtype=tf.int32)
    indices = tf.where(n >= clip_length, spread, steps)
    return indices, indices < n


def augment_params(augment: AugmentConfig, seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """One clip's photometric draw (flip, contrast factor, brightness delta), shared by all its frames."""
    flip = tf.random.stateless_uniform([], _substream(seed, _FLIP)) < 0.5
    factor = tf.random.stateless_uniform(
        [], _substream(seed, _CONTRAST), minval=1.0 - augment.contrast, maxval=1.0 + augment.contrast
    )
    delta = tf.random.stateless_uniform(
        [], _substream(seed, _BRIGHTNESS), minval=-augment.brightness, maxval=augment.brightness
    )
    return {"aug_flip": tf.logical_and(flip, augment.flip), "aug_contrast": factor, "aug_brightness": delta}


@tf.function(jit_compile=True)
def apply_augment(
    frames: tf.Tensor, mask: tf.Tensor, flip: tf.Tensor, contrast: tf.Tensor, brightness: tf.Tensor
) -> tf.Tensor:
    """Flip, contrast (about each frame's mean) and brightness of a uint8 batch (B, T, H, W, 3).

    One draw per clip; padding stays zero and the result stays uint8. XLA fuses it into one pass.
    """
    x = tf.cast(frames, tf.float32)
    x = tf.where(flip[:, None, None, None, None], tf.reverse(x, axis=[3]), x)
    factor = contrast[:, None, None, None, None]
    offset = tf.reduce_mean(x, axis=[2, 3], keepdims=True) * (1.0 - factor)
    x = x * factor + offset + 255.0 * brightness[:, None, None, None, None]
    x = tf.clip_by_value(x + 0.5, 0.0, 255.0) * mask[:, :, None, None, None]  # +0.5: round on the cast
    return tf.cast(x, tf.uint8)


def _augment_batch(inputs: dict[str, tf.Tensor], *rest: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], ...]:
    params = [inputs.pop(key) for key in ("aug_flip", "aug_contrast", "aug_brightness")]
    frames = apply_augment(inputs["frames"], inputs["mask"], *params)
    return ({**inputs, "frames": tf.ensure_shape(frames, inputs["frames"].shape)}, *rest)


def _parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    ex = parse_clip(serialized)
    keep = ("video_id", "age", "num_frames", "frames", "face_found", "source_index", "landmarks", "landmark_found")
    return {key: ex[key] for key in keep}


def _make_example(
    clip: dict[str, tf.Tensor],
    seed: tf.Tensor,
    clip_length: int,
    crop: int | None,
    jitter: bool,
    min_span: float,
    include_meta: bool,
    landmarks: bool = False,
) -> tuple[dict[str, tf.Tensor], ...]:
    n = clip["num_frames"]
    check = tf.debugging.Assert(n > 0, ["cached clip has no frames; prepare it again:", clip["video_id"]])
    with tf.control_dependencies([check]):
        indices, valid = sample_indices(n, clip_length, jitter, seed, min_span)
    real = indices[: tf.reduce_sum(tf.cast(valid, tf.int32))]  # the real frames are a prefix
    padding = clip_length - tf.shape(real)[0]
    frames = tf.pad(tf.gather(clip["frames"], real), [[0, padding], [0, 0], [0, 0], [0, 0]])
    frames = tf.ensure_shape(frames, [clip_length, crop, crop, 3])
    inputs = {"frames": frames, "mask": tf.cast(valid, tf.float32)}
    if landmarks:
        points = tf.gather(clip["landmarks"], real)
        inputs["landmarks"] = tf.pad(points, [[0, padding], [0, 0], [0, 0]])
        found = tf.cast(tf.gather(clip["landmark_found"], real), tf.float32)
        inputs["landmark_mask"] = tf.pad(found, [[0, padding]])
    targets = {"age": tf.reshape(clip["age"], [1])}
    if not include_meta:
        return inputs, targets
    meta = {
        "video_id": clip["video_id"],
        "source_index": tf.pad(tf.gather(clip["source_index"], real), [[0, padding]], constant_values=-1),
        "face_found": tf.pad(tf.gather(clip["face_found"], real), [[0, padding]]),
    }
    return inputs, targets, meta


def _substream(seed: tf.Tensor, stream: int) -> tf.Tensor:
    return seed + tf.constant([0, stream], tf.int64)


def _count_subjects(index: dict[str, Any], video_ids: list[str]) -> int:
    return len({index["videos"][vid]["subject"] for vid in video_ids})
