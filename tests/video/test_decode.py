"""Video decoding: RGB frames, stepping, downscaling, and a clear error for every kind of bad file."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.video.decode import DEFAULT_MAX_SIDE, VideoError, downscale, looks_truncated, read_video
from tests.video_files import write_blank_video


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the MP4 boxes between ``start`` and ``end``."""
    found, pos = [], start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        found.append((kind, pos, size))
        pos += size
    return found


def faststart(data: bytes) -> bytes:
    """An OpenCV mp4 with its 'moov' index moved before the frames, as cameras and web videos have it.

    Cut short, such a file still opens and claims its full frame count, but decodes only the
    frames before the cut; OpenCV writes 'moov' last, so its own files cut short do not open at all.
    """
    top = {kind: (pos, size) for kind, pos, size in _boxes(data, 0, len(data))}
    moov_at, moov_size = top[b"moov"]
    moov = bytearray(data[moov_at : moov_at + moov_size])

    def shift_chunk_offsets(start: int, end: int) -> None:
        for kind, pos, size in _boxes(moov, start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                shift_chunk_offsets(pos + 8, pos + size)
            elif kind == b"stco":
                (count,) = struct.unpack(">I", moov[pos + 12 : pos + 16])
                for at in range(pos + 16, pos + 16 + 4 * count, 4):
                    moov[at : at + 4] = struct.pack(">I", struct.unpack(">I", moov[at : at + 4])[0] + moov_size)

    shift_chunk_offsets(8, moov_size)
    ftyp_size = top[b"ftyp"][1]
    rest = b"".join(data[pos : pos + size] for kind, (pos, size) in top.items() if kind not in (b"ftyp", b"moov"))
    return data[:ftyp_size] + bytes(moov) + rest


def test_reads_rgb_frames_with_fps_and_indices(videos: dict[str, Path]) -> None:
    video = read_video(videos["face"])
    assert video.frames.shape == (10, 160, 160, 3) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(25.0)
    np.testing.assert_array_equal(video.source_index, np.arange(10))
    assert not video.truncated
    assert (video.decoded_frames, video.expected_frames, video.read_to_end) == (10, 10, True)


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
    assert not video.read_to_end and not video.truncated


def test_frame_step_counts_the_skipped_frames_as_decoded(videos: dict[str, Path]) -> None:
    video = read_video(videos["face"], frame_step=4)
    np.testing.assert_array_equal(video.source_index, [0, 4, 8])
    assert video.decoded_frames == 10 and video.read_to_end and not video.truncated


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


@pytest.mark.parametrize("source", [(1080, 1920), (2160, 3840), (721, 1283)])
def test_downscale_averages_pixels_as_area_resampling_does(source: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    # smooth content under per-pixel noise: the detail a plain bilinear shrink aliases
    frame = cv2.resize(rng.integers(0, 256, (40, 60, 3), np.uint8), source[::-1], interpolation=cv2.INTER_CUBIC)
    frame = np.clip(frame + rng.normal(0, 20, frame.shape), 0, 255).astype(np.uint8)
    size = (640, round(source[0] * 640 / source[1]))
    out = downscale(frame, size)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
    area = cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(float)
    bilinear = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR).astype(float)
    # measured: 1.5-3.1 grey levels from one area resize, where a bilinear shrink is 5.7-14.6 off
    assert np.abs(out - area).mean() < 3.5
    assert np.abs(out - area).mean() < 0.5 * np.abs(bilinear - area).mean()


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
    assert (len(video.frames), video.decoded_frames, video.expected_frames) == (7, 7, 12)
    assert video.truncated


def test_a_cut_off_mp4_with_its_index_first_is_truncated(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(faststart(write_blank_video(tmp_path / "source.mp4", frames=120, size=(96, 96)).read_bytes()))
    assert not read_video(whole).truncated and read_video(whole).decoded_frames == 120
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 4])
    video = read_video(cut)
    assert video.expected_frames == 120 and 10 < video.decoded_frames < 60
    assert video.truncated
    assert not read_video(cut, max_frames=5).truncated  # stopped by max_frames: nothing to judge


@pytest.mark.parametrize(
    "decoded, claimed, truncated",
    [(9, 472, True), (30, 472, True), (7, 12, True), (7, 10, True), (470, 472, False), (466, 472, False),
     (8, 10, False), (1, 3, False), (10, 10, False), (12, 10, False), (5, 0, False)],
)
def test_looks_truncated_allows_a_few_missing_frames(decoded: int, claimed: int, truncated: bool) -> None:
    assert looks_truncated(decoded, claimed) is truncated


def test_edge_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from age_estimation.config import AlignConfig\n"
        "import age_estimation.video.decode, age_estimation.video.align, age_estimation.data.manifest\n"
        "from age_estimation.video.align import FaceAligner\n"
        "FaceAligner(AlignConfig()).close()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'mediapipe' not in sys.modules, 'mediapipe was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
