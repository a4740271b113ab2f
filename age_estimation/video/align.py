"""Face detection and alignment: MediaPipe BlazeFace keypoints -> smoothed similarity transform -> crop.

Per frame, the MediaPipe Tasks ``FaceDetector`` (BlazeFace short-range) finds faces; one face is
followed through the clip (the largest and most central first, then by overlap with its last box).
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

import sys
import types
from dataclasses import dataclass
from typing import Any, Self

import cv2
import numpy as np

from age_estimation.config import AlignConfig
from age_estimation.logs import native_logs_hidden
from age_estimation.video.face_models import FACE_DETECTOR, FACE_MESH, asset_path

MESH_INPUT = 192  # the face mesh model's square input size
MESH_BOX_SCALE = 1.5  # the mesh crop is this many times the detector's face box
MESH_MIN_PRESENCE = 0.5  # below this face-presence probability the mesh result is ignored
# Face mesh vertex indices: the contour rings of the image-left and image-right eye.
MESH_EYE_RINGS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
)
SMOOTHING_ORDER = 2  # Savitzky-Golay polynomial order: follows steady head motion without lag
TRACK_MIN_IOU = 0.3  # a detection overlapping the tracked box this much is the same face
TRACK_MAX_SHIFT = 0.5  # ... or one whose centre moved less than this many box sizes


class AlignmentError(ValueError):
    """A clip cannot be aligned (no face, or too few frames with one); the message says why."""


@dataclass
class Detection:
    """One detected face in pixel coordinates: box (x, y, w, h), score, and the two eye centres."""

    box: np.ndarray
    score: float
    eyes: np.ndarray  # (2, 2): image-left eye, image-right eye (x, y)

    @property
    def centre(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2


@dataclass
class AlignedClip:
    """Aligned face crops of a clip.

    Attributes:
        frames: (N, S, S, 3) uint8 RGB crops.
        face_found: (N,) bool, False where the transform was interpolated from neighbours.
        transforms: (N, 2, 3) float affine maps from source pixels to crop pixels.
        eye_positions: (N, 2, 2) float eye centres as found in each frame, mapped into the crop.
    """

    frames: np.ndarray
    face_found: np.ndarray
    transforms: np.ndarray
    eye_positions: np.ndarray


class FaceAligner:
    """Detects, tracks and aligns one face per clip with the settings of an ``AlignConfig``.

    Holds a MediaPipe detector (and a LiteRT face mesh interpreter when ``use_face_mesh``);
    build once per process and reuse; ``close()`` or use as a context manager. Their C++ logs are
    hidden unless library logs are shown (``age_estimation.logs``).
    """

    def __init__(self, cfg: AlignConfig) -> None:
        self.cfg = cfg
        mp, vision, base_options = _import_mediapipe()
        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=base_options(model_asset_path=str(asset_path(FACE_DETECTOR))),
            min_detection_confidence=cfg.min_detection_confidence,
        )
        with native_logs_hidden():
            self._detector = vision.FaceDetector.create_from_options(options)
            self._mesh = _FaceMesh() if cfg.use_face_mesh else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the detector."""
        if self._detector is not None:
            with native_logs_hidden():
                self._detector.close()
            self._detector = None

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """All faces in one RGB frame, with eye centres refined by the face mesh when enabled."""
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        height, width = frame.shape[:2]
        with native_logs_hidden():
            result = self._detector.detect(image)
        found = []
        for item in result.detections:
            box = item.bounding_box
            points = np.array([[k.x * width, k.y * height] for k in item.keypoints[:2]], dtype=np.float64)
            found.append(
                Detection(
                    box=np.array([box.origin_x, box.origin_y, box.width, box.height], dtype=np.float64),
                    score=float(item.categories[0].score),
                    eyes=points[np.argsort(points[:, 0])],
                )
            )
        if self._mesh is not None:
            for det in found:
                det.eyes = self._mesh.refine_eyes(frame, det)
        return found

    def align_video(self, frames: np.ndarray) -> AlignedClip:
        """Align every frame of an (N, H, W, 3) RGB clip; ``AlignmentError`` when too few have a face."""
        frames = _as_rgb_clip(frames)
        height, width = frames.shape[1:3]
        attempted = detection_frames(len(frames), self.cfg.detect_every)
        detections = [self.detect(frame) if tried else [] for frame, tried in zip(frames, attempted)]
        tracked = track_face(detections, width, height)
        detected = np.array([det is not None for det in tracked])
        _check_face_fraction(detected[attempted], self.cfg.min_face_fraction)
        found = face_present(detected, attempted)
        eyes = np.stack([det.eyes if det is not None else np.full((2, 2), np.nan) for det in tracked])
        eyes = interpolate_missing(eyes, detected)
        smoothed = smooth_tracks(eyes, self.cfg.smoothing_window)
        transforms = np.stack([template_transform(pair, self.cfg) for pair in smoothed])
        size = self.cfg.crop_size
        crops = np.stack([warp_face(frame, matrix, size) for frame, matrix in zip(frames, transforms)])
        return AlignedClip(
            frames=crops,
            face_found=found,
            transforms=transforms,
            eye_positions=apply_transforms(transforms, eyes),
        )

    def align_image(self, image: np.ndarray) -> np.ndarray | None:
        """Aligned (S, S, 3) crop of the main face in one RGB image, or None when there is none."""
        image = _as_rgb_clip(image[None])[0]
        height, width = image.shape[:2]
        detections = self.detect(image)
        if not detections:
            return None
        main = detections[_main_face(detections, width, height)]
        return warp_face(image, template_transform(main.eyes, self.cfg), self.cfg.crop_size)


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


