"""Face detection and alignment: MediaPipe BlazeFace keypoints -> smoothed similarity transform -> crop.

Per frame, MediaPipe's BlazeFace short-range detector, run by LiteRT (``video/face_detector.py``), finds
faces; one face is followed through the clip (the largest and most central first, then by overlap with
its last box: ``video/face_track.py``).
Its eye centres, optionally refined by the 468-point face mesh run with LiteRT, are interpolated over
frames without a detection, smoothed over time (3-frame median, then Savitzky-Golay), and mapped by
a similarity transform onto a fixed template: the eyes land on ``(S*(1-d)/2, S*eye_y)`` and
``(S*(1+d)/2, S*eye_y)`` of an ``S x S`` crop. Only the eyes define the transform, so the face's own
proportions (an age cue) are kept.

This module must not import TensorFlow: the edge path (video -> alignment -> LiteRT) runs without it.

Example:
    >>> with FaceAligner(AlignConfig(crop_size=64)) as aligner:
    ...     clip = aligner.align_video(read_video("clip.mp4").frames)
    >>> clip.frames.shape  # (N, 64, 64, 3)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np

from age_estimation.config import AlignConfig
from age_estimation.logs import native_logs_hidden
from age_estimation.video.decode import VideoStream
from age_estimation.video.face_detector import FaceDetector
from age_estimation.video.face_mesh import FaceMesh
from age_estimation.video.face_track import Detection, track_step
from age_estimation.video.landmarks import LandmarkTracker
from age_estimation.video.tracking import EyeTrack

# Frames per second assumed for ``align.max_gap_seconds`` when the caller does not know the video's.
DEFAULT_FPS = 25.0
NO_LANDMARKS = np.zeros((0, 2), np.float32)  # a frame's landmarks without ``align.landmarks``
# Aligned frames whose landmarks the face-mesh thread may be working on while detection goes on: enough
# to keep both busy, few enough that the source frames they hold cost little (4 x 640x360 RGB = 2.8 MB).
LANDMARK_LOOKAHEAD = 4


class AlignmentError(ValueError):
    """A clip cannot be aligned (no face, or too few frames with one); the message says why."""


@dataclass
class AlignedClip:
    """Aligned face crops of a clip.

    Attributes:
        frames: (N, S, S, 3) uint8 RGB crops.
        face_found: (N,) bool, False where the transform was interpolated from neighbours.
        transforms: (N, 2, 3) float affine maps from source pixels to crop pixels.
        eye_positions: (N, 2, 2) float eye centres as found in each frame, mapped into the crop.
        landmarks: (N, K, 2) float32 landmark stream (``video/landmarks.py``); K = 0 without ``align.landmarks``.
        landmark_found: (N,) bool, False where the face mesh found no face (its landmarks are zeros).
    """

    frames: np.ndarray
    face_found: np.ndarray
    transforms: np.ndarray
    eye_positions: np.ndarray
    landmarks: np.ndarray
    landmark_found: np.ndarray


@dataclass
class AlignedFrame:
    """One aligned frame of a stream (``FaceAligner.align_stream``).

    Attributes:
        index: position of the frame in the input stream (0, 1, ...).
        crop: (S, S, 3) uint8 RGB aligned face.
        face_found: False where the transform was interpolated or held from other frames.
        transform: (2, 3) affine map from source pixels to crop pixels.
        eye_positions: (2, 2) eye centres as found (or filled in) for this frame, mapped into the crop.
        frame: the input frame itself, for callers that draw on it; drop it to free it.
        landmarks: (K, 2) float32 landmark stream of this frame (K = 0 without ``align.landmarks``).
        landmark_found: False where the face mesh found no face (the landmarks are then zeros).
        detection: the tracked face's detection in this frame (None where it was not detected).
        faces: every face the detector found in this frame, the tracked one included (empty where the
            detector did not run).
    """

    index: int
    crop: np.ndarray
    face_found: bool
    transform: np.ndarray
    eye_positions: np.ndarray
    frame: np.ndarray
    landmarks: np.ndarray
    landmark_found: bool
    detection: Detection | None = None
    faces: list[Detection] = dataclasses.field(default_factory=list)


@dataclass
class _Pending:
    """A frame waiting for the track to settle: its detection verdicts and, when skipped, its neighbours'."""

    frame: np.ndarray
    attempted: bool
    detected: bool
    before: bool  # detected at the last tried frame before (skipped frames only)
    after: bool | None = None  # ... and at the next tried frame, once it has run
    detection: Detection | None = None  # the tracked face, where detected
    faces: list[Detection] = dataclasses.field(default_factory=list)  # every face found, where tried


