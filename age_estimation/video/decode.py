"""Video decoding with OpenCV (FFmpeg backend): RGB frames, frame stepping, and downscaling on read.

tensorflow-io cannot decode video on TF 2.21, so decoding uses OpenCV. This module
must not import TensorFlow: the edge inference path (video -> alignment -> LiteRT) runs without it.

Example:
    >>> video = read_video("clip.mp4", max_frames=64, frame_step=2)
    >>> video.frames.shape  # (N, H, W, 3) uint8 RGB
    >>> with VideoStream("long.mp4") as stream:  # the same frames, one at a time, in bounded memory
    ...     for frame in stream: ...
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

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

# Decoded frames a ``VideoStream`` reader thread may run ahead of its consumer: enough to hide the
# jitter of decode and detection times, few enough to cost little (8 x 640x360 RGB = 5.5 MB).
QUEUE_FRAMES = 8


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
    they are decoded. This holds the whole clip; ``VideoStream`` gives the same frames one at a time.
    """
    with VideoStream(path, max_frames, frame_step, max_side) as stream:
        frames = list(stream)
    return Video(
        frames=np.stack(frames),
        fps=stream.fps,
        source_index=stream.source_index(np.arange(len(frames))),
        path=stream.path,
        scale=stream.scale,
        expected_frames=stream.expected_frames,
        decoded_frames=stream.decoded_frames,
        read_to_end=stream.read_to_end,
    )


class VideoStream:
    """The RGB frames of a video, decoded by a reader thread a few frames ahead of the consumer.

    Same frames as ``read_video`` (every ``frame_step``-th, at most ``max_frames``, downscaled to
    ``max_side``) but only ``QUEUE_FRAMES`` are held, so memory does not grow with the video, and
    decoding (which releases the GIL in OpenCV) overlaps whatever the consumer does with a frame.
    Opening checks the file (``VideoError``); ``fps`` and ``expected_frames`` are known at once,
    ``decoded_frames``, ``read_to_end`` and ``truncated`` once iteration has ended. Iterate once;
    ``close()`` (or the context manager) stops the reader early.
    """

    def __init__(self, path: str | Path, max_frames: int = 0, frame_step: int = 1, max_side: int = 0) -> None:
        self.path = Path(path)
        if frame_step < 1:
            raise ValueError(f"{self.path}: frame_step must be at least 1, got {frame_step}")
        _check_file(self.path)
        self.max_frames, self.frame_step = max_frames, frame_step
        self._max_side = max_side or DEFAULT_MAX_SIDE
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            self._capture.release()
            raise VideoError(f"{self.path}: {_why_unreadable(self.path)}")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.expected_frames = max(int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        self.scale = 1.0
        self.decoded_frames = 0  # frames grabbed from the stream, the ones frame_step skipped included
        self.read_to_end = False
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def truncated(self) -> bool:
        """Whether the stream ended far short of the frames its container claims (see ``looks_truncated``)."""
        return self.read_to_end and looks_truncated(self.decoded_frames, self.expected_frames)

    def source_index(self, position: Any) -> Any:
        """Index in the source video of the kept frame(s) at ``position`` in this stream."""
        return np.asarray(position, dtype=np.int64) * self.frame_step

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._thread is not None:
            raise RuntimeError(f"{self.path}: a VideoStream can be iterated only once")
        self._thread = threading.Thread(target=self._read, name="video-reader", daemon=True)
        self._thread.start()
        kept = 0
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                kept += 1
                yield item
        finally:
            self.close()
        if not kept:
            raise VideoError(f"{self.path}: no decodable frames (empty, truncated or damaged video)")

    def close(self) -> None:
        """Stop the reader thread and release the file."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()  # unblock a reader waiting on a full queue
                self._thread.join(0.01)
        self._capture.release()

    def _read(self) -> None:
        """Reader thread: grab every frame, convert only the kept ones, until the end, ``max_frames`` or close."""
        try:
            kept = 0
            while not self._stop.is_set() and (not self.max_frames or kept < self.max_frames):
                if not self._capture.grab():
                    self.read_to_end = True
                    break
                index = self.decoded_frames
                self.decoded_frames += 1
                if index % self.frame_step:
                    continue
                ok, frame = self._capture.retrieve()
                if not ok or frame is None:
                    self.decoded_frames, self.read_to_end = index, True
                    break
                frame, self.scale = _to_rgb(frame, self._max_side)
                kept += 1
                self._put(frame)
            self._put(_END)
        except Exception as err:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(err)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return


_END = object()  # the reader thread's end-of-stream marker


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


def _to_rgb(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """BGR/BGRA/grayscale decoder output -> RGB uint8, downscaled so its longer side is <= max_side."""
    height, width = frame.shape[:2]
    scale = 1.0
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        frame = downscale(frame, (max(1, round(width * scale)), max(1, round(height * scale))))
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), scale
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB), scale
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), scale


def downscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` resized down to ``size`` (width, height) without aliasing: halved by area averaging while it
    is at least twice the size, then bilinear for the rest (a factor above 1/2, where bilinear does not alias).

    OpenCV averages exact halves on a fast path; one INTER_AREA resize by another factor takes the general one,
    which cost 4.1 ms of CPU a 1080p frame to 640 px here against 1.2 ms for this, 0.4 grey levels apart.
    """
    while frame.shape[1] >= 2 * size[0] and frame.shape[0] >= 2 * size[1]:
        frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (frame.shape[1], frame.shape[0]) != tuple(size):
        frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LINEAR)
    return frame
