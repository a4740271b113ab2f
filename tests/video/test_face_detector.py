"""The LiteRT BlazeFace detector against MediaPipe Tasks' FaceDetector on the same frames, and its pieces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.bench.face_video import write_face_video
from age_estimation.video.decode import read_video
from age_estimation.video.face_detector import (
    DETECTOR_INPUT,
    FaceDetector,
    letterbox,
    ssd_anchors,
    weighted_nms,
)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(min_score=0.5)


def _mediapipe_detections(frames: list[np.ndarray]) -> list[list[tuple[np.ndarray, float, np.ndarray]]]:
    """(box x, y, w, h; score; eyes sorted by x) per face per frame, from MediaPipe Tasks' FaceDetector."""
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    from age_estimation.video.face_models import FACE_DETECTOR, asset_path

    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(asset_path(FACE_DETECTOR))),
                                         min_detection_confidence=0.5)
    out = []
    with vision.FaceDetector.create_from_options(options) as reference:
        for frame in frames:
            height, width = frame.shape[:2]
            result = reference.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)))
            faces = []
            for item in result.detections:
                box = item.bounding_box
                eyes = np.array([[k.x * width, k.y * height] for k in item.keypoints[:2]])
                faces.append((np.array([box.origin_x, box.origin_y, box.width, box.height], float),
                              float(item.categories[0].score), eyes[np.argsort(eyes[:, 0])]))
            out.append(faces)
    return out


def _test_frames(tmp_path: Path, synthetic: Path) -> list[np.ndarray]:
    """A real face (the astronaut) in 640x360 and 192x192 video frames, and the synthetic benchmark's faces."""
    wide = read_video(write_face_video(tmp_path / "wide.mp4", frames=6, size=(640, 360), motion=6.0)).frames
    small = read_video(write_face_video(tmp_path / "small.mp4", frames=6, size=(192, 192), motion=6.0)).frames
    drawn = [read_video(path, max_frames=4).frames for path in sorted(synthetic.rglob("*.mp4"))[:4]]
    return [*wide, *small, *np.concatenate(drawn)]


def test_detections_match_mediapipe_tasks(detector: FaceDetector, tmp_path: Path, tiny_root: Path) -> None:
    frames = _test_frames(tmp_path, tiny_root / "videos")
    reference = _mediapipe_detections(frames)
    eye_errors, box_errors, score_errors = [], [], []
    for frame, expected in zip(frames, reference):
        found = detector.detect(frame)
        assert len(found) == len(expected)
        for ours, (box, score, eyes) in zip(found, expected):
            eye_errors.append(np.abs(ours.eyes - eyes).max() / frame.shape[1])
            box_errors.append(np.abs(ours.box - box).max())
            score_errors.append(abs(ours.score - score))
    assert len(eye_errors) >= len(frames) - 4  # the synthetic frames without a face are a few at most
    # measured: eyes equal to 1e-7 of the width (median), 7e-4 at most; MediaPipe rounds boxes to whole pixels
    assert np.median(eye_errors) < 1e-4 and max(eye_errors) < 3e-3
    assert max(box_errors) < 2.0 and max(score_errors) < 0.01


def test_no_face_gives_no_detection(detector: FaceDetector) -> None:
    blobs = cv2.resize(np.random.default_rng(1).integers(0, 255, (6, 6, 3), np.uint8), (256, 256))
    assert detector.detect(blobs) == []
    assert detector.detect(np.zeros((90, 160, 3), np.uint8)) == []


def test_anchors_are_the_cell_centres_of_both_grids() -> None:
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], anchors[1])  # two anchors per cell of the 16x16 grid
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[512:518], np.full((6, 2), 0.5 / 8))  # six per cell of the 8x8 grid
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_letterbox_centres_a_wide_frame() -> None:
    scale, offset = letterbox((360, 640))
    assert scale == pytest.approx(DETECTOR_INPUT / 640)
    np.testing.assert_allclose(offset, [0, (DETECTOR_INPUT - 360 * scale) / 2])


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    corners = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]])
    keypoints = np.array([[[0.15, 0.2], [0.25, 0.2]], [[0.17, 0.2], [0.27, 0.2]], [[0.65, 0.7], [0.75, 0.7]]])
    merged = weighted_nms(corners, keypoints, np.array([0.9, 0.6, 0.8]))
    assert len(merged) == 2
    box, eyes, score = merged[0]
    np.testing.assert_allclose(box[0], (0.1 * 0.9 + 0.12 * 0.6) / 1.5)  # score-weighted mean
    np.testing.assert_allclose(eyes[0, 0], (0.15 * 0.9 + 0.17 * 0.6) / 1.5)
    assert score == 0.9 and merged[1][2] == 0.8
    np.testing.assert_allclose(merged[1][0], corners[2])