class FaceAligner:
    """Detects, tracks and aligns one face per clip with the settings of an ``AlignConfig``.

    Holds LiteRT interpreters: the face detector, and the face mesh for ``use_face_mesh`` and ``landmarks``;
    build once per process and reuse; ``close()`` or use as a context manager. Their C++ logs are
    hidden unless library logs are shown (``age_estimation.logs``).
    """

    def __init__(self, cfg: AlignConfig, follow: Detection | None = None) -> None:
        """``follow``: the face to track from the first frame on (by overlap with its box), instead of the
        largest, most central one."""
        self.cfg = cfg
        self.follow = follow
        with native_logs_hidden():
            self._detector: FaceDetector | None = FaceDetector(cfg.min_detection_confidence)
            self._mesh = FaceMesh() if cfg.use_face_mesh else None
            self._landmarks = LandmarkTracker(cfg) if cfg.landmarks else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the detector."""
        self._detector = None

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """All faces in one RGB frame, with eye centres refined by the face mesh when enabled."""
        if self._detector is None:
            raise RuntimeError("this FaceAligner is closed")
        found = self._detector.detect(np.ascontiguousarray(frame))
        if self._mesh is not None:
            for det in found:
                det.eyes = self._mesh.refine_eyes(frame, det.eyes, det.centre, float(det.box[2:].max()))
        return found

    def align_video(self, frames: np.ndarray) -> AlignedClip:
        """Align every frame of an (N, H, W, 3) RGB clip; ``AlignmentError`` when too few have a face."""
        aligned = list(self.align_stream(_as_rgb_clip(frames)))
        return AlignedClip(
            frames=np.stack([item.crop for item in aligned]),
            face_found=np.array([item.face_found for item in aligned]),
            transforms=np.stack([item.transform for item in aligned]),
            eye_positions=np.stack([item.eye_positions for item in aligned]),
            landmarks=np.stack([item.landmarks for item in aligned]),
            landmark_found=np.array([item.landmark_found for item in aligned]),
        )

    def align_stream(self, frames: Iterable[np.ndarray], fps: float = 0.0) -> Iterator[AlignedFrame]:
        """Align RGB frames as they come, yielding each ``AlignedFrame`` in order once its track has settled.

        Holds at most ``max_gap_frames(fps)`` + ``smoothing_window`` (+ ``LANDMARK_LOOKAHEAD``) frames
        whatever the clip's length; gives the same frames as ``align_video`` on the whole clip while no
        face gap exceeds that bound (a longer gap holds the last eyes seen). After the last frame it raises
        ``AlignmentError`` when too few frames had a face (``align.min_face_fraction``): a consumer must
        discard what it got. With ``align.landmarks`` the face mesh runs on a thread of its own, so it
        overlaps the detection of the next frames (both release the GIL).
        """
        aligned = self._align_frames(frames, fps)
        if self._landmarks is None:
            yield from aligned
            return
        pending: deque[tuple[AlignedFrame, Future[Any]]] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="face-mesh") as mesh:
            try:
                for item in aligned:
                    pending.append((item, mesh.submit(self._landmarks.landmarks, item.frame, item.transform)))
                    if len(pending) > LANDMARK_LOOKAHEAD:
                        yield _with_landmarks(*pending.popleft())
            except AlignmentError:  # raised after the last frame: the frames before it still come out first
                while pending:
                    yield _with_landmarks(*pending.popleft())
                raise
            while pending:
                yield _with_landmarks(*pending.popleft())

    def _align_frames(self, frames: Iterable[np.ndarray], fps: float) -> Iterator[AlignedFrame]:
        """``align_stream`` without the landmark stream: detection, tracking, smoothing and the crops."""
        cfg, every = self.cfg, max(1, self.cfg.detect_every)
        pending: deque[_Pending] = deque()
        track: EyeTrack | None = None
        last: Detection | None = self.follow  # the tracked face, where it was last seen
        newest: Detection | None = None  # the newest frame's face: pushed once the next frame shows it is not the last
        last_tried = False  # whether the face was found at the last frame the detector ran on
        tried = found = 0
        for index, frame in enumerate(frames):
            frame = _as_rgb_frame(frame)
            if track is None:
                track = EyeTrack(cfg.smoothing_window, self.max_gap_frames(fps), _centre_eyes(frame, cfg))
            else:
                yield from self._emit(pending, track.push(None if newest is None else newest.eyes))
            attempted = index % every == 0
            faces = self.detect(frame) if attempted else []
            newest = self._track(frame, last, faces) if attempted else None
            if attempted:
                tried, found, last_tried = tried + 1, found + (newest is not None), newest is not None
                last = newest or last
                _settle_skipped(pending, last_tried)
            pending.append(_Pending(frame, attempted, newest is not None, last_tried, None, newest, faces))
        if track is None:
            raise AlignmentError("expected (N, H, W, 3) RGB frames with N >= 1, got none")
        tail = pending[-1]
        if not tail.attempted:  # the detector always runs on the last frame
            tail.faces = self.detect(tail.frame)
            newest = self._track(tail.frame, last, tail.faces)
            tried, found = tried + 1, found + (newest is not None)
            tail.attempted, tail.detected, tail.detection = True, newest is not None, newest
            _settle_skipped(pending, tail.detected)
        yield from self._emit(pending, track.push(None if newest is None else newest.eyes))
        yield from self._emit(pending, track.finish())
        _check_face_fraction(found, tried, cfg.min_face_fraction)

    def max_gap_frames(self, fps: float = 0.0) -> int:
        """Longest face gap (frames) interpolated in a stream: ``align.max_gap_seconds`` at ``fps``.

        Never below two detection intervals, so the frames ``detect_every`` skips are always filled.
        """
        return max(round(self.cfg.max_gap_seconds * (fps or DEFAULT_FPS)), 2 * max(1, self.cfg.detect_every))

    def _track(self, frame: np.ndarray, last: Detection | None, faces: list[Detection]) -> Detection | None:
        """The tracked face among this frame's detections ``faces`` (None when it is not there)."""
        height, width = frame.shape[:2]
        return track_step(last, faces, width, height)

    def _emit(self, pending: deque[_Pending], points: list[Any]) -> Iterator[AlignedFrame]:
        for point in points:
            item = pending.popleft()
            present = item.detected if item.attempted else bool(item.before and item.after)
            transform = template_transform(point.smoothed, self.cfg)
            yield AlignedFrame(
                index=point.index,
                crop=warp_face(item.frame, transform, self.cfg.crop_size),
                face_found=present,
                transform=transform,
                eye_positions=apply_transforms(transform[None], point.filled[None])[0],
                frame=item.frame,
                landmarks=NO_LANDMARKS,
                landmark_found=False,
                detection=item.detection,
                faces=item.faces,
            )

    def align_image(self, image: np.ndarray) -> np.ndarray | None:
        """Aligned (S, S, 3) crop of the main face in one RGB image, or None when there is none."""
        image = _as_rgb_clip(image[None])[0]
        height, width = image.shape[:2]
        main = track_step(None, self.detect(image), width, height)  # the main face, as a track starts
        if main is None:
            return None
        return warp_face(image, template_transform(main.eyes, self.cfg), self.cfg.crop_size)


