"""How far a video's face can be trusted: measures of every face frame, and the verdict ``predict`` draws.

Per face frame (cheap, on the aligned crop and the detection): brightness and contrast of the face's
centre, its sharpness (the spread of the Laplacian), two measures of it that the face's own detail and
contrast do not set (the re-blur ratio and the sharpness per grey level of contrast, which tell a blurred
or noisy face from a smooth or dim one), the eye distance in source pixels and the detector's score; on
a sample of frames, how much surer the detector is of the face turned by 90, 180 or 270 degrees (an
upside-down or sideways face, which alignment by the eyes alone does not right). Over the video: a frame
whose crop jumps from the previous one far more than the video's typical step is *damaged* (decoding
garbage, smeared blocks), and every face the detector saw is followed, so a second person in view is
reported. ``video_verdict`` turns the medians into a refusal with a reason that names the problem and
the limit, or into notes that widen the interval. A trained model carries ``FaceRanges``: the range of
each measure over its training videos, so "unlike the training data" is judged against the data it was
trained on (a model without them falls back to ``inference.quality``'s fixed limits). numpy and OpenCV
only: every runtime, the edge path included, judges the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np

from age_estimation.config import QualityConfig
from age_estimation.video.face_track import TRACK_MIN_IOU, Detection, box_iou

THUMB = 16  # side of the grey thumbnail a frame's content is compared by
CENTRE = (0.2, 0.8)  # the share of the crop, each axis, that holds the face without its background
# A face track seen in at least this share of the detected frames (and in as many frames as one window)
# counts as a person in view.
PERSON_MIN_SHARE = 0.2
ROTATION_EVERY, ROTATION_SAMPLES = 10, 8  # face frames also detected turned: every 10th, at most 8
# A turned face is told only by a sure detection turned upright (an upright face scores 0.8-0.95): on a
# dark or blurred face every score is low, and their differences say nothing about its rotation.
SURE_SCORE = 0.75
# A face frame whose content steps this many times the video's median step, and this many grey levels,
# from the previous one is damaged (clean synthetic and real clips step at most 14x and 50 levels, at a
# face gap).
DAMAGE_FACTOR, DAMAGE_FLOOR = 8.0, 40.0
# The re-blur ratio blurs the crop's centre once more by this sigma (crop pixels): a sharp face loses
# most of its Laplacian, an already blurred one little, a noisy one nearly all.
REBLUR_SIGMA = 1.0


MEASURES = ("brightness", "contrast", "sharpness")  # what FaceRanges bound, in frame_measures' order


@dataclass(frozen=True)
class FaceRanges:
    """The lowest and highest per-video median of each face measure over a model's training videos."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    videos: int

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``quality.json`` in a run and of ``face_ranges`` in a deployment spec."""
        return {"videos": self.videos, **{name: [round(self.low[i], 3), round(self.high[i], 3)]
                                          for i, name in enumerate(MEASURES)}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceRanges:
        """The ranges ``to_json`` wrote; a missing measure is a ``ValueError`` naming it."""
        missing = [name for name in MEASURES if name not in data]
        if missing:
            raise ValueError(f"face ranges lack {', '.join(missing)}")
        return cls(low=tuple(float(data[n][0]) for n in MEASURES), high=tuple(float(data[n][1]) for n in MEASURES),
                   videos=int(data.get("videos", 0)))


def fit_ranges(medians: np.ndarray) -> FaceRanges:
    """The ranges of ``medians`` ((videos, 3): each training video's median brightness, contrast and
    sharpness): a clean video like the training ones falls outside them about 2 times in (videos + 1)
    per measure."""
    medians = np.asarray(medians, float).reshape(-1, len(MEASURES))
    if not len(medians):
        raise ValueError("face ranges need at least one training video")
    return FaceRanges(low=tuple(float(v) for v in medians.min(axis=0)),
                      high=tuple(float(v) for v in medians.max(axis=0)), videos=len(medians))


def clip_medians(frames: np.ndarray) -> np.ndarray:
    """The (3,) median brightness, contrast and sharpness of a clip's aligned face crops."""
    return np.median(np.array([frame_measures(frame)[:3] for frame in frames]), axis=0)