def track_face(detections: list[list[Detection]], width: int, height: int) -> list[Detection | None]:
    """Follow one face through the frames: the largest, most central one first, then by box overlap.

    Frames where no detection matches the tracked face (including frames with only other
    faces) get None; matching continues from the last place the face was seen.
    """
    tracked: list[Detection | None] = []
    last: Detection | None = None
    for candidates in detections:
        if not candidates:
            tracked.append(None)
            continue
        if last is None:
            chosen: Detection | None = candidates[_main_face(candidates, width, height)]
        else:
            chosen = _match(last, candidates)
        tracked.append(chosen)
        last = chosen or last
    return tracked


def interpolate_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face by linear interpolation between the nearest frames with one.

    ``points`` is (N, ...) over time; frames before the first (after the last) face copy it.
    """
    if found.all():
        return points.copy()
    known = np.flatnonzero(found)
    flat = points.reshape(len(points), -1)
    filled = np.stack(
        [np.interp(np.arange(len(points)), known, flat[known, j]) for j in range(flat.shape[1])], axis=1
    )
    return filled.reshape(points.shape)


def smooth_tracks(points: np.ndarray, window: int) -> np.ndarray:
    """Smooth (N, ...) points over time: a 3-frame running median, then a Savitzky-Golay filter.

    The median removes single-frame detector outliers; the local quadratic fit over ``window``
    frames removes jitter while following head motion without the lag of a moving average.
    Edges are extended by odd reflection, which keeps a linear trend, so nothing drifts.
    """
    if window <= 1 or len(points) < 2:
        return points.copy()
    flat = _running_median3(points.reshape(len(points), -1))
    half = window // 2
    offsets = np.arange(-half, half + 1)
    weights = np.linalg.pinv(np.vander(offsets, SMOOTHING_ORDER + 1, increasing=True))[0]
    mode = {"mode": "reflect", "reflect_type": "odd"} if len(flat) > half else {"mode": "edge"}
    padded = np.pad(flat, ((half, half), (0, 0)), **mode)
    smoothed = sum(weight * padded[i : i + len(flat)] for i, weight in enumerate(weights))
    return np.asarray(smoothed).reshape(points.shape)


def _running_median3(flat: np.ndarray) -> np.ndarray:
    padded = np.pad(flat, ((1, 1), (0, 0)), mode="edge")
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


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
    """Apply an affine map to get the (size, size) crop; strong shrinking first area-resamples the frame."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        factor = 2 * scale
        height, width = frame.shape[:2]
        frame = cv2.resize(
            frame, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
        )
        matrix = matrix.copy()
        matrix[:, :2] /= factor
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class _FaceMesh:
    """The 468-point face mesh model run by LiteRT on a rotated crop around a detected face."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter  # lazy: only with align.use_face_mesh

        self._interpreter = Interpreter(model_path=str(asset_path(FACE_MESH)), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._points = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 468 * 3)
        self._presence = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)

    def refine_eyes(self, frame: np.ndarray, det: Detection) -> np.ndarray:
        """Eye centres as the mean of each mesh eye contour; the detector's eyes if the mesh finds no face."""
        (x0, y0), (x1, y1) = det.eyes
        angle = np.degrees(np.arctan2(y1 - y0, x1 - x0))
        side = MESH_BOX_SCALE * float(det.box[2:].max())
        matrix = cv2.getRotationMatrix2D(tuple(det.centre), angle, MESH_INPUT / side)
        matrix[:, 2] += MESH_INPUT / 2 - det.centre
        crop = cv2.warpAffine(frame, matrix, (MESH_INPUT, MESH_INPUT), borderMode=cv2.BORDER_REPLICATE)
        self._interpreter.set_tensor(self._input, (crop.astype(np.float32) / 255.0)[None])
        with native_logs_hidden():
            self._interpreter.invoke()
        logit = float(self._interpreter.get_tensor(self._presence).ravel()[0])
        if 1 / (1 + np.exp(-logit)) < MESH_MIN_PRESENCE:
            return det.eyes
        mesh = self._interpreter.get_tensor(self._points).reshape(468, 3)[:, :2]
        in_crop = np.stack([mesh[list(ring)].mean(axis=0) for ring in MESH_EYE_RINGS])
        inverse = cv2.invertAffineTransform(matrix)
        eyes = in_crop @ inverse[:, :2].T + inverse[:, 2]
        return eyes[np.argsort(eyes[:, 0])]


