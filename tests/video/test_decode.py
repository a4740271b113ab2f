"""Video decoding: RGB frames, stepping, downscaling, and a clear error for every kind of bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.video.decode import DEFAULT_MAX_SIDE, VideoError, read_video


def test_reads_rgb_frames_with_fps_and_indices(videos: dict[str, Path]) -> None:
    video = read_video(videos["face"])
    assert video.frames.shape == (10, 160, 160, 3) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(25.0)
    np.testing.assert_array_equal(video.source_index, np.arange(10))
    assert not video.truncated


def test_channel_order_is_rgb(tmp_path: Path) -> None:
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 64))
    writer.write(np.tile(np.array([0, 0, 255], np.uint8), (64, 64, 1)))  # pure red in OpenCV's BGR
    writer.release()
    mean = read_video(path).frames[0].reshape(-1, 3).mean(axis=0)
    assert mean[0] > 200 and mean[1] < 60 and mean[2] < 60


def test_frame_step_and_max_frames(videos: dict[str, Path]) -> None:
    video = read_video(videos["face"], max_frames=3, frame_step=3)
    np.testing.assert_array_equal(video.source_index, [0, 3, 6])
    assert len(video.frames) == 3


def test_grayscale_video_comes_back_as_rgb(videos: dict[str, Path]) -> None:
    frames = read_video(videos["gray"]).frames
    assert frames.shape[-1] == 3
    np.testing.assert_array_equal(frames[..., 0], frames[..., 2])


def test_one_frame_video(videos: dict[str, Path]) -> None:
    assert read_video(videos["one_frame"]).frames.shape == (1, 160, 160, 3)


def test_4k_frames_are_downscaled_on_read(videos: dict[str, Path]) -> None:
    video = read_video(videos["large"])
    assert max(video.frames.shape[1:3]) == DEFAULT_MAX_SIDE
    assert video.scale == pytest.approx(0.5)
    small = read_video(videos["large"], max_side=640)
    assert small.frames.shape[1:3] == (360, 640)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty", "empty file (0 bytes)"),
        ("text", "not a video: the file holds text"),
        ("truncated", "truncated or damaged"),
    ],
)
def test_bad_files_raise_with_path_and_reason(videos: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(VideoError) as err:
        read_video(videos[name])
    assert str(err.value).startswith(f"{videos[name]}: ")
    assert reason in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="file not found"):
        read_video(tmp_path / "nope.mp4")


def test_truncated_avi_keeps_the_decodable_frames(videos: dict[str, Path]) -> None:
    video = read_video(videos["truncated_avi"])
    assert 0 < len(video.frames) < 12
    assert video.truncated


def test_edge_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from age_estimation.config import AlignConfig\n"
        "import age_estimation.video.decode, age_estimation.video.align, age_estimation.data.manifest\n"
        "from age_estimation.video.align import FaceAligner\n"
        "FaceAligner(AlignConfig()).close()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