def open_video(path: str | Path, cfg: AlignConfig) -> VideoStream:
    """The frames of ``path`` that alignment reads: every ``frame_step``-th, at most ``max_frames``, longer
    side at most ``max_side``. Prepare and predict both read through it, so their crops come from the same
    pixels (a 1080p video is aligned from its 640 px copy in both)."""
    return VideoStream(path, cfg.max_frames, cfg.frame_step, cfg.max_side)


def detection_frames(count: int, every: int) -> np.ndarray:
    """Which frames the detector runs on: every ``every``-th one and the last; the rest are interpolated.

    Detection costs about 3 ms a frame against 1-2 ms for decoding a small frame, so detecting on every
    second frame nearly halves prepare time while the smoothed, interpolated track stays on the face.
    """
    attempted = np.zeros(count, bool)
    attempted[:: max(1, every)] = True
    if count:
        attempted[-1] = True
    return attempted


def face_present(detected: np.ndarray, attempted: np.ndarray) -> np.ndarray:
    """Per frame: detected there, or (when skipped) detected at the nearest tried frames on both sides."""
    present = detected.copy()
    tried = np.flatnonzero(attempted)
    for frame in np.flatnonzero(~attempted):
        before, after = tried[tried < frame], tried[tried > frame]
        present[frame] = bool(before.size and after.size and detected[before[-1]] and detected[after[0]])
    return present


