"""Face-quality measures and verdicts: what makes predict refuse a face, damaged frames, persons in view."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from age_estimation.config import QualityConfig
from age_estimation.inference.quality import (
    FaceRanges,
    QualityTracker,
    VideoQuality,
    damaged_frames,
    fit_ranges,
    frame_measures,
    landmark_jitter,
    rotation_gains,
    video_verdict,
)
from age_estimation.inference.spec import DeploymentSpec
from age_estimation.video.face_track import Detection
from tests.inference import face_frame


def crop(scale: float = 1.0, blur: float = 0.0) -> np.ndarray:
    image = cv2.resize(face_frame(), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32) * scale
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    return np.clip(image, 0, 255).astype(np.uint8)


def detection(x: float, y: float, size: float = 40.0, score: float = 0.9) -> Detection:
    return Detection(box=np.array([x, y, size, size]), score=score,
                     eyes=np.array([[x + 0.3 * size, y + 0.4 * size], [x + 0.7 * size, y + 0.4 * size]]))


def quality(**changes) -> VideoQuality:
    clean = VideoQuality(brightness=130.0, contrast=35.0, sharpness=120.0, eye_distance=33.0, score=0.9,
                         rotation_gains=np.array([-0.2, -0.3, -0.2]), damaged=np.zeros(0, int), persons=[])
    return dataclasses.replace(clean, **changes)


def test_darkening_blurring_and_flattening_move_their_measure():
    clean = frame_measures(crop())
    dark = frame_measures(crop(scale=0.06))
    blurred = frame_measures(crop(blur=3.0))
    assert dark.brightness < 0.1 * clean.brightness and dark.contrast < 0.1 * clean.contrast
    assert blurred.sharpness < 0.5 * clean.sharpness and abs(blurred.brightness - clean.brightness) < 5
    assert clean.thumb.shape == (16, 16)


def test_the_reblur_ratio_rises_with_blur_falls_with_noise_and_ignores_brightness():
    clean = frame_measures(crop())
    noisy_image = crop().astype(np.float32) + np.random.default_rng(0).normal(0, 30, (64, 64, 3))
    noisy = frame_measures(np.clip(noisy_image, 0, 255).astype(np.uint8))
    assert frame_measures(crop(blur=1.0)).reblur > clean.reblur + 0.1
    assert noisy.reblur < clean.reblur - 0.05
    assert frame_measures(crop(scale=0.5)).reblur == pytest.approx(clean.reblur, abs=0.03)  # dimmer, same detail


def test_the_tracker_reports_the_reblur_ratio_and_the_sharpness_per_contrast():
    tracker = QualityTracker()
    face = crop()
    for _ in range(3):
        tracker.push_frame(face, None, face, lambda frame: [])
    got = tracker.finish(window=2).to_json()
    measured = frame_measures(face)
    assert got["reblur_ratio"] == pytest.approx(measured.reblur, abs=1e-4)
    assert got["relative_sharpness"] == pytest.approx(measured.sharpness / measured.contrast, abs=1e-4)


@pytest.mark.parametrize(("change", "words"), [
    ({"brightness": 9.0}, "face too dark: mean brightness 9 of 255 (at least 40)"),
    ({"brightness": 250.0}, "face too bright"),
    ({"contrast": 2.0}, "face contrast too low"),
    ({"sharpness": 10.0}, "face too blurred"),
    ({"eye_distance": 6.0}, "face too small: 6 px between the eyes"),
    ({"rotation_gains": np.array([0.0, 0.35, 0.1])}, "face turned by about 180 degrees"),
])
def test_each_limit_refuses_with_a_reason_that_names_it(change, words):
    assert words in video_verdict(quality(**change), QualityConfig())


def test_a_clean_face_and_unknown_measures_are_answered():
    assert video_verdict(quality(), QualityConfig()) is None
    assert video_verdict(quality(eye_distance=float("nan"), score=float("nan")), QualityConfig()) is None


def test_a_damaged_frame_is_the_one_whose_content_jumps():
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (16, 16)).astype(np.uint8)
    thumbs = [np.clip(base.astype(int) + i, 0, 255).astype(np.uint8) for i in range(20)]  # a slow change
    assert damaged_frames(thumbs).size == 0
    thumbs[12] = rng.integers(0, 255, (16, 16)).astype(np.uint8)  # garbage
    assert list(damaged_frames(thumbs)) == [12, 13]  # into the garbage and back out of it


def test_every_face_is_followed_and_persons_need_enough_frames():
    tracker = QualityTracker()
    for i in range(30):
        faces = [detection(10 + i, 10)]
        if i < 20:
            faces.append(detection(200, 10, size=30))
        if i == 3:
            faces.append(detection(100, 150, size=20))  # a glimpse: not a person in view
        tracker.push_faces(faces)
    for _ in range(20):
        tracker.push_frame(crop(), detection(10, 10), np.zeros((64, 64, 3), np.uint8), lambda frame: [])
    result = tracker.finish(window=8)
    assert [p.frames for p in result.persons] == [30, 20]
    assert result.persons[1].box() == [200.0, 10.0, 30.0, 30.0]
    assert result.eye_distance == pytest.approx(16.0) and result.score == pytest.approx(0.9)


def test_rotation_gain_is_how_much_surer_the_detector_is_of_the_face_turned():
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[0, 0] = 255  # marks the corner so each turn is told apart

    def detect(image):  # a detector that is sure only of the frame turned by 180 degrees
        return [detection(0, 0, score=0.95)] if image[-1, -1, 0] == 255 else []

    assert rotation_gains(detect, frame, 0.6) == pytest.approx([-0.6, 0.35, -0.6])


def test_training_ranges_are_the_lowest_and_highest_video_medians_and_round_trip():
    ranges = fit_ranges(np.array([[70.0, 16.0, 90.0], [200.0, 50.0, 240.0], [120.0, 30.0, 150.0]]))
    assert ranges.low == (70.0, 16.0, 90.0) and ranges.high == (200.0, 50.0, 240.0) and ranges.videos == 3
    assert FaceRanges.from_json(ranges.to_json()) == ranges
    with pytest.raises(ValueError, match="face ranges lack sharpness"):
        FaceRanges.from_json({"brightness": [1, 2], "contrast": [1, 2]})
    spec = DeploymentSpec(face_ranges=ranges)
    assert DeploymentSpec.from_json(json.loads(json.dumps(spec.to_json()))).face_ranges == ranges


def test_a_model_with_training_ranges_judges_the_face_by_them():
    ranges = fit_ranges(np.array([[70.0, 16.0, 90.0], [200.0, 50.0, 240.0]]))
    assert video_verdict(quality(), QualityConfig(), ranges) is None
    assert video_verdict(quality(brightness=50.0), QualityConfig(), ranges) == (
        "face darker than any training face: mean brightness 50 of 255 "
        "(the model's 2 training videos: 70.0-200.0)")
    assert "face sharper or noisier than any training face: sharpness 300.0" in video_verdict(
        quality(sharpness=300.0), QualityConfig(), ranges)
    # the fixed brightness limit no longer applies, the size and rotation limits still do
    assert video_verdict(quality(brightness=38.0), QualityConfig(min_brightness=30.0), None) is None
    assert "face too small" in video_verdict(quality(eye_distance=6.0), QualityConfig(), ranges)


def test_a_turned_face_needs_a_sure_detection_turned_upright():
    dim = quality(score=0.5, rotation_gains=np.array([0.15, 0.1, 0.0]))  # a dark face: every score is low
    assert video_verdict(dim, QualityConfig()) is None
    sure = quality(score=0.6, rotation_gains=np.array([0.0, 0.3, 0.0]))
    assert "face turned by about 180 degrees" in video_verdict(sure, QualityConfig())


def test_landmark_jitter_is_the_median_second_difference_over_frames_the_mesh_found():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (5, 2)).astype(np.float32)
    smooth = [base + 0.01 * t for t in range(20)]  # a steady movement: no second difference
    assert landmark_jitter(smooth) == pytest.approx(0.0, abs=1e-6)
    shaking = [base + rng.normal(0, 0.05, base.shape) for _ in range(20)]
    assert landmark_jitter(shaking) > 0.03
    # A frame without a face mesh breaks the runs of three; with no run left there is no jitter to tell.
    assert landmark_jitter([smooth[0], None, smooth[2], smooth[3], smooth[4]]) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(landmark_jitter([smooth[0], None, smooth[2], None]))


def test_the_tracker_reports_jitter_and_the_share_of_frames_with_a_face_mesh():
    tracker = QualityTracker()
    points = np.zeros((5, 2), np.float32)
    for i in range(8):
        tracker.push_frame(crop(), None, np.zeros((8, 8, 3), np.uint8), lambda frame: [],
                           points + (0.1 if i % 2 else 0.0), landmark_found=i != 3)
    judged = tracker.finish(window=2)
    assert judged.mesh_found == pytest.approx(7 / 8)
    assert judged.jitter == pytest.approx(0.2)  # |a - 2b + c| of an alternating point is twice its step
    assert judged.to_json()["mesh_found"] == 0.875 and judged.to_json()["landmark_jitter"] == pytest.approx(0.2)
    assert np.isnan(quality().jitter) and quality().to_json()["landmark_jitter"] is None
