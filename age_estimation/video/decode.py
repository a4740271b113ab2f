"""Video decoding with OpenCV (FFmpeg backend): RGB frames, frame stepping, and downscaling on read.

tensorflow-io cannot decode video on TF 2.21, so decoding uses OpenCV. This module
must not import TensorFlow: the edge inference path (video -> alignment -> LiteRT) runs without it.

Example:
    >>> video = read_video("clip.mp4", max_frames=64, frame_step=2)
    >>> video.frames.shape  # (N, H, W, 3) uint8 RGB
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Frames whose longer side exceeds this are downscaled on read when the caller sets no limit:
# face detection works on 128x128 inputs, so 4K frames only cost memory.
DEFAULT_MAX_SIDE = 1920

# A file read to its end looks truncated when it gave fewer than this share of the frames its
# container claims (CAP_PROP_FRAME_COUNT) and more than this many frames short. Containers without
# a frame table estimate the count from duration x fps and may over-count by a frame or two (more
# for variable frame rates); a cut-off file falls far short (the first 60 KB of a 472-frame mp4
# gives 30 frames, the 12-frame MJPG .avi cut at 60% of its bytes gives 7).
TRUNCATED_MIN_FRACTION = 0.9
TRUNCATED_MAX_SHORT = 2


class VideoError(ValueError):
    """A video cannot be read; the message starts with the file path and says why."""


@dataclass
class Video:
    """Decoded frames of one video.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB.
        fps: frames per second reported by the container (0 when unknown).
        source_index: (N,) int index of each kept frame in the source video.
        path: the file that was read.
        scale: factor applied to the source frame size (1.0 when not downscaled).
        expected_frames: frame count claimed by the container (0 when unknown).
        decoded_frames: frames read from the stream, the ones ``frame_step`` skipped included.
        read_to_end: whether decoding ran until the stream ended (False when ``max_frames`` stopped it).
    """

    frames: np.ndarray
    fps: float
    source_index: np.ndarray
    path: Path
    scale: float = 1.0
    expected_frames: int = 0
    decoded_frames: int = 0
    read_to_end: bool = True

    @property
    def truncated(self) -> bool:
        """Whether the stream ended far short of the frames its container claims (see ``looks_truncated``)."""
        return self.read_to_end and looks_truncated(self.decoded_frames, self.expected_frames)


def looks_truncated(decoded: int, claimed: int) -> bool:
    """Whether ``decoded`` frames of a file read to its end are far fewer than the ``claimed`` count."""
    short = claimed - decoded
    return claimed > 0 and short > TRUNCATED_MAX_SHORT and decoded < TRUNCATED_MIN_FRACTION * claimed


def read_video(path: str | Path, max_frames: int = 0, frame_step: int = 1, max_side: int = 0) -> Video:
    """Decode ``path`` into RGB frames, keeping every ``frame_step``-th frame, at most ``max_frames``.

    Frames whose longer side exceeds ``max_side`` (``DEFAULT_MAX_SIDE`` when 0) are downscaled as
    they are decoded, so very large videos never hold full-size frames in memory.
    """
    path = Path(path)
    if frame_step < 1:
        raise ValueError(f"{path}: frame_step must be at least 1, got {frame_step}")
    _check_file(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: {_why_unreadable(path)}")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        expected = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        decoded = _decode(capture, max_frames, frame_step, max_side or DEFAULT_MAX_SIDE)
    finally:
        capture.release()
    if not decoded.frames:
        raise VideoError(f"{path}: no decodable frames (empty, truncated or damaged video)")
    return Video(
        frames=np.stack(decoded.frames),
        fps=fps,
        source_index=np.asarray(decoded.indices, dtype=np.int64),
        path=path,
        scale=decoded.scale,
        expected_frames=expected,
        decoded_frames=decoded.read,
        read_to_end=decoded.read_to_end,
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    if not path.is_file():
        raise VideoError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")


def _why_unreadable(path: Path) -> str:
    """A reason for a file FFmpeg cannot open, from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head[4:8] == b"ftyp":
        return "MP4/MOV file that cannot be opened: truncated or damaged (e.g. its 'moov' index is missing)"
    if b"\0" not in head and sum(32 <= b < 127 or b in b"\t\r\n" for b in head) >= 0.95 * len(head):
        return "not a video: the file holds text"
    return "not a readable video (OpenCV/FFmpeg cannot open it: unknown format or damaged)"


@dataclass
class _Decoded:
    frames: list[np.ndarray]
    indices: list[int]
    scale: float = 1.0
    read: int = 0  # frames grabbed from the stream
    read_to_end: bool = False


def _decode(capture: cv2.VideoCapture, max_frames: int, frame_step: int, max_side: int) -> _Decoded:
    """Grab every frame, convert only the kept ones, until the stream ends or ``max_frames`` are kept."""
    out = _Decoded([], [])
    while not max_frames or len(out.frames) < max_frames:
        if not capture.grab():
            out.read_to_end = True
            break
        index = out.read
        out.read += 1
        if index % frame_step:
            continue
        ok, frame = capture.retrieve()
        if not ok or frame is None:
            out.read, out.read_to_end = index, True
            break
        frame, out.scale = _to_rgb(frame, max_side)
        out.frames.append(frame)
        out.indices.append(index)
    return out


def _to_rgb(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """BGR/BGRA/grayscale decoder output -> RGB uint8, downscaled so its longer side is <= max_side."""
    height, width = frame.shape[:2]
    scale = 1.0
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), scale
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB), scale
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), scale
