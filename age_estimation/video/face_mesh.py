"""The 468-point MediaPipe face mesh, run by LiteRT on a rotated crop around a detected face.

Alignment uses it to place the eyes more precisely than the detector's keypoints (``align.use_face_mesh``)
and the landmark motion stream reads its points on every aligned frame (``video/landmarks.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

from age_estimation.logs import native_logs_hidden
from age_estimation.video.face_models import FACE_MESH, asset_path

MESH_INPUT = 192  # the face mesh model's square input size
MESH_BOX_SCALE = 1.5  # the mesh crop is this many times the detector's face box
MESH_MIN_PRESENCE = 0.5  # below this face-presence probability the mesh result is ignored
# Face mesh vertex indices: the contour rings of the image-left and image-right eye.
MESH_EYE_RINGS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
)


class FaceMesh:
    """The 468-point face mesh model run by LiteRT on a rotated crop around a detected face."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter  # lazy: only when a mesh is needed

        with native_logs_hidden():  # LiteRT logs its XNNPACK delegate here
            self._interpreter = Interpreter(model_path=str(asset_path(FACE_MESH)), num_threads=1)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._points = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 468 * 3)
        self._presence = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)

    def points(self, frame: np.ndarray, matrix: np.ndarray) -> np.ndarray | None:
        """The 468 mesh points (x, y) in mesh-input pixels of the region ``matrix`` maps onto the input,
        or None when the mesh finds no face there."""
        crop = cv2.warpAffine(frame, matrix, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        self._interpreter.set_tensor(self._input, (crop.astype(np.float32) / 255.0)[None])
        self._interpreter.invoke()  # logs nothing, so other threads' stderr stays open
        logit = float(self._interpreter.get_tensor(self._presence).ravel()[0])
        if 1 / (1 + np.exp(-logit)) < MESH_MIN_PRESENCE:
            return None
        return self._interpreter.get_tensor(self._points).reshape(468, 3)[:, :2].copy()

    def refine_eyes(self, frame: np.ndarray, eyes: np.ndarray, centre: np.ndarray, box_side: float) -> np.ndarray:
        """Eye centres as the mean of each mesh eye contour; the detector's eyes if the mesh finds no face."""
        (x0, y0), (x1, y1) = eyes
        angle = np.degrees(np.arctan2(y1 - y0, x1 - x0))
        side = MESH_BOX_SCALE * box_side
        matrix = cv2.getRotationMatrix2D(tuple(centre), angle, MESH_INPUT / side)
        matrix[:, 2] += MESH_INPUT / 2 - centre
        mesh = self.points(frame, matrix)
        if mesh is None:
            return eyes
        in_crop = np.stack([mesh[list(ring)].mean(axis=0) for ring in MESH_EYE_RINGS])
        inverse = cv2.invertAffineTransform(matrix)
        eyes = in_crop @ inverse[:, :2].T + inverse[:, 2]
        return eyes[np.argsort(eyes[:, 0])]
