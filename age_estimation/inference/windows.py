"""Sliding prediction windows over aligned face frames: which frames each window takes, and the streaming
predictor that holds only the last window span of crops whatever the video's length.

Windows of T frames cover ``span`` source frames (the training video's length, sampled down to T) and start
every ``stride`` frames; the last one always ends at the last frame. No TensorFlow import: with a TFLite
predictor this is the edge path.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from age_estimation.inference.runtimes import Predictor
from age_estimation.logs import progress_bar


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    """Start indices of windows of ``window`` frames every ``stride``; the last one ends at the last frame."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be at least 1, got {window} and {stride}")
    if frames <= window:
        return [0]
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    return starts


def window_indices(frames: int, window: int, span: int, stride: int) -> list[np.ndarray]:
    """Frame indices of each prediction window: ``span`` consecutive frames sampled uniformly down to ``window``.

    Training clips are T frames spread over a whole training video (``inference.window_span`` frames), so a
    window must cover the same stretch of time for the model to see the expression at its training pace.
    """
    span = max(span, window)
    covered = min(span, frames)
    offsets = np.round(np.linspace(0, covered - 1, min(window, covered))).astype(int)
    return [start + offsets for start in window_starts(frames, span, stride)]


class WindowStream:
    """Window predictions over aligned face frames that arrive one at a time (``push``, then ``finish``).

    Gives the windows, ages and attention of ``predict_frames`` on the whole array while holding only the
    last ``span`` frames and the clips of one batch of windows; the per-frame temporal attention sums (a
    few bytes a frame) are the only state that grows with the video. With ``keep_frames`` (what
    ``--explain`` draws) it also keeps every crop, its landmarks and its averaged spatial attention map;
    without, there is no spatial attention (``None``): the maps are only drawn on kept crops, and at 2 KB
    a frame they would be most of the memory of a long video. For a predictor that reads the landmark
    stream (``landmark_points`` K > 0) every frame comes with its (K, 2) landmarks and whether the mesh
    found the face.
    """

    def __init__(
        self,
        predictor: Predictor,
        window: int,
        stride: int,
        span: int | None = None,
        batch_size: int = 8,
        keep_frames: bool = False,
    ) -> None:
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be at least 1, got {window} and {stride}")
        self.predictor, self.window, self.stride, self.batch_size = predictor, window, stride, batch_size
        self.span = max(span or window, window)
        self.points = predictor.landmark_points  # K of the landmark stream the predictor reads; 0 = none
        self.count = 0  # frames pushed so far
        self.kept: list[_Frame] | None = [] if keep_frames else None
        self._recent: deque[_Frame] = deque(maxlen=self.span)
        self._next_start = 0
        self._pending: list[np.ndarray] = []  # frame indices of the windows waiting for a batch
        self._clips: list[list[_Frame]] = []  # and their frames
        self._ages: list[float] = []
        self._flip_gaps: list[float] = []  # |age - mirrored age| per window, with test-time flip
        self._starts: list[int] = []
        self._temporal: list[float] = []
        self._coverage: list[int] = []
        self._spatial: list[np.ndarray | None] | None = [] if keep_frames else None

    def push(self, frame: np.ndarray, landmarks: np.ndarray | None = None, landmark_found: bool = False) -> None:
        """Add the next aligned (S, S, 3) face frame (with its landmarks when the predictor reads them);
        predicts each batch of windows once it is full."""
        if self.points:
            shape = None if landmarks is None else np.shape(landmarks)
            if shape != (self.points, 2):
                raise ValueError(f"the model reads {self.points} landmarks a frame (landmark_points of its "
                                 f"spec); frame {self.count} came with {'none' if shape is None else shape} "
                                 "(align with prediction_align_config, which tracks them)")
        item = _Frame(frame, np.asarray(landmarks, np.float32) if self.points else None, bool(landmark_found))
        self._recent.append(item)
        if self.kept is not None:
            self.kept.append(item)
        self.count += 1
        self._temporal.append(0.0)
        self._coverage.append(0)
        if self._spatial is not None:
            self._spatial.append(None)
        if self.count == self._next_start + self.span:
            self._queue(self._next_start + self._offsets(self.span))
            self._next_start += self.stride

    def finish(self) -> dict[str, Any]:
        """Predict the last windows and return what ``predict_frames`` returns."""
        if not self.count:
            raise ValueError("no frames were pushed")
        if self.count < self.span:
            self._queue(self._offsets(self.count))  # one window over the whole, shorter video
        elif self._last_start() != self.count - self.span:
            self._queue(self.count - self.span + self._offsets(self.span))  # the one ending at the last frame
        self._flush()
        coverage = np.asarray(self._coverage, float)
        seen = coverage > 0
        coverage = np.maximum(coverage, 1)
        temporal = np.asarray(self._temporal) / coverage
        spatial = None
        grids = [grid for grid in self._spatial or [] if grid is not None]
        if grids:
            empty = np.zeros_like(grids[0])
            spatial = np.stack([empty if g is None else g for g in self._spatial]) / coverage[:, None, None]
        kept = {} if self.kept is None else _stacked(self.kept)
        return {
            "seen": seen,
            "window_ages": self._ages,
            "flip_gaps": self._flip_gaps,
            "window_starts": self._starts,
            "temporal_attention": temporal / max(temporal.sum(), 1e-12),
            "spatial_attention": spatial,
            "frames": kept.get("frames"),
            "landmarks": kept.get("landmarks"),
            "landmark_found": kept["landmark_mask"] > 0 if "landmark_mask" in kept else None,
        }

    def _offsets(self, covered: int) -> np.ndarray:
        """Positions of a window's ``window`` frames within the ``covered`` frames it spans."""
        return np.round(np.linspace(0, covered - 1, min(self.window, covered))).astype(int)

    def _last_start(self) -> int:
        return int(self._pending[-1][0]) if self._pending else self._starts[-1]

    def _queue(self, indices: np.ndarray) -> None:
        first = self.count - len(self._recent)  # frame index of the oldest frame held
        self._pending.append(indices)
        self._clips.append([self._recent[i - first] for i in indices])
        if len(self._pending) == self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        windows = [_stacked(clip) for clip in self._clips]
        batch = {name: np.stack([w[name] for w in windows]) for name in windows[0]}
        frames = batch.pop("frames")
        out = self.predictor.predict(frames, np.ones(frames.shape[:2], np.float32), **batch)
        self._ages.extend(float(a) for a in out["age"])
        self._flip_gaps.extend(float(g) for g in out.get("flip_gap", []))
        for row, indices in enumerate(self._pending):
            self._starts.append(int(indices[0]))
            for step, index in enumerate(indices):
                self._temporal[index] += float(out["temporal_attention"][row, step])
                self._coverage[index] += 1
                if self._spatial is not None and "spatial_attention" in out:
                    grid = np.asarray(out["spatial_attention"][row, step], float)
                    held = self._spatial[index]
                    self._spatial[index] = grid if held is None else held + grid
        self._pending, self._clips = [], []


