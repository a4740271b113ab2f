"""Input figures: training steps/s fed by the tf.data cache pipeline vs the same batches held in memory.

Both sources are timed back to back in every repeat with the same consumer (a real training step,
compiled before any timing), so their ratio says whether the input pipeline slows training down.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tensorflow as tf

from age_estimation.bench.measure import BenchSizes, paired_ratio
from age_estimation.bench.model import train_step
from age_estimation.config import DataConfig, PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import build_dataset, steps_per_epoch
from age_estimation.training.task import crop_size_of


def bench_input(cfg: PipelineConfig, sizes: BenchSizes) -> dict[str, Any]:
    """Training steps/s fed by the tf.data pipeline vs by the same batches held in memory."""
    index = read_index(cfg.data.cache_dir)
    ids = sorted(index["videos"])[: max(sizes.videos * 4, cfg.data.batch_size * 2)]
    _, step = train_step(cfg, crop_size_of(index))
    # Many short pairs: on two cores a step's time drifts by up to 30% within a minute, so only the
    # median of many back-to-back pairs resolves the few percent the pipeline may cost.
    return input_throughput(cfg.data.cache_dir, ids, cfg.data, steps=sizes.train_steps,
                            repeats=sizes.repeats * 4, consume=step, landmarks=cfg.model.reads_landmarks)


def input_throughput(
    cache_dir: str | Path,
    ids: list[str],
    data_cfg: DataConfig,
    steps: int,
    repeats: int = 3,
    consume: Callable[[Any, Any], Any] | None = None,
    seed: int = 0,
    landmarks: bool = False,
) -> dict[str, Any]:
    """Median steps/s (and spread) of the training pipeline and of in-memory batches, and their ratio.

    ``consume(inputs, targets)`` is called on every batch (e.g. a train step); by default the batch
    is only pulled, which measures the raw producer speed. ``landmarks`` adds the landmark stream to
    the batches (for a model that reads it). A first pass fills the in-memory cache and is reported
    separately as ``cold_seconds``; a first ``consume`` (a step's compilation) is not timed. Each
    repeat times both sources, alternating which goes first; the ratio is the median of the repeats'.
    """
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be at least 1, got {steps} and {repeats}")
    consume = consume or (lambda inputs, targets: None)
    dataset = build_dataset(cache_dir, ids, data_cfg, training=True, seed=seed, repeat=True, landmarks=landmarks)
    pipeline = iter(dataset)
    started = time.perf_counter()
    for _ in range(steps_per_epoch(len(ids), data_cfg.batch_size) + 1):
        next(pipeline)
    cold_seconds = time.perf_counter() - started

    held = [next(pipeline) for _ in range(steps)]
    memory = iter(_in_memory(held))
    consume(*held[0][:2])
    pipeline_rates, memory_rates = [], []
    timed = [(pipeline, pipeline_rates), (memory, memory_rates)]
    for turn in range(repeats):
        for source, rates in timed if turn % 2 == 0 else timed[::-1]:
            rates.append(_steps_per_second(source, steps, consume))

    frames_per_step = data_cfg.batch_size * data_cfg.clip_length
    pipeline_median = statistics.median(pipeline_rates)
    memory_median = statistics.median(memory_rates)
    return {
        "steps": steps,
        "repeats": repeats,
        "videos": len(ids),
        "batch_size": data_cfg.batch_size,
        "clip_length": data_cfg.clip_length,
        "cold_seconds": cold_seconds,
        "pipeline_steps_per_s": pipeline_median,
        "pipeline_steps_per_s_range": [min(pipeline_rates), max(pipeline_rates)],
        "pipeline_frames_per_s": pipeline_median * frames_per_step,
        "memory_steps_per_s": memory_median,
        "memory_steps_per_s_range": [min(memory_rates), max(memory_rates)],
        "ratio": paired_ratio(pipeline_rates, memory_rates),
    }


def _in_memory(batches: list[tuple[Any, ...]]) -> tf.data.Dataset:
    """The given batches, already materialised, replayed forever by tf.data (no parsing, no sampling)."""
    stacked = tf.nest.map_structure(lambda *leaves: tf.stack(leaves), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(tf.data.AUTOTUNE)


def _steps_per_second(source: Iterator[Any], steps: int, consume: Callable[[Any, Any], Any]) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        inputs, targets = next(source)[:2]
        consume(inputs, targets)
    return steps / (time.perf_counter() - started)
