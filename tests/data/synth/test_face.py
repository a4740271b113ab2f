"""Face drawing: each regional cue changes pixels only inside its own regions of the aligned crop."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth import generator, oracle
from age_estimation.data.synth.face import FrameState, render_frame
from age_estimation.data.synth.plan import REGIONAL_CUES, plan_video

TINY = SynthConfig(subjects=3, videos_per_subject=2, frames=10, frame_size=128, seed=3)


def _eye_template_transform(state: FrameState, align: AlignConfig) -> np.ndarray:
    """The similarity transform the alignment step computes, from the true eye centres."""
    theta = np.deg2rad(state.angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    eyes = np.array([np.array(state.centre) + state.iod_px * rot @ [x, 0.0] for x in (-0.5, 0.5)], np.float32)
    size, d = align.crop_size, align.eye_distance
    target = np.array([[size * (1 - d) / 2, size * align.eye_y], [size * (1 + d) / 2, size * align.eye_y]], np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(eyes, target)
    return matrix


def test_each_cue_is_drawn_visibly_inside_its_own_regions_of_the_aligned_crop() -> None:
    align = AlignConfig()
    cfg = replace(TINY, frame_size=192)
    size = align.crop_size
    regions = oracle.cue_regions(align)
    for subject in range(3):
        plan = plan_video(cfg, subject, 0)
        scene = generator.build_scene(plan.scene_seed, cfg.frame_size, plan.noise_sigma)
        plain = next(s for s, k in zip(plan.states, plan.distractor_kind) if not k)
        matrix = _eye_template_transform(plain, align)
        frames = {
            name: cv2.warpAffine(render_frame(plan.identity, scene, replace(plain, cues=cues)), matrix, (size, size))
            for name, cues in [("", {})] + [(c.name, {c.name: 1.0}) for c in REGIONAL_CUES]
        }
        without = frames[""].astype(int)
        for cue in REGIONAL_CUES:
            changed = np.abs(frames[cue.name].astype(int) - without).max(axis=2) > 12
            inside = np.zeros((size, size), bool)
            for name, (x0, y0, x1, y1) in regions.items():
                if name.startswith(cue.name):
                    inside[int(y0 * size) : int(np.ceil(y1 * size)), int(x0 * size) : int(np.ceil(x1 * size))] = True
            assert changed.sum() >= 15, f"{cue.name} is barely visible at {size} px"
            assert changed[inside].sum() >= 0.97 * changed.sum(), cue.name
