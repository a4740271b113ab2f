"""Streamed alignment gives exactly the whole-clip algorithm's crops, in bounded memory; long gaps are held."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from age_estimation.config import AlignConfig
from age_estimation.video.align import (
    AlignedClip,
    FaceAligner,
    _as_rgb_clip,
    _check_face_fraction,
    apply_transforms,
    detection_frames,
    face_present,
    template_transform,
    warp_face,
)
from age_estimation.video.decode import VideoStream, read_video
from age_estimation.video.face_track import track_face
from age_estimation.video.tracking import EyeTrack, interpolate_missing, smooth_tracks
from tests.video_files import write_mixed_video

FIELDS = ("frames", "face_found", "transforms", "eye_positions")


def whole_clip_alignment(aligner: FaceAligner, frames: np.ndarray) -> AlignedClip:
    """The reference: detect every tried frame of the whole clip, then fill, smooth and warp all at once."""
    frames = _as_rgb_clip(frames)
    cfg = aligner.cfg
    attempted = detection_frames(len(frames), cfg.detect_every)
    detections = [aligner.detect(frame) if tried else [] for frame, tried in zip(frames, attempted)]
    tracked = track_face(detections, frames.shape[2], frames.shape[1])
    detected = np.array([det is not None for det in tracked])
    _check_face_fraction(int(detected[attempted].sum()), int(attempted.sum()), cfg.min_face_fraction)
    eyes = np.stack([det.eyes if det is not None else np.full((2, 2), np.nan) for det in tracked])
    eyes = interpolate_missing(eyes, detected)
    transforms = np.stack([template_transform(pair, cfg) for pair in smooth_tracks(eyes, cfg.smoothing_window)])
    crops = np.stack([warp_face(frame, matrix, cfg.crop_size) for frame, matrix in zip(frames, transforms)])
    empty = np.zeros((len(frames), 0, 2), np.float32)
    return AlignedClip(crops, face_present(detected, attempted), transforms, apply_transforms(transforms, eyes),
                       empty, np.zeros(len(frames), bool))


def _assert_same(a: AlignedClip, b: AlignedClip) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("settings", [{}, {"detect_every": 2}, {"detect_every": 3, "smoothing_window": 7},
                                      {"smoothing_window": 1}])
def test_streaming_equals_the_whole_clip_on_the_test_videos(videos: dict[str, Path], settings: dict, tmp_path: Path) -> None:
    gappy = read_video(write_mixed_video(tmp_path / "gaps.mp4", "-FF--FFF-F---FF-")).frames
    with FaceAligner(AlignConfig(crop_size=48, min_face_fraction=0.3, **settings)) as aligner:
        for name in ("face", "still", "moving", "gray", "one_frame", "large"):
            frames = read_video(videos[name]).frames
            for clip in (frames, frames[:2], frames[:3]):
                _assert_same(aligner.align_video(clip), whole_clip_alignment(aligner, clip))
        _assert_same(aligner.align_video(gappy), whole_clip_alignment(aligner, gappy))


@pytest.mark.slow
def test_streaming_equals_the_whole_clip_on_synthetic_videos(tiny_root: Path) -> None:
    paths = sorted((tiny_root / "videos").rglob("*.mp4"))[:4]
    assert paths
    with FaceAligner(AlignConfig(crop_size=32, min_face_fraction=0.0)) as aligner:
        for path in paths:
            frames = read_video(path).frames
            _assert_same(aligner.align_video(frames), whole_clip_alignment(aligner, frames))


def test_a_stream_holds_a_bounded_number_of_frames(videos: dict[str, Path]) -> None:
    cfg = AlignConfig(crop_size=32, smoothing_window=5, max_gap_seconds=0.2)
    frames = read_video(videos["moving"]).frames
    fed = []

    def source():
        for frame in np.concatenate([frames] * 4):
            fed.append(1)
            yield frame

    with FaceAligner(cfg) as aligner:
        lags = [len(fed) - item.index for item in aligner.align_stream(source(), fps=25.0)]
    assert len(lags) == 4 * len(frames)
    assert max(lags) <= aligner.max_gap_frames(25.0) + cfg.smoothing_window // 2 + 3


def test_a_gap_longer_than_the_bound_holds_the_last_eyes_instead_of_interpolating(tmp_path: Path) -> None:
    frames = read_video(write_mixed_video(tmp_path / "long_gap.mp4", "FFF" + "-" * 8 + "FFF")).frames
    short = AlignConfig(crop_size=48, smoothing_window=1, min_face_fraction=0.3, max_gap_seconds=4 / 25)
    with FaceAligner(short) as aligner:
        clip = aligner.align_video(frames)
        reference = whole_clip_alignment(aligner, frames)
    np.testing.assert_array_equal(clip.face_found, reference.face_found)
    np.testing.assert_array_equal(clip.transforms[:3], reference.transforms[:3])
    np.testing.assert_array_equal(clip.transforms[-3:], reference.transforms[-3:])
    for frame in range(3, 11):  # held at frame 2's transform, not moving towards frame 11
        np.testing.assert_array_equal(clip.transforms[frame], clip.transforms[2])


def test_eye_track_matches_the_whole_array_steps() -> None:
    rng = np.random.default_rng(0)
    eyes = 50 + rng.normal(0, 2, (40, 2, 2))
    found = rng.random(40) > 0.3
    found[[0, 39]] = True
    track = EyeTrack(window=7, max_gap=40, default=np.zeros((2, 2)))
    points = [p for i in range(40) for p in track.push(eyes[i] if found[i] else None)] + track.finish()
    filled = interpolate_missing(np.where(found[:, None, None], eyes, np.nan), found)
    np.testing.assert_array_equal(np.stack([p.filled for p in points]), filled)
    np.testing.assert_array_equal(np.stack([p.smoothed for p in points]), smooth_tracks(filled, 7))
    assert [p.index for p in points] == list(range(40))


def test_before_any_face_a_long_gap_crops_the_frame_centre() -> None:
    track = EyeTrack(window=1, max_gap=2, default=np.full((2, 2), 7.0))
    points = [p for _ in range(4) for p in track.push(None)] + track.finish()
    assert len(points) == 4 and all((p.filled == 7.0).all() for p in points)


def test_video_stream_gives_read_video_s_frames_and_verdicts(videos: dict[str, Path]) -> None:
    for name, step, limit in (("face", 1, 0), ("moving", 3, 5), ("truncated_avi", 1, 0), ("large", 1, 0)):
        video = read_video(videos[name], max_frames=limit, frame_step=step)
        with VideoStream(videos[name], max_frames=limit, frame_step=step) as stream:
            frames = np.stack(list(stream))
        np.testing.assert_array_equal(frames, video.frames)
        assert stream.source_index(np.arange(len(frames))).tolist() == video.source_index.tolist()
        assert (stream.fps, stream.expected_frames, stream.decoded_frames, stream.truncated, stream.scale) == (
            video.fps, video.expected_frames, video.decoded_frames, video.truncated, video.scale)


def test_closing_a_stream_early_stops_its_reader(videos: dict[str, Path]) -> None:
    stream = VideoStream(videos["moving"])
    first = next(iter(stream))
    stream.close()
    assert first.shape == (256, 256, 3) and not stream._thread.is_alive()