@dataclass
class _Frame:
    """One pushed face frame: its crop and, for a model that reads them, its landmarks and whether found."""

    crop: np.ndarray
    landmarks: np.ndarray | None
    found: bool


def _stacked(frames: list[_Frame]) -> dict[str, np.ndarray]:
    """Frames as the arrays a predictor takes: ``frames`` and, when they carry landmarks, the landmark stream."""
    out = {"frames": np.stack([f.crop for f in frames])}
    if frames[0].landmarks is not None:
        out["landmarks"] = np.stack([f.landmarks for f in frames])
        out["landmark_mask"] = np.array([f.found for f in frames], np.float32)
    return out


def predict_frames(
    predictor: Predictor,
    frames: Iterable[np.ndarray],
    window: int,
    stride: int,
    batch_size: int = 8,
    progress: bool = False,
    span: int | None = None,
    keep_frames: bool = False,
    landmarks: Iterable[np.ndarray] | None = None,
    landmark_found: Iterable[bool] | None = None,
) -> dict[str, Any]:
    """Window ages and per-frame averaged attention for aligned ``frames`` ((N, S, S, 3) or one at a time).

    Each window covers ``span`` frames (default ``window``) sampled down to ``window`` frames.
    ``landmarks`` ((N, K, 2)) and ``landmark_found`` ((N,), default all found) are the frames' landmark
    stream, for a predictor that reads it.
    """
    windows = WindowStream(predictor, window, stride, span, batch_size, keep_frames)
    points = itertools.repeat(None) if landmarks is None else landmarks
    found = itertools.repeat(landmarks is not None) if landmark_found is None else landmark_found
    for frame, frame_points, frame_found in zip(
        progress_bar(frames, desc="frames", unit="frame", leave=False, disable=not progress), points, found
    ):
        windows.push(frame, frame_points, frame_found)
    return windows.finish()
