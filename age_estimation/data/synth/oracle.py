"""The synthetic dataset's ground truth: the oracle age estimate, its MAE floor, cue regions, the dataset key.

The oracle is the posterior-median age given a video's true latent cue values; its MAE is the floor
for any estimator. ``ground_truth`` assembles the ``ground_truth.json`` document: per-frame
informative flags, cue values, cue regions in aligned-crop coordinates and the oracle floor.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from typing import Any

import numpy as np

from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth.face import CUE_REGIONS
from age_estimation.data.synth.plan import CUES, GENERATOR_VERSION, VideoPlan

GROUND_TRUTH_NAME = "ground_truth.json"


def oracle_estimates(latents: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Posterior-median ages of videos with latent cues ``latents`` (n, len(CUES)) in CUES order.

    The posterior is exact for the generative model: uniform integer ages and Gaussian cue noise.
    The median minimises the expected absolute error, so its MAE is the floor for any estimator.
    """
    ages = np.arange(math.ceil(cfg.min_age), math.floor(cfg.max_age) + 1, dtype=np.float64)
    t = (ages - cfg.min_age) / (cfg.max_age - cfg.min_age)
    means = np.stack([t**cue.exponent for cue in CUES], axis=1)  # (G, K)
    sigmas = np.array([cue.sigma for cue in CUES])
    z = (np.asarray(latents, dtype=np.float64)[:, None, :] - means[None]) / sigmas
    log_post = -0.5 * np.sum(z * z, axis=2)  # (n, G)
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    cdf = np.cumsum(post, axis=1) / post.sum(axis=1, keepdims=True)
    return ages[np.argmax(cdf >= 0.5, axis=1)]


def oracle_floor_mae(plans: list[VideoPlan], cfg: SynthConfig) -> float:
    """MAE of the oracle estimates over the given videos."""
    latents = np.array([[plan.cues[cue.name] for cue in CUES] for plan in plans])
    ages = np.array([plan.age for plan in plans], dtype=np.float64)
    return float(np.mean(np.abs(oracle_estimates(latents, cfg) - ages)))


def expected_oracle_floor(cfg: SynthConfig, samples: int = 20000, seed: int = 0) -> float:
    """Population oracle floor from ``samples`` videos simulated under the same generative model."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(math.ceil(cfg.min_age), math.floor(cfg.max_age) + 1, samples).astype(np.float64)
    t = (ages - cfg.min_age) / (cfg.max_age - cfg.min_age)
    latents = np.stack(
        [t**cue.exponent + cue.sigma * rng.standard_normal(samples) for cue in CUES], axis=1
    )
    return float(np.mean(np.abs(oracle_estimates(latents, cfg) - ages)))


def mean_predictor_mae(ages: np.ndarray) -> float:
    """MAE of always predicting the mean age: the trivial baseline."""
    ages = np.asarray(ages, dtype=np.float64)
    return float(np.mean(np.abs(ages - ages.mean())))


def cue_regions(align: AlignConfig) -> dict[str, list[float]]:
    """Cue boxes in normalised aligned-crop coordinates of ``align``'s eye template, clipped to 0..1."""
    d, eye_y = align.eye_distance, align.eye_y

    def norm(value: float) -> float:
        return round(min(1.0, max(0.0, value)), 4)

    return {
        name: [norm(0.5 + d * x0), norm(eye_y + d * y0), norm(0.5 + d * x1), norm(eye_y + d * y1)]
        for name, (x0, y0, x1, y1) in CUE_REGIONS.items()
    }


def generator_info(cfg: SynthConfig, align: AlignConfig) -> dict[str, Any]:
    """The generator's config with the keys of its videos and of its whole ground truth."""
    info: dict[str, Any] = {**asdict(cfg), "version": GENERATOR_VERSION}
    info["video_key"] = _digest(info)
    info["template"] = {"eye_distance": align.eye_distance, "eye_y": align.eye_y}
    info["key"] = _digest(info)
    return info


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def ground_truth(plans: list[VideoPlan], cfg: SynthConfig, align: AlignConfig) -> dict[str, Any]:
    """The ``ground_truth.json`` document for ``plans``."""
    latents = np.array([[plan.cues[cue.name] for cue in CUES] for plan in plans])
    oracle = oracle_estimates(latents, cfg)
    ages = np.array([plan.age for plan in plans], dtype=np.float64)
    return {
        "generator": generator_info(cfg, align),
        "oracle_floor_mae": round(float(np.mean(np.abs(oracle - ages))), 4),
        "expected_oracle_floor_mae": round(expected_oracle_floor(cfg), 4),
        "mean_predictor_mae": round(mean_predictor_mae(ages), 4),
        "cue_regions": cue_regions(align),
        "cue_model": {cue.name: {"exponent": cue.exponent, "sigma": round(cue.sigma, 4)} for cue in CUES},
        "videos": {
            plan.path: {
                "age": plan.age,
                "subject": plan.subject,
                "label": plan.label,
                "informative": [0 if kind else 1 for kind in plan.distractor_kind],
                "distractor_kind": list(plan.distractor_kind),
                "cues": {name: round(value, 5) for name, value in plan.cues.items()},
                "oracle_age": float(est),
            }
            for plan, est in zip(plans, oracle)
        },
    }
