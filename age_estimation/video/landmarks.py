"""The landmark motion stream: face-mesh landmarks of every aligned frame, in the aligned template's frame.

The mesh runs on the source frame (not the small crop): the aligned frame's transform picks the region,
a square of ``MESH_REGION`` inter-ocular distances about ``MESH_REGION_DROP`` below the eyes (the face
detector's box is about 2.35 eye distances wide and the mesh expects 1.5 times that box). The points
are mapped back into template coordinates, so the alignment removes head motion, then centred on the
template's eye midpoint and divided by the template's eye distance. Which points are kept:
``video/landmark_set.py``.

This module must not import TensorFlow (the edge path runs it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from age_estimation.config import AlignConfig
from age_estimation.video.face_mesh import MESH_INPUT, FaceMesh
from age_estimation.video.landmark_set import LANDMARK_COUNT, LANDMARK_INDICES

MESH_REGION = 3.5  # side of the mesh's input region, in eye distances
MESH_REGION_DROP = 0.5  # its centre lies this many eye distances below the eye midpoint


@dataclass
class FrameLandmarks:
    """One frame's landmarks: (LANDMARK_COUNT, 2) float32 normalised points, and whether the mesh found a face."""

    points: np.ndarray
    found: bool


class LandmarkTracker:
    """Runs the face mesh on the source region of aligned frames (one LiteRT interpreter; reuse it)."""

    def __init__(self, cfg: AlignConfig) -> None:
        self.cfg = cfg
        self._mesh = FaceMesh()
        eye_distance = cfg.eye_distance * cfg.crop_size
        self._origin = np.array([cfg.crop_size / 2, cfg.eye_y * cfg.crop_size])
        self._unit = eye_distance
        # Crop (template) pixels -> mesh input pixels.
        scale = MESH_INPUT / (MESH_REGION * eye_distance)
        centre = self._origin + np.array([0.0, MESH_REGION_DROP * eye_distance])
        self._to_mesh = np.array([[scale, 0.0, MESH_INPUT / 2 - scale * centre[0]],
                                  [0.0, scale, MESH_INPUT / 2 - scale * centre[1]]])

    def landmarks(self, frame: np.ndarray, transform: np.ndarray) -> FrameLandmarks:
        """The landmarks of ``frame`` (RGB source) aligned by ``transform`` (source -> crop pixels)."""
        matrix = compose(self._to_mesh, transform)
        points = self._mesh.points(frame, matrix)
        if points is None:
            return FrameLandmarks(np.zeros((LANDMARK_COUNT, 2), np.float32), False)
        in_crop = (points[list(LANDMARK_INDICES)] - self._to_mesh[:, 2]) / self._to_mesh[0, 0]
        return FrameLandmarks(((in_crop - self._origin) / self._unit).astype(np.float32), True)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map ``outer`` after ``inner``."""
    return outer[:, :2] @ inner + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


def smile_lift(points: np.ndarray) -> np.ndarray:
    """How far the mouth corners rise above the lips' centre, per frame, in eye distances ((N,) from (N, K, 2)).

    The inner lip centres (13, 14) minus the outer mouth corners (61, 291) in y: a measure of a smile
    used to check the stream against the synthetic generator's true smile.
    """
    position = {vertex: i for i, vertex in enumerate(LANDMARK_INDICES)}
    lips = points[:, [position[13], position[14]], 1].mean(axis=1)
    corners = points[:, [position[61], position[291]], 1].mean(axis=1)
    return lips - corners


def mouth_width(points: np.ndarray) -> np.ndarray:
    """Distance between the outer mouth corners (61, 291) per frame, in eye distances ((N,) from (N, K, 2))."""
    right, left = LANDMARK_INDICES.index(61), LANDMARK_INDICES.index(291)
    return np.linalg.norm(points[:, left] - points[:, right], axis=-1)