@dataclass
class FaceTrack:
    """One face followed through the frames the detector ran on: where it was first seen and how often."""

    first: Detection
    last: Detection
    frames: int = 1
    boxes: list[np.ndarray] = field(default_factory=list)

    def box(self) -> list[float]:
        """The median (x, y, w, h) of the face's box in source pixels."""
        return [round(float(v), 1) for v in np.median(np.stack(self.boxes), axis=0)]


class FrameMeasures(NamedTuple):
    """What ``frame_measures`` reads off one aligned face crop."""

    brightness: float  # mean grey level of the centre (0-255)
    contrast: float  # spread of the centre's grey levels
    sharpness: float  # spread of the centre's Laplacian
    reblur: float  # the Laplacian's spread left after a further REBLUR_SIGMA blur, over its own
    thumb: np.ndarray  # THUMB x THUMB grey copy of the whole crop

    @property
    def relative_sharpness(self) -> float:
        """Sharpness per grey level of contrast: a dim but sharp face is not taken for a blurred one."""
        return self.sharpness / self.contrast if self.contrast > 0 else float("nan")


def frame_measures(crop: np.ndarray) -> FrameMeasures:
    """The measures of an aligned RGB face crop, all but the thumbnail on its centre (``CENTRE``)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    size = grey.shape[0]
    low, high = int(size * CENTRE[0]), round(size * CENTRE[1])
    centre = grey[low:high, low:high].astype(np.float32)
    sharpness = laplacian_spread(centre)
    reblurred = laplacian_spread(cv2.GaussianBlur(centre, (0, 0), REBLUR_SIGMA))
    thumb = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return FrameMeasures(float(centre.mean()), float(centre.std()), sharpness,
                         reblurred / sharpness if sharpness > 0 else float("nan"), thumb)


def laplacian_spread(grey: np.ndarray) -> float:
    """Standard deviation of the 3x3 Laplacian of a float grey image: how much fine detail (or noise) it has."""
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=3).std())


def rotation_gains(detect: Callable[[np.ndarray], list[Detection]], frame: np.ndarray, score: float) -> np.ndarray:
    """How much higher the detector's best score is on ``frame`` turned by 90, 180 and 270 degrees
    (counter-clockwise) than the tracked face's ``score`` as it stands."""
    return np.array([max((d.score for d in detect(np.ascontiguousarray(np.rot90(frame, turns)))), default=0.0)
                     for turns in (1, 2, 3)]) - score