def _import_mediapipe() -> tuple[Any, Any, Any]:
    """Import MediaPipe Tasks without TensorFlow.

    mediapipe imports TensorFlow (when installed) only for API-doc decorators in
    ``optional_dependencies``; a no-op stand-in keeps worker start-up light (TF costs ~3 s and
    hundreds of MB per process) and the edge path free of TensorFlow.
    """
    name = "mediapipe.tasks.python.core.optional_dependencies"
    if name not in sys.modules and "tensorflow" not in sys.modules:
        stand_in = types.ModuleType(name)
        stand_in.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)  # type: ignore[attr-defined]
        sys.modules[name] = stand_in
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    return mp, vision, BaseOptions


def _as_rgb_clip(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise AlignmentError(f"expected (N, H, W, 3) RGB frames with N >= 1, got shape {frames.shape}")
    return np.ascontiguousarray(frames, dtype=np.uint8)


def _check_face_fraction(found: np.ndarray, min_fraction: float) -> None:
    count, total = int(found.sum()), len(found)
    if count == 0:
        raise AlignmentError(f"no face found in any of {total} frames")
    if count / total < min_fraction:
        raise AlignmentError(
            f"face found in only {count} of {total} frames ({count / total:.0%}), "
            f"below align.min_face_fraction {min_fraction:g}"
        )


def _main_face(detections: list[Detection], width: int, height: int) -> int:
    """Index of the largest, most central face: box size discounted by distance from the frame centre."""
    centre = np.array([width, height]) / 2
    half_diagonal = float(np.hypot(width, height)) / 2

    def weight(det: Detection) -> float:
        offset = float(np.linalg.norm(det.centre - centre)) / half_diagonal
        return float(np.sqrt(det.box[2] * det.box[3])) * (1.0 - 0.5 * offset)

    return int(np.argmax([weight(det) for det in detections]))


def _match(last: Detection, candidates: list[Detection]) -> Detection | None:
    overlaps = [_iou(last.box, det.box) for det in candidates]
    best = int(np.argmax(overlaps))
    if overlaps[best] >= TRACK_MIN_IOU:
        return candidates[best]
    shifts = [float(np.linalg.norm(det.centre - last.centre)) / float(last.box[2:].max()) for det in candidates]
    nearest = int(np.argmin(shifts))
    return candidates[nearest] if shifts[nearest] <= TRACK_MAX_SHIFT else None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0
