"""Training and model figures: seconds per training step, and parameters and latency of each variant."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from age_estimation.bench.measure import BenchSizes, repeat
from age_estimation.config import VARIANTS, PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.export.clips import random_clips
from age_estimation.export.report import call_ms
from age_estimation.models.siam.model import build_siam
from age_estimation.training.optim import make_loss, make_optimizer
from age_estimation.training.task import age_view, crop_size_of


def default_model(cfg: PipelineConfig, crop_size: int) -> keras.Model:
    """The config's model, untrained, on ``crop_size`` crops: what the speed figures time."""
    return build_siam(cfg.model, crop_size=crop_size)


def random_batch(model: keras.Model, batch: int, steps: int, crop_size: int) -> dict[str, np.ndarray]:
    """A batch of ``batch`` seeded noise clips of ``steps`` frames holding exactly ``model``'s inputs
    (frames and mask, and the landmark stream where the model reads it)."""
    inputs = model.input
    points = int(inputs["landmarks"].shape[2]) if "landmarks" in inputs else 0
    clips = random_clips(batch, steps, crop_size, points)
    return {name: np.concatenate([clip[name] for clip in clips]) for name in inputs}


def train_step(cfg: PipelineConfig, crop_size: int) -> tuple[keras.Model, Callable[[Any, Any], Any]]:
    """A compiled age-only training view of the config's model and a step function over one batch."""
    fitted = age_view(default_model(cfg, crop_size))
    fitted.compile(optimizer=make_optimizer(cfg.train, 100), loss=make_loss(cfg.train))

    def step(inputs: Any, targets: Any) -> Any:
        return fitted.train_on_batch({name: inputs[name] for name in fitted.input}, targets["age"])

    return fitted, step


def bench_training(cfg: PipelineConfig, sizes: BenchSizes) -> dict[str, Any]:
    """Seconds per training step and clips/s for the config's model and batch size; each variant's size."""
    crop = crop_size_of(read_index(cfg.data.cache_dir))
    fitted, step = train_step(cfg, crop)
    rng = np.random.default_rng(0)
    inputs = random_batch(fitted, cfg.data.batch_size, cfg.data.clip_length, crop)
    targets = {"age": rng.uniform(8, 76, (cfg.data.batch_size, 1)).astype(np.float32)}
    step(inputs, targets)

    def timed() -> float:
        begin = time.perf_counter()
        for _ in range(sizes.train_steps):
            step(inputs, targets)
        return (time.perf_counter() - begin) / sizes.train_steps

    seconds = repeat(timed, sizes.repeats)
    return {"params": int(fitted.count_params()), "batch_size": cfg.data.batch_size,
            "clip_length": cfg.data.clip_length, "seconds_per_step": seconds,
            "clips_per_second": cfg.data.batch_size / seconds["median"],
            "variants": variant_figures(cfg, crop, runs=sizes.latency_runs)}


def variant_figures(cfg: PipelineConfig, crop_size: int, runs: int = 30) -> list[dict[str, Any]]:
    """For each variant: parameters and the median (min-max) ms of one compiled forward pass (batch 1).

    Each variant reads the landmark stream as the config's model does (``dynamics_only`` always).
    """
    rows = []
    for variant in VARIANTS:
        model = build_siam(dataclasses.replace(cfg.model, variant=variant), crop_size=crop_size)
        times = forward_ms(model, random_batch(model, 1, cfg.data.clip_length, crop_size), runs)
        rows.append({"variant": variant, "params": model.count_params(), "ms_median": statistics.median(times),
                     "ms_min": min(times), "ms_max": max(times)})
    return rows


def forward_ms(model: keras.Model, clip: dict[str, np.ndarray], runs: int) -> list[float]:
    """Milliseconds of ``runs`` compiled forward passes of ``model`` on ``clip``, after three warm-up passes."""
    return call_ms(lambda: model.predict_on_batch(clip), runs)
