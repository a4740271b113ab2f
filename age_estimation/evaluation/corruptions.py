"""Corrupted copies of a face video, in the spirit of ImageNet-C: what ``evaluate --corruptions`` feeds predict.

Each corruption has three severities (1 mild, 2 medium, 3 severe), except the rotations, which are one fixed
transform (a clip recorded on a turned phone, or upside down). Frame corruptions decode the source with the
product's decoder (``video.decode.VideoStream``: RGB, the longer side at most 1920 px), change every frame with
OpenCV/numpy and write an mp4 (mp4v, the source's frame rate) of the same size; ``byte_damage`` changes the
bytes of a copy of the encoded file instead, as a damaged download would. The transforms are pure functions of
one frame, so tests check them with numpy. Noise and byte damage are seeded from the file name, corruption
and severity: a benchmark run gives the same copies every time.

This module must not import TensorFlow (the evaluation may run a TFLite model).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from age_estimation.video.decode import VideoError, VideoStream

GREY = 128  # the padding of ``small_face`` and the colour of the ``occlusion`` patch
DEFAULT_FPS = 25.0  # written when the source's container gives no frame rate
FACE_MIN_SCORE = 0.5  # BlazeFace score for the face box that ``occlusion`` covers


class CorruptionError(ValueError):
    """A corrupted copy cannot be written (the source is unreadable); the message names the file."""


@dataclass(frozen=True)
class Corruption:
    """One kind of corruption: its parameter at each severity (``None`` only: a fixed transform) and what it is."""

    name: str
    levels: dict[int | None, float]
    template: str  # the parameter in words, "{}" standing for its value, e.g. "{} x brightness"

    def setting(self, severity: int | None) -> str:
        """The parameter of ``severity`` as text, e.g. '0.15 x brightness'."""
        return self.template.format(number_text(self.levels[severity]))

    def severities(self, wanted: list[int]) -> list[int | None]:
        """The levels to run for the ``wanted`` severities: those of them it has, or its one fixed level."""
        if None in self.levels:
            return [None]
        return [s for s in wanted if s in self.levels]


def number_text(value: float) -> str:
    """A parameter as it reads best: '4096', '0.333', '0.005'."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


CORRUPTIONS = {
    c.name: c
    for c in (
        Corruption("dark", {1: 0.40, 2: 0.15, 3: 0.06}, "{} x brightness"),
        Corruption("low_contrast", {1: 0.40, 2: 0.20, 3: 0.08}, "{} x contrast (about the frame mean)"),
        Corruption("blur", {1: 0.005, 2: 0.01, 3: 0.02}, "Gaussian, sigma {} x shorter side"),
        Corruption("noise", {1: 20.0, 2: 45.0, 3: 95.0}, "Gaussian, sigma {} grey levels"),
        Corruption("small_face", {1: 1 / 2, 2: 1 / 3, 3: 1 / 4}, "frame scaled {}, centred on grey"),
        Corruption("rotate90", {None: 90.0}, "{} degrees clockwise, width and height swapped"),
        Corruption("rotate180", {None: 180.0}, "{} degrees"),
        Corruption("jpeg", {1: 30.0, 2: 15.0, 3: 5.0}, "JPEG quality {} on every frame"),
        Corruption("byte_damage", {1: 256.0, 2: 1024.0, 3: 4096.0}, "{} bytes overwritten mid-file"),
        Corruption("occlusion", {1: 0.20, 2: 0.35, 3: 0.50}, "grey patch over {} of the face box"),
    )
}


