"""Small test videos: a real face (scikit-image's astronaut), no face, and each kind of broken file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.bench.face_video import face_image, write_face_video

FACE_SIZE = (160, 160)


def write_blank_video(path: Path, frames: int = 8, size: tuple[int, int] = (128, 128), seed: int = 0) -> Path:
    """An mp4 of smooth random colour blobs: no face anywhere."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for _ in range(frames):
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        writer.write(cv2.resize(small, size, interpolation=cv2.INTER_CUBIC))
    writer.release()
    return path


def write_mixed_video(path: Path, pattern: str, size: tuple[int, int] = FACE_SIZE) -> Path:
    """An mp4 whose frames are the face ('F') or a grey card ('-') in the order of ``pattern``."""
    face = cv2.cvtColor(cv2.resize(face_image(), size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    card = np.full_like(face, 128)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for symbol in pattern:
        writer.write(face if symbol == "F" else card)
    writer.release()
    return path


def write_truncated_avi(path: Path, frames: int = 12, keep: float = 0.6) -> Path:
    """An MJPG .avi cut after ``keep`` of its bytes: FFmpeg decodes the frames before the cut."""
    face = cv2.cvtColor(cv2.resize(face_image(), FACE_SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, FACE_SIZE)
    for i in range(frames):
        writer.write(np.roll(face, i, axis=1).copy())
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test video, written once per session: good ones and each kind of bad input."""
    folder = tmp_path_factory.mktemp("videos")
    face = write_face_video(folder / "face.mp4", frames=10, size=FACE_SIZE, seed=1)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(face.read_bytes()[: face.stat().st_size // 2])
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    return {
        "face": face,
        "still": write_face_video(folder / "still.mp4", frames=30, size=(256, 256), motion=0.0, seed=2),
        "moving": write_face_video(folder / "moving.mp4", frames=24, size=(256, 256), motion=8.0, seed=3),
        "gray": write_face_video(folder / "gray.mp4", frames=6, size=FACE_SIZE, gray=True, seed=4),
        "one_frame": write_face_video(folder / "one_frame.mp4", frames=1, size=FACE_SIZE, seed=5),
        "large": write_face_video(folder / "large.mp4", frames=2, size=(3840, 2160), motion=0.0, noise=0.0),
        "no_face": write_blank_video(folder / "no_face.mp4"),
        "truncated": truncated,
        "truncated_avi": write_truncated_avi(folder / "truncated.avi"),
        "empty": empty,
        "text": text,
    }
