"""BlazeFace short-range face detection run by LiteRT: a letterboxed 128x128 input, SSD anchors, weighted NMS.

The same steps as MediaPipe's face-detection graph, with its published settings, so alignment needs only
LiteRT: the MediaPipe Tasks runtime cost about 0.35 s of start-up (import and graph) and about 0.5-1 ms a
frame of graph overhead on top of the model's 1.3 ms. ``tests/video/test_face_detector.py`` checks the
detections against MediaPipe Tasks' ``FaceDetector`` on the same frames.

This module must not import TensorFlow: the edge path runs it.
"""

from __future__ import annotations

import cv2
import numpy as np

from age_estimation.logs import native_logs_hidden
from age_estimation.video.face_models import FACE_DETECTOR, asset_path
from age_estimation.video.face_track import Detection

DETECTOR_INPUT = 128  # the model's square input size
# The model's SSD anchors: (stride, anchors per cell) of its output grids, 16x16x2 then 8x8x6 (896 in all);
# each anchor is a point at its cell's centre (fixed anchor size), so boxes are offsets from that point.
ANCHOR_GRIDS = ((8, 2), (16, 6))
SCORE_CLIP = 100.0  # raw scores are clipped to +-this before the sigmoid
MIN_SUPPRESSION_IOU = 0.3  # boxes overlapping the best one more than this are merged into it
EYE_KEYPOINTS = 2  # of the six keypoints (eyes, nose tip, mouth, ear tragions), the first two are the eyes


def ssd_anchors() -> np.ndarray:
    """The (896, 2) anchor centres, normalised to the model's input, in the order of its outputs."""
    centres = []
    for stride, per_cell in ANCHOR_GRIDS:
        cells = DETECTOR_INPUT // stride
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


class FaceDetector:
    """BlazeFace short-range (the verified model asset) on one LiteRT interpreter thread."""

    def __init__(self, min_score: float = 0.5) -> None:
        from ai_edge_litert.interpreter import Interpreter  # the edge runtime; imported only when detecting

        with native_logs_hidden():  # LiteRT logs its XNNPACK delegate here
            self._interpreter = Interpreter(model_path=str(asset_path(FACE_DETECTOR)), num_threads=1)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self._interpreter.get_output_details()}
        self._boxes, self._scores = outputs["regressors"], outputs["classificators"]
        self._anchors = ssd_anchors()
        self.min_score = min_score

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """The faces in one (H, W, 3) uint8 RGB frame, best first, in its pixel coordinates."""
        scale, offset = letterbox(frame.shape[:2])
        matrix = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float32)
        tensor = cv2.warpAffine(frame, matrix, (DETECTOR_INPUT, DETECTOR_INPUT), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        self._interpreter.set_tensor(self._input, (tensor.astype(np.float32) / 127.5 - 1.0)[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
        keep = np.flatnonzero(scores >= self.min_score)
        if not keep.size:
            return []
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        offsets, anchors = raw[keep] / DETECTOR_INPUT, self._anchors[keep, None, :]
        centre, size = offsets[:, :2] + anchors[:, 0], offsets[:, 2:4]
        corners = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
        keypoints = offsets[:, 4:].reshape(len(keep), -1, 2)[:, :EYE_KEYPOINTS] + anchors
        found = []
        for box, eyes, score in weighted_nms(corners, keypoints, scores[keep]):
            box = (box.reshape(2, 2) * DETECTOR_INPUT - offset) / scale
            eyes = (eyes * DETECTOR_INPUT - offset) / scale
            found.append(Detection(box=np.concatenate([box[0], box[1] - box[0]]).astype(np.float64),
                                   score=score, eyes=eyes[np.argsort(eyes[:, 0])].astype(np.float64)))
        return found


def letterbox(shape: tuple[int, int]) -> tuple[float, np.ndarray]:
    """Scale and (x, y) offset that fit an (H, W) frame, centred and aspect kept, into the model's input."""
    height, width = shape
    scale = DETECTOR_INPUT / max(height, width)
    return scale, np.array([(DETECTOR_INPUT - width * scale) / 2, (DETECTOR_INPUT - height * scale) / 2])


def weighted_nms(
    corners: np.ndarray, keypoints: np.ndarray, scores: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Merge overlapping detections, sorted best first: each kept one is the score-weighted mean of the
    boxes (x0, y0, x1, y1) and keypoints that overlap it above ``MIN_SUPPRESSION_IOU``, with its own score."""
    merged = []
    remaining = np.arange(len(scores))
    while remaining.size:
        best = corners[remaining[0]]
        lows, highs = np.maximum(corners[remaining, :2], best[:2]), np.minimum(corners[remaining, 2:], best[2:])
        overlap = np.clip(highs - lows, 0, None).prod(axis=-1)
        areas = (corners[remaining, 2:] - corners[remaining, :2]).prod(axis=-1)
        iou = overlap / np.maximum(areas + (best[2:] - best[:2]).prod() - overlap, 1e-12)
        group, remaining = remaining[iou > MIN_SUPPRESSION_IOU], remaining[iou <= MIN_SUPPRESSION_IOU]
        if not group.size:  # a degenerate (zero-area) best box overlaps nothing, not even itself
            group, remaining = remaining[:1], remaining[1:]
        weights = scores[group] / scores[group].sum()
        merged.append(((corners[group] * weights[:, None]).sum(axis=0),
                       (keypoints[group] * weights[:, None, None]).sum(axis=0), float(scores[group[0]])))
    return merged