class QualityTracker:
    """Collects the measures of each face frame pushed (in the order the windows get them) and every face
    the detector saw; ``finish`` gives the video's ``VideoQuality``. Holds a few hundred bytes a frame."""

    def __init__(self) -> None:
        self.measures: list[tuple[float, ...]] = []  # in VideoQuality's order: brightness ... relative sharpness
        self.tracked: list[np.ndarray] = []  # the estimated face's box in each frame it was detected
        self.thumbs: list[np.ndarray] = []
        self.gains: list[np.ndarray] = []
        self.tracks: list[FaceTrack] = []
        self.detector_frames = 0
        self.points: list[np.ndarray | None] = []  # each face frame's landmarks (None: the mesh found none)

    def push_faces(self, faces: list[Detection]) -> None:
        """Follow every face of one frame the detector ran on (pass ``[]`` for a frame it found none in)."""
        self.detector_frames += 1
        free = list(range(len(self.tracks)))  # tracks not yet matched in this frame
        for face in faces:
            best = max(free, key=lambda t: box_iou(self.tracks[t].last.box, face.box), default=None)
            if best is not None and box_iou(self.tracks[best].last.box, face.box) >= TRACK_MIN_IOU:
                free.remove(best)
                match = self.tracks[best]
                match.last, match.frames = face, match.frames + 1
                match.boxes.append(face.box)
            else:
                self.tracks.append(FaceTrack(first=face, last=face, boxes=[face.box]))

    def push_frame(
        self, crop: np.ndarray, detection: Detection | None, frame: np.ndarray,
        detect: Callable[[np.ndarray], list[Detection]], landmarks: np.ndarray | None = None,
        landmark_found: bool = False,
    ) -> None:
        """Measure one face frame: its crop and the tracked face's detection (None if interpolated); every
        ``ROTATION_EVERY``-th detected one (at most ``ROTATION_SAMPLES``) is also detected turned, in its
        source ``frame``, with ``detect``."""
        crop_measures = frame_measures(crop)
        eyes = np.nan if detection is None else float(np.linalg.norm(detection.eyes[1] - detection.eyes[0]))
        score = np.nan if detection is None else float(detection.score)
        self.measures.append((*crop_measures[:3], eyes, score, crop_measures.reblur,
                              crop_measures.relative_sharpness))
        if detection is not None:
            self.tracked.append(detection.box)
        self.thumbs.append(crop_measures.thumb)
        if landmarks is not None and len(landmarks):
            self.points.append(np.asarray(landmarks, np.float32) if landmark_found else None)
        if detection is not None and len(self.measures) % ROTATION_EVERY == 1 and len(self.gains) < ROTATION_SAMPLES:
            self.gains.append(rotation_gains(detect, frame, score))

    def finish(self, window: int) -> VideoQuality:
        """The video's medians, its damaged frames and the persons in view (tracks of enough frames)."""
        values = np.asarray(self.measures, float).reshape(-1, 7)
        median = [float(np.nanmedian(col)) if np.isfinite(col).any() else float("nan") for col in values.T]
        needed = max(window, PERSON_MIN_SHARE * self.detector_frames)
        persons = sorted((t for t in self.tracks if t.frames >= needed), key=lambda t: -t.frames)
        return VideoQuality(
            brightness=median[0], contrast=median[1], sharpness=median[2], eye_distance=median[3],
            score=median[4], rotation_gains=np.median(self.gains, axis=0) if self.gains else np.zeros(3),
            damaged=damaged_frames(self.thumbs), persons=persons,
            box=[round(float(v), 1) for v in np.median(self.tracked, axis=0)] if self.tracked else None,
            jitter=landmark_jitter(self.points),
            mesh_found=float(np.mean([p is not None for p in self.points])) if self.points else float("nan"),
            reblur=median[5], relative_sharpness=median[6],
        )


@dataclass
class VideoQuality:
    """A video's face measures (medians over its face frames), its damaged face frames and persons seen."""

    brightness: float
    contrast: float
    sharpness: float
    eye_distance: float
    score: float
    rotation_gains: np.ndarray  # (3,): median gain of the detector's score turned 90, 180, 270 degrees
    damaged: np.ndarray  # indices of damaged frames among the face frames
    persons: list[FaceTrack]
    box: list[float] | None = None  # the estimated face's median box (x, y, w, h) in source pixels
    jitter: float = float("nan")  # landmark_jitter of the face frames (NaN: no landmark stream)
    mesh_found: float = float("nan")  # share of face frames the face mesh found the face in
    reblur: float = float("nan")  # re-blur ratio (FrameMeasures.reblur): high when blurred, low when noisy
    relative_sharpness: float = float("nan")  # FrameMeasures.relative_sharpness

    def to_json(self) -> dict[str, Any]:
        """The ``quality`` object of ``predict --json``."""
        def num(value: float, digits: int = 2) -> float | None:
            return None if not np.isfinite(value) else round(value, digits)

        return {"brightness": num(self.brightness), "contrast": num(self.contrast),
                "sharpness": num(self.sharpness), "eye_distance_px": num(self.eye_distance),
                "detector_score": num(self.score), "box": self.box,
                "rotation_gains": [round(float(g), 2) for g in self.rotation_gains],
                "damaged_frames": len(self.damaged), "landmark_jitter": num(self.jitter, 5),
                "mesh_found": num(self.mesh_found, 3), "reblur_ratio": num(self.reblur, 4),
                "relative_sharpness": num(self.relative_sharpness, 4)}