def darken(frame: np.ndarray, factor: float) -> np.ndarray:
    """Brightness scaled by ``factor`` (an under-exposed room)."""
    return np.clip(np.rint(frame.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def reduce_contrast(frame: np.ndarray, factor: float) -> np.ndarray:
    """Every pixel pulled towards the frame's mean grey level, its distance kept at ``factor`` (haze, glare)."""
    pixels = frame.astype(np.float32)
    mean = pixels.mean()
    return np.clip(np.rint(mean + (pixels - mean) * factor), 0, 255).astype(np.uint8)


def blur(frame: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Gaussian blur of sigma ``sigma_fraction`` x the shorter side, so a severity means the same at any size."""
    sigma = sigma_fraction * min(frame.shape[:2])
    return cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian noise of ``sigma`` grey levels on every pixel and channel (a dim sensor)."""
    noisy = frame.astype(np.float32) + rng.normal(0.0, sigma, frame.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def shrink(frame: np.ndarray, scale: float) -> np.ndarray:
    """The whole frame scaled by ``scale`` and centred on a grey frame of the original size: the same scene
    filmed from further away, so the face covers ``scale`` of its pixels in each direction."""
    height, width = frame.shape[:2]
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA)
    canvas = np.full_like(frame, GREY)
    top, left = (height - small_h) // 2, (width - small_w) // 2
    canvas[top : top + small_h, left : left + small_w] = small
    return canvas


def rotate(frame: np.ndarray, degrees: float) -> np.ndarray:
    """The frame turned clockwise by 90, 180 or 270 degrees (``np.rot90`` with k = -degrees/90)."""
    turns = int(degrees) // 90
    if turns * 90 != degrees or turns % 4 == 0:
        raise ValueError(f"rotation must be 90, 180 or 270 degrees, got {degrees}")
    return np.ascontiguousarray(np.rot90(frame, k=-turns))


def jpeg(frame: np.ndarray, quality: float) -> np.ndarray:
    """The frame through JPEG at ``quality`` (0-100): blocking and ringing of a low-bitrate stream."""
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a frame of shape {frame.shape}")
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(frame.shape)


def patch_box(box: np.ndarray, fraction: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel bounds of a patch of ``fraction`` of ``box`` (x, y, w, h)'s area, same aspect,
    same centre."""
    x, y, w, h = (float(v) for v in box)
    side = np.sqrt(fraction)
    cx, cy, pw, ph = x + w / 2, y + h / 2, w * side, h * side
    return round(cx - pw / 2), round(cy - ph / 2), round(cx + pw / 2), round(cy + ph / 2)


def occlude(frame: np.ndarray, box: np.ndarray, fraction: float) -> np.ndarray:
    """A grey patch over ``fraction`` of the face ``box`` (x, y, w, h), centred on it (a hand, a mask)."""
    x0, y0, x1, y1 = patch_box(box, fraction)
    height, width = frame.shape[:2]
    out = frame.copy()
    out[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = GREY
    return out


def damage_bytes(data: bytes, count: int, rng: np.random.Generator) -> bytes:
    """``data`` with a run of ``count`` bytes in its middle changed (every one to another value); same length.

    A run longer than the data is cut to the data's length.
    """
    count = min(int(count), len(data))
    start = (len(data) - count) // 2
    damaged = np.frombuffer(data, np.uint8).copy()
    # XOR with a non-zero byte: each damaged byte is sure to differ from the original.
    damaged[start : start + count] ^= rng.integers(1, 256, count, dtype=np.uint8)
    return damaged.tobytes()


def default_face_box(shape: tuple[int, ...]) -> np.ndarray:
    """The box ``occlusion`` covers when no face was found yet: the centre half of the shorter side."""
    height, width = shape[:2]
    side = min(height, width) / 2
    return np.array([(width - side) / 2, (height - side) / 2, side, side])


class FaceBoxes:
    """The face box of each frame by the product's BlazeFace detector: the best detection, else the last box
    seen, else ``default_face_box``. The detector opens on the first call."""

    def __init__(self) -> None:
        self._detector = None
        self._last: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self._detector is None:
            from age_estimation.video.face_detector import FaceDetector

            self._detector = FaceDetector(min_score=FACE_MIN_SCORE)
        found = self._detector.detect(frame)
        if found:
            self._last = found[0].box
        return self._last if self._last is not None else default_face_box(frame.shape)


def frame_transform(name: str, value: float, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The per-frame function of corruption ``name`` with parameter ``value``, for one video."""
    rng = np.random.default_rng(seed)
    if name == "occlusion":
        boxes = FaceBoxes()
        return lambda frame: occlude(frame, boxes(frame), value)
    transforms: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "dark": lambda frame: darken(frame, value),
        "low_contrast": lambda frame: reduce_contrast(frame, value),
        "blur": lambda frame: blur(frame, value),
        "noise": lambda frame: add_noise(frame, value, rng),
        "small_face": lambda frame: shrink(frame, value),
        "rotate90": lambda frame: rotate(frame, value),
        "rotate180": lambda frame: rotate(frame, value),
        "jpeg": lambda frame: jpeg(frame, value),
    }
    if name not in transforms:
        raise ValueError(f"unknown frame corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    return transforms[name]


def copy_seed(source: Path, name: str, severity: int | None) -> int:
    """A seed fixed by the file name, corruption and severity, so reruns write the same copies."""
    return zlib.crc32(f"{source.name}:{name}:{severity}".encode())


def write_corrupted(source: str | Path, target: str | Path, name: str, severity: int | None) -> Path:
    """Write ``source`` with corruption ``name`` at ``severity`` to ``target`` (an .mp4 for frame
    corruptions); returns the path written. ``CorruptionError`` when the source cannot be read."""
    source, target = Path(source), Path(target)
    corruption = CORRUPTIONS[name]
    value, seed = corruption.levels[severity], copy_seed(source, name, severity)
    target.parent.mkdir(parents=True, exist_ok=True)
    if name == "byte_damage":
        try:
            data = source.read_bytes()
        except OSError as err:
            raise CorruptionError(f"{source}: cannot read the file to damage ({err})") from err
        target.write_bytes(damage_bytes(data, int(value), np.random.default_rng(seed)))
        return target
    transform = frame_transform(name, value, seed)
    try:
        with VideoStream(source) as video:
            written = _write_frames(target, (transform(frame) for frame in video), video.fps or DEFAULT_FPS)
    except VideoError as err:
        raise CorruptionError(str(err) if str(err).startswith(str(source)) else f"{source}: {err}") from err
    if not written:
        raise CorruptionError(f"{source}: OpenCV decoded no frames, so there is nothing to corrupt")
    return target


def _write_frames(target: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB ``frames`` as an mp4v video sized by the first frame; returns how many were written."""
    writer, count = None, 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise CorruptionError(f"{target}: OpenCV cannot write mp4v video here")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return count

