"""The landmark motion stream: the face mesh on aligned frames tracks the synthetic face's smile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth.face import render_frame
from age_estimation.data.synth.generator import build_scene
from age_estimation.data.synth.plan import plan_video
from age_estimation.video.align import LANDMARK_LOOKAHEAD, AlignmentError, FaceAligner
from age_estimation.video.landmark_set import LANDMARK_COUNT, LANDMARK_INDICES, LANDMARK_PAIRS
from age_estimation.video.landmarks import LandmarkTracker, compose, smile_lift

ALIGN = AlignConfig(crop_size=64, eye_distance=0.34, eye_y=0.48)


def smiling_frames(smiles: list[float]) -> np.ndarray:
    """One synthetic subject's informative frame rendered at each smile value (same pose)."""
    plan = plan_video(SynthConfig(), 3, 0)
    scene = build_scene(plan.scene_seed, plan.frame_size, plan.noise_sigma)
    neutral = next(state for state, kind in zip(plan.states, plan.distractor_kind) if not kind)
    frames = [render_frame(plan.identity, scene, dataclasses.replace(neutral, smile=s)) for s in smiles]
    return np.stack(frames)[..., ::-1]  # BGR -> RGB


def test_the_set_is_mirror_pairs_then_midline_without_repeats():
    assert len(set(LANDMARK_INDICES)) == LANDMARK_COUNT == 2 * len(LANDMARK_PAIRS) + 7


def test_stream_tracks_the_smile_in_template_coordinates():
    smiles = [0.0, 0.25, 0.5, 0.75, 1.0]
    with FaceAligner(ALIGN) as aligner:
        clip = aligner.align_video(smiling_frames(smiles))
    assert clip.landmarks.shape == (len(smiles), LANDMARK_COUNT, 2) and clip.landmark_found.all()
    lift = smile_lift(clip.landmarks)
    assert np.corrcoef(lift, smiles)[0, 1] > 0.9, lift
    eyes = clip.landmarks[:, [LANDMARK_INDICES.index(33), LANDMARK_INDICES.index(263)]]
    # The eye corners sit about the template's eyes: centred, one eye distance apart or a little more.
    assert np.all(np.abs(eyes.mean(axis=1)) < 0.25) and np.all(np.ptp(eyes[..., 0], axis=1) > 0.8)


def test_the_mesh_thread_gives_each_frame_its_own_landmarks_in_order():
    frames = smiling_frames([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.7, 0.3, 0.1])
    assert len(frames) > LANDMARK_LOOKAHEAD + 1  # the thread runs ahead of the frames given out
    with FaceAligner(ALIGN) as aligner:
        streamed = list(aligner.align_stream(frames))
    tracker = LandmarkTracker(ALIGN)
    for item in streamed:
        direct = tracker.landmarks(frames[item.index], item.transform)
        assert item.landmark_found == direct.found
        np.testing.assert_array_equal(item.landmarks, direct.points)


def test_frames_with_landmarks_come_out_before_a_too_few_faces_error():
    faces = smiling_frames([0.0, 0.5])
    frames = np.concatenate([faces, np.zeros((8, *faces.shape[1:]), np.uint8)])
    strict = dataclasses.replace(ALIGN, min_face_fraction=0.5)
    got: list = []
    with FaceAligner(strict) as aligner, pytest.raises(AlignmentError, match="only 2 of 10"):
        got.extend(aligner.align_stream(frames))  # keeps the frames given out before the error
    assert [item.index for item in got] == list(range(10))


def test_stream_is_off_without_align_landmarks():
    with FaceAligner(dataclasses.replace(ALIGN, landmarks=False)) as aligner:
        clip = aligner.align_video(smiling_frames([0.0, 1.0]))
    assert clip.landmarks.shape == (2, 0, 2) and not clip.landmark_found.any()


def test_compose_applies_inner_then_outer():
    inner = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]])
    outer = np.array([[0.0, -1.0, 5.0], [1.0, 0.0, 2.0]])
    point = np.array([0.5, 2.0, 1.0])
    expected = outer @ np.append(inner @ point, 1.0)
    np.testing.assert_allclose(compose(outer, inner) @ point, expected)
