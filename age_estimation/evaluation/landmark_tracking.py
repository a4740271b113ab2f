"""How well the landmark motion stream follows the synthetic generator's true smile.

Per informative frame (no distractor) where the face mesh found the face: the stream's mouth-corner
lift (``video.landmarks.smile_lift``) against the generator's smile value of that source frame. A
stream that tracks the expression correlates strongly; the model can only read dynamics it carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import SynthConfig
from age_estimation.data.cache import read_clip, read_index, source_under
from age_estimation.data.synth.plan import all_plans
from age_estimation.video.landmarks import mouth_width, smile_lift


def smile_tracking(
    video_ids: list[str], data_path: str | Path, cache_dir: str | Path, synth: SynthConfig
) -> dict[str, Any] | None:
    """``{"smile_lift_r", "mouth_width_r", "frames", "mesh_found"}`` over ``video_ids``; None without a stream."""
    index = read_index(cache_dir)
    if not index.get("align", {}).get("landmarks"):
        return None
    plans = {plan.path: plan for plan in all_plans(synth)}
    lift, width, truth, found, informative = [], [], [], 0, 0
    for vid in video_ids:
        entry = index["videos"][vid]
        plan = plans.get(source_under(entry, data_path))
        if plan is None:
            continue
        clip = read_clip(Path(cache_dir) / entry["shard"])
        for points, seen, source in zip(clip["landmarks"], clip["landmark_found"], clip["source_index"]):
            if plan.distractor_kind[source]:
                continue
            informative += 1
            if not seen:
                continue
            found += 1
            lift.append(float(smile_lift(points[None])[0]))
            width.append(float(mouth_width(points[None])[0]))
            truth.append(plan.states[source].smile)
    if len(truth) < 3:
        return None
    return {
        "smile_lift_r": float(np.corrcoef(lift, truth)[0, 1]),
        "mouth_width_r": float(np.corrcoef(width, truth)[0, 1]),
        "frames": informative,
        "mesh_found": found / informative,
    }
