"""Which detected face is the tracked one: the largest, most central face first, then the one that overlaps
(or stays near) the box it was last seen in, so a second face in the frame does not steal the track.

This module must not import TensorFlow (the edge path runs it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRACK_MIN_IOU = 0.3  # a detection overlapping the tracked box this much is the same face
TRACK_MAX_SHIFT = 0.5  # ... or one whose centre moved less than this many box sizes


@dataclass
class Detection:
    """One detected face in pixel coordinates: box (x, y, w, h), score, and the two eye centres."""

    box: np.ndarray
    score: float
    eyes: np.ndarray  # (2, 2): image-left eye, image-right eye (x, y)

    @property
    def centre(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2


def track_face(detections: list[list[Detection]], width: int, height: int) -> list[Detection | None]:
    """Follow one face through the frames: the largest, most central one first, then by box overlap.

    Frames where no detection matches the tracked face (including frames with only other
    faces) get None; matching continues from the last place the face was seen.
    """
    tracked: list[Detection | None] = []
    last: Detection | None = None
    for candidates in detections:
        chosen = track_step(last, candidates, width, height)
        tracked.append(chosen)
        last = chosen or last
    return tracked


def track_step(last: Detection | None, candidates: list[Detection], width: int, height: int) -> Detection | None:
    """The tracked face among one frame's ``candidates``: the main face at first, then the one matching ``last``."""
    if not candidates:
        return None
    if last is None:
        return candidates[_main_face(candidates, width, height)]
    return _match(last, candidates)


def _main_face(detections: list[Detection], width: int, height: int) -> int:
    """Index of the largest, most central face: box size discounted by distance from the frame centre."""
    centre = np.array([width, height]) / 2
    half_diagonal = float(np.hypot(width, height)) / 2

    def weight(det: Detection) -> float:
        offset = float(np.linalg.norm(det.centre - centre)) / half_diagonal
        return float(np.sqrt(det.box[2] * det.box[3])) * (1.0 - 0.5 * offset)

    return int(np.argmax([weight(det) for det in detections]))


def _match(last: Detection, candidates: list[Detection]) -> Detection | None:
    overlaps = [box_iou(last.box, det.box) for det in candidates]
    best = int(np.argmax(overlaps))
    if overlaps[best] >= TRACK_MIN_IOU:
        return candidates[best]
    shifts = [float(np.linalg.norm(det.centre - last.centre)) / float(last.box[2:].max()) for det in candidates]
    nearest = int(np.argmin(shifts))
    return candidates[nearest] if shifts[nearest] <= TRACK_MAX_SHIFT else None


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0
