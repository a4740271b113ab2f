"""The oracle: its floor beats the mean predictor and it recovers ages from noise-free cues."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from age_estimation.config import SynthConfig
from age_estimation.data.synth import oracle
from age_estimation.data.synth.plan import CUES, all_plans


def test_oracle_floor_is_at_least_two_years_and_beats_the_mean_predictor() -> None:
    cfg = SynthConfig()
    population = oracle.expected_oracle_floor(cfg, samples=5000)
    plans = all_plans(replace(cfg, subjects=150))
    floor = oracle.oracle_floor_mae(plans, cfg)
    baseline = oracle.mean_predictor_mae(np.array([plan.age for plan in plans]))
    assert population >= 2.0 and floor >= 2.0
    assert floor < 0.35 * baseline


def test_oracle_recovers_interior_ages_from_noise_free_cues() -> None:
    cfg = SynthConfig()
    ages = np.array([20, 33, 41, 58])  # away from the ends, where the posterior median is not truncated
    t = (ages - cfg.min_age) / (cfg.max_age - cfg.min_age)
    latents = np.stack([t**cue.exponent for cue in CUES], axis=1)
    np.testing.assert_array_equal(oracle.oracle_estimates(latents, cfg), ages)