def template_eyes(cfg: AlignConfig) -> np.ndarray:
    """Where the image-left and image-right eye centres land in the crop, (2, 2) pixels."""
    size, d = cfg.crop_size, cfg.eye_distance
    return np.array([[size * (1 - d) / 2, size * cfg.eye_y], [size * (1 + d) / 2, size * cfg.eye_y]])


def template_transform(eyes: np.ndarray, cfg: AlignConfig) -> np.ndarray:
    """The (2, 3) similarity transform taking the two eye centres onto the template's eye positions."""
    target = template_eyes(cfg)
    src = eyes[:, 0] + 1j * eyes[:, 1]
    dst = target[:, 0] + 1j * target[:, 1]
    if abs(src[1] - src[0]) < 1e-6:
        raise AlignmentError(f"degenerate face: both eye centres at {eyes[0].tolist()}")
    rotation_scale = (dst[1] - dst[0]) / (src[1] - src[0])
    shift = dst[0] - rotation_scale * src[0]
    a, b = rotation_scale.real, rotation_scale.imag
    return np.array([[a, -b, shift.real], [b, a, shift.imag]])


def apply_transforms(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map per-frame points (N, K, 2) by per-frame affine transforms (N, 2, 3)."""
    return np.einsum("nij,nkj->nki", transforms[:, :, :2], points) + transforms[:, None, :, 2]


def warp_face(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply an affine map to get the (size, size) crop; strong shrinking first area-resamples the face region.

    Only the region the crop samples (plus the resampling kernel's reach) is resized, not the frame:
    at 640 px frames and 64 px crops that is a tenth of the pixels.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        factor = 2 * scale
        frame, matrix = _crop_region(frame, matrix, size, margin=int(np.ceil(2 / factor)) + 2)
        height, width = frame.shape[:2]
        frame = cv2.resize(
            frame, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
        )
        matrix = matrix.copy()
        matrix[:, :2] /= factor
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _crop_region(frame: np.ndarray, matrix: np.ndarray, size: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``frame`` that the (size, size) crop of ``matrix`` samples, and the map from it.

    The region is clipped to the frame, so a crop reaching past the frame edge still replicates that edge.
    """
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    source = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = frame.shape[:2]
    x0, y0 = (int(np.clip(np.floor(v) - margin, 0, limit - 1)) for v, limit in zip(source.min(axis=0), (width, height)))
    x1, y1 = (int(np.clip(np.ceil(v) + margin, 1, limit)) for v, limit in zip(source.max(axis=0), (width, height)))
    if x1 <= x0 or y1 <= y0:
        return frame, matrix
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return frame[y0:y1, x0:x1], shifted


def _as_rgb_clip(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise AlignmentError(f"expected (N, H, W, 3) RGB frames with N >= 1, got shape {frames.shape}")
    return np.ascontiguousarray(frames, dtype=np.uint8)


def _with_landmarks(item: AlignedFrame, landmarks: Future[Any]) -> AlignedFrame:
    """``item`` with the landmark stream its face-mesh job found."""
    found = landmarks.result()
    return dataclasses.replace(item, landmarks=found.points, landmark_found=found.found)


def _settle_skipped(pending: deque[_Pending], detected: bool) -> None:
    """Tell the skipped frames waiting for it whether the face was found at the next tried frame."""
    for item in pending:
        if item.after is None and not item.attempted:
            item.after = detected


def _as_rgb_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise AlignmentError(f"expected (H, W, 3) RGB frames, got shape {frame.shape}")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _centre_eyes(frame: np.ndarray, cfg: AlignConfig) -> np.ndarray:
    """Eyes that make the crop the frame's central square: used for frames before any face was seen."""
    height, width = frame.shape[:2]
    side = min(height, width)
    template = template_eyes(cfg) * (side / cfg.crop_size)
    return template + np.array([(width - side) / 2, (height - side) / 2])


def _check_face_fraction(count: int, total: int, min_fraction: float) -> None:
    if count == 0:
        raise AlignmentError(f"no face found in any of {total} frames")
    if count / total < min_fraction:
        raise AlignmentError(
            f"face found in only {count} of {total} frames ({count / total:.0%}), "
            f"below align.min_face_fraction {min_fraction:g}"
        )
