"""Video plans: distractor frames cover the configured share, of every kind, at random positions."""

from __future__ import annotations

from dataclasses import replace

from age_estimation.config import SynthConfig
from age_estimation.data.synth.plan import DISTRACTOR_KINDS, all_plans

TINY = SynthConfig(subjects=3, videos_per_subject=2, frames=10, frame_size=128, seed=3)


def test_distractors_cover_the_configured_fraction_with_every_kind() -> None:
    cfg = replace(TINY, subjects=12, frames=20, distractor_fraction=0.3)
    plans = all_plans(cfg)
    kinds = set()
    for plan in plans:
        uninformative = [k for k in plan.distractor_kind if k]
        assert len(uninformative) / cfg.frames >= cfg.distractor_fraction
        kinds.update(uninformative)
        assert all(not state.cues for state, k in zip(plan.states, plan.distractor_kind) if k)
        assert all(state.cues for state, k in zip(plan.states, plan.distractor_kind) if not k)
    assert kinds == set(DISTRACTOR_KINDS)
    positions = [tuple(i for i, k in enumerate(p.distractor_kind) if k) for p in plans]
    assert len(set(positions)) > len(plans) // 2  # placed at random, not at fixed frames
