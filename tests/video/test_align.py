"""Face alignment on real pixels (the astronaut photo) and the tracking/smoothing pieces on their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from age_estimation.bench.face_video import face_image, face_video_shifts
from age_estimation.bench.prepare import alignment_jitter
from age_estimation.config import AlignConfig
from age_estimation.video.align import (
    AlignmentError,
    FaceAligner,
    detection_frames,
    face_present,
    template_eyes,
    template_transform,
)
from age_estimation.video.decode import read_video
from age_estimation.video.tracking import interpolate_missing, smooth_tracks
from tests.video_files import write_mixed_video


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    with FaceAligner(AlignConfig(crop_size=64)) as face_aligner:
        yield face_aligner


def test_aligned_clip_puts_the_eyes_on_the_template(aligner: FaceAligner, videos: dict[str, Path]) -> None:
    clip = aligner.align_video(read_video(videos["moving"]).frames)
    assert clip.frames.shape == (24, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.face_found.all()
    assert clip.transforms.shape == (24, 2, 3)
    # the head moves by up to 8 source px (~9 crop px); the true eyes (known motion) stay on the template
    error = _true_eye_error(clip, aligner.cfg)
    assert error.mean() < 1.6 and error.max() < 3.5  # 2.5% / 5.5% of the crop


def _true_eye_error(clip, cfg: AlignConfig) -> np.ndarray:
    """Distance (crop px) of the true eye centres of the 'moving' video from the template, per frame and eye."""
    source_eyes = np.stack([_inverse_map(m, e) for m, e in zip(clip.transforms, clip.eye_positions)])
    shifts = face_video_shifts(len(clip.frames), 8.0)[:, None, :]
    true_eyes = (source_eyes - shifts).mean(axis=0) + shifts
    mapped = np.einsum("nij,nkj->nki", clip.transforms[:, :, :2], true_eyes) + clip.transforms[:, None, :, 2]
    return np.linalg.norm(mapped - template_eyes(cfg)[None], axis=-1)


def test_detecting_every_second_frame_stays_on_the_face(aligner: FaceAligner, videos: dict[str, Path]) -> None:
    frames = read_video(videos["moving"]).frames
    sparse_cfg = AlignConfig(crop_size=64, detect_every=2)
    with FaceAligner(sparse_cfg) as sparse_aligner:
        sparse = sparse_aligner.align_video(frames)
    assert sparse.face_found.all()
    error = _true_eye_error(sparse, sparse_cfg)
    assert error.mean() < 1.6 and error.max() < 3.5


def test_detection_schedule_and_presence_of_skipped_frames() -> None:
    tried = detection_frames(6, 2)
    assert tried.tolist() == [True, False, True, False, True, True]
    detected = np.array([True, False, False, False, True, True])
    assert face_present(detected, tried).tolist() == [True, False, False, False, True, True]
    detected = np.array([True, False, True, False, True, True])
    assert face_present(detected, tried).tolist() == [True] * 6


def test_still_head_jitter_is_below_one_pixel_at_112(videos: dict[str, Path]) -> None:
    figure = alignment_jitter(videos["still"], AlignConfig(crop_size=112))
    assert figure["crop_jitter_px"] <= 1.0
    unsmoothed = alignment_jitter(videos["still"], AlignConfig(crop_size=112, smoothing_window=1))
    assert figure["crop_jitter_px"] < unsmoothed["crop_jitter_px"]


def test_face_mesh_refinement_steadies_the_crop(videos: dict[str, Path]) -> None:
    plain = alignment_jitter(videos["still"], AlignConfig(crop_size=112, smoothing_window=1))
    mesh = alignment_jitter(videos["still"], AlignConfig(crop_size=112, smoothing_window=1, use_face_mesh=True))
    assert mesh["frames"] == 30
    assert mesh["crop_jitter_px"] < plain["crop_jitter_px"]


def test_no_face_is_an_alignment_error(aligner: FaceAligner, videos: dict[str, Path]) -> None:
    with pytest.raises(AlignmentError, match="no face found in any of 8 frames"):
        aligner.align_video(read_video(videos["no_face"]).frames)


def test_frames_without_a_face_get_interpolated_transforms(tmp_path: Path) -> None:
    frames = read_video(write_mixed_video(tmp_path / "gap.mp4", "FF--FF")).frames
    with FaceAligner(AlignConfig(crop_size=64, min_face_fraction=0.5, smoothing_window=1)) as face_aligner:
        clip = face_aligner.align_video(frames)
    np.testing.assert_array_equal(clip.face_found, [True, True, False, False, True, True])
    # the eyes behind the gap move linearly from where they were in frame 1 to frame 4
    source_eyes = np.stack([_inverse_map(m, template_eyes(face_aligner.cfg)) for m in clip.transforms])
    expected = source_eyes[1] + (source_eyes[4] - source_eyes[1]) * np.array([1, 2])[:, None, None] / 3
    np.testing.assert_allclose(source_eyes[2:4], expected, atol=1e-6)
    with FaceAligner(AlignConfig(min_face_fraction=0.8)) as strict, pytest.raises(AlignmentError, match="only 4 of 6"):
        strict.align_video(frames)


def test_grayscale_frames_are_accepted(aligner: FaceAligner, videos: dict[str, Path]) -> None:
    gray = read_video(videos["gray"]).frames[..., 0]
    assert aligner.align_video(gray).frames.shape == (6, 64, 64, 3)


def test_align_image(aligner: FaceAligner) -> None:
    crop = aligner.align_image(face_image())
    assert crop is not None and crop.shape == (64, 64, 3)
    assert aligner.align_image(np.full((128, 128, 3), 128, np.uint8)) is None


def _inverse_map(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return (points - matrix[:, 2]) @ linear_inverse.T


def test_interpolate_missing_is_linear_and_holds_the_edges() -> None:
    points = np.array([np.nan, 0.0, np.nan, np.nan, 3.0, np.nan])[:, None, None]
    found = ~np.isnan(points[:, 0, 0])
    filled = interpolate_missing(points, found)[:, 0, 0]
    np.testing.assert_allclose(filled, [0, 0, 1, 2, 3, 3])


def test_smoothing_removes_jitter_and_outliers_but_keeps_a_constant() -> None:
    rng = np.random.default_rng(0)
    noisy = 50 + rng.normal(0, 1, (200, 2, 2))
    noisy[100] += 40  # one bad detection
    smoothed = smooth_tracks(noisy, 9)
    assert smoothed.shape == noisy.shape
    assert smoothed.std(axis=0).max() < 0.65 * noisy[np.arange(200) != 100].std(axis=0).min()
    assert np.abs(smoothed[100] - 50).max() < 2
    np.testing.assert_allclose(smooth_tracks(np.full((7, 2, 2), 3.0), 5), 3.0)
    ramp = np.arange(30.0)[:, None, None] * np.ones((1, 2, 2))  # steady motion: followed without lag
    np.testing.assert_allclose(smooth_tracks(ramp, 9), ramp, atol=1e-9)


def test_template_transform_maps_the_eyes_exactly() -> None:
    cfg = AlignConfig(crop_size=112, eye_y=0.4, eye_distance=0.35)
    eyes = np.array([[200.0, 120.0], [260.0, 100.0]])
    matrix = template_transform(eyes, cfg)
    mapped = eyes @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, template_eyes(cfg), atol=1e-9)
    np.testing.assert_allclose(template_eyes(cfg), [[36.4, 44.8], [75.6, 44.8]])