def landmark_jitter(points: list[np.ndarray | None]) -> float:
    """The median size of the landmarks' second difference over runs of three consecutive frames the mesh found
    the face in, in eye distances: a noisy or compressed face makes the mesh's points shake from frame to
    frame, which an expression, smooth over several frames, does not. NaN with no such run."""
    steps = [float(np.abs(a - 2 * b + c).mean()) for a, b, c in zip(points, points[1:], points[2:])
             if a is not None and b is not None and c is not None]
    return float(np.median(steps)) if steps else float("nan")


def damaged_frames(thumbs: list[np.ndarray], factor: float = DAMAGE_FACTOR, floor: float = DAMAGE_FLOOR) -> np.ndarray:
    """Face frames whose thumbnail jumps from the previous face frame's by more than ``factor`` times the
    video's median step and ``floor`` grey levels: decoding damage, not an expression or a head movement
    (alignment keeps the face in place, and an expression changes it over several frames)."""
    if len(thumbs) < 3:
        return np.zeros(0, int)
    stack = np.stack(thumbs).astype(np.float32)
    steps = np.abs(np.diff(stack, axis=0)).mean(axis=(1, 2))
    return np.flatnonzero(steps > max(factor * float(np.median(steps)), floor)) + 1


def video_verdict(quality: VideoQuality, limits: QualityConfig, ranges: FaceRanges | None = None) -> str | None:
    """The reason to refuse the video's face, naming the measure and its limit, or None to answer.

    With the model's training ``ranges``, brightness, contrast and sharpness must lie within them;
    without, within ``limits``' fixed ones. The face's size and rotation are judged by ``limits``.
    """
    checks = [  # the causes first: a turned or tiny face also measures dark, flat or blurred
        (quality.rotation_gains.max() >= limits.max_rotation_gain
         and quality.score + quality.rotation_gains.max() >= SURE_SCORE,
         (f"face turned by about {90 * (1 + int(np.argmax(quality.rotation_gains)))} degrees: the detector is "
          f"{quality.rotation_gains.max():.2f} surer of it turned upright (at most {limits.max_rotation_gain:.2f}); "
          "rotate the video so the face is upright")),
        (quality.eye_distance < limits.min_eye_distance,
         f"face too small: {quality.eye_distance:.0f} px between the eyes (at least {limits.min_eye_distance:.0f})"),
    ]
    checks += trained_checks(quality, ranges) if ranges is not None else fixed_checks(quality, limits)
    return next((reason for failed, reason in checks if failed), None)


def trained_checks(quality: VideoQuality, ranges: FaceRanges) -> list[tuple[bool, str]]:
    """(failed, reason) for each measure outside the range of the model's training videos."""
    words = {"brightness": ("darker", "brighter", "mean brightness {:.0f} of 255"),
             "contrast": ("flatter", "more contrasted", "contrast {:.1f} grey levels"),
             "sharpness": ("more blurred", "sharper or noisier", "sharpness {:.1f}")}
    checks = []
    for i, name in enumerate(MEASURES):
        value, (below, above, shown) = getattr(quality, name), words[name]
        span = f"the model's {ranges.videos} training videos: {ranges.low[i]:.1f}-{ranges.high[i]:.1f}"
        checks.append((value < ranges.low[i], f"face {below} than any training face: {shown.format(value)} ({span})"))
        checks.append((value > ranges.high[i], f"face {above} than any training face: {shown.format(value)} ({span})"))
    return checks


def fixed_checks(quality: VideoQuality, limits: QualityConfig) -> list[tuple[bool, str]]:
    """(failed, reason) for the fixed limits of ``inference.quality`` (a model without training ranges)."""
    return [
        (quality.brightness < limits.min_brightness,
         f"face too dark: mean brightness {quality.brightness:.0f} of 255 (at least {limits.min_brightness:.0f})"),
        (quality.brightness > limits.max_brightness,
         f"face too bright: mean brightness {quality.brightness:.0f} of 255 (at most {limits.max_brightness:.0f})"),
        (quality.contrast < limits.min_contrast,
         f"face contrast too low: {quality.contrast:.1f} grey levels (at least {limits.min_contrast:.0f})"),
        (quality.sharpness < limits.min_sharpness,
         f"face too blurred: sharpness {quality.sharpness:.1f} (at least {limits.min_sharpness:.1f})"),
    ]
