"""Eye tracks over time: gap filling and smoothing, on a whole clip or streamed with bounded look-ahead.

A clip's per-frame eye centres have gaps (no detection, or frames the detector skipped). A gap of at
most ``max_gap`` frames is filled by linear interpolation between the frames on either side (before
the first face: the first face's eyes; after the last: the last one's); a longer gap holds the last
eyes seen (or ``default`` before any face), so a stream never waits on more than ``max_gap`` frames.
The filled track is smoothed by a 3-frame running median, then a Savitzky-Golay filter.

``EyeTrack`` does this frame by frame and gives each frame's filled and smoothed eyes as soon as they
no longer depend on frames to come; ``interpolate_missing`` and ``smooth_tracks`` do it on a whole
array, with the same arithmetic, so both give identical numbers when no gap exceeds ``max_gap``.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

SMOOTHING_ORDER = 2  # Savitzky-Golay polynomial order: follows steady head motion without lag


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
    return _smooth(points, window, reflect=len(points) > window // 2)


def _smooth(points: np.ndarray, window: int, reflect: bool) -> np.ndarray:
    """``smooth_tracks`` with the edge rule given: odd reflection, or edge copies for a very short clip."""
    flat = _running_median3(points.reshape(len(points), -1))
    half = window // 2
    weights = _savgol_weights(window)
    mode: dict[str, Any] = {"mode": "reflect", "reflect_type": "odd"} if reflect else {"mode": "edge"}
    padded = np.pad(flat, ((half, half), (0, 0)), **mode)
    smoothed = sum(weight * padded[i : i + len(flat)] for i, weight in enumerate(weights))
    return np.asarray(smoothed).reshape(points.shape)


@functools.lru_cache(maxsize=8)
def _savgol_weights(window: int) -> np.ndarray:
    """The Savitzky-Golay weights giving a ``window``-frame local quadratic fit's value at the centre."""
    half = window // 2
    offsets = np.arange(-half, half + 1)
    weights = np.linalg.pinv(np.vander(offsets, SMOOTHING_ORDER + 1, increasing=True))[0]
    weights.flags.writeable = False
    return weights


def _running_median3(flat: np.ndarray) -> np.ndarray:
    """Each row's median with its two neighbours (edges repeated), as min/max: a tenth of ``np.median``'s time."""
    padded = np.pad(flat, ((1, 1), (0, 0)), mode="edge")
    before, here, after = padded[:-2], padded[1:-1], padded[2:]
    return np.maximum(np.minimum(before, here), np.minimum(np.maximum(before, here), after))


@dataclass
class TrackPoint:
    """One frame's eyes: as filled (interpolated or held where no face was found) and as smoothed."""

    index: int
    filled: np.ndarray
    smoothed: np.ndarray


class EyeTrack:
    """Streaming ``interpolate_missing`` + ``smooth_tracks`` over (2, 2) eye pairs, one frame at a time.

    ``push(eyes or None)`` per frame, then ``finish()``; both return the ``TrackPoint`` of every frame
    that became final, in order. At most ``max_gap + window`` frames are held.
    """

    def __init__(self, window: int, max_gap: int, default: np.ndarray) -> None:
        self.window = max(1, window)
        self.max_gap = max(0, max_gap)
        self.default = np.asarray(default, dtype=np.float64)
        self._half = self.window // 2
        self._filled: deque[np.ndarray] = deque()  # filled eyes of frames [_base, _base + len)
        self._base = 0
        self._gap: list[int] = []  # frames after the last known eyes still waiting for the next face
        self._last: tuple[int, np.ndarray] | None = None  # the last frame with a face and its eyes
        self._holding = False  # in a gap longer than max_gap: frames hold the last eyes
        self._count = 0  # frames pushed
        self._emitted = 0  # frames returned

    def push(self, eyes: np.ndarray | None) -> list[TrackPoint]:
        """Add the next frame's detected eyes (None: no face there); the frames that became final."""
        index = self._count
        self._count += 1
        if eyes is not None:
            eyes = np.asarray(eyes, dtype=np.float64)
            self._fill_gap(eyes, index)
            self._append(eyes)
            self._last, self._holding = (index, eyes), False
        elif self._holding:
            self._append(self._held())
        else:
            self._gap.append(index)
            if len(self._gap) > self.max_gap:
                self._holding = True
                for _ in self._gap:
                    self._append(self._held())
                self._gap = []
        return self._ready(ended=False)

    def finish(self) -> list[TrackPoint]:
        """End of the clip: frames after the last face hold its eyes; every remaining frame is final."""
        for _ in self._gap:
            self._append(self._held())
        self._gap = []
        return self._ready(ended=True)

    def _held(self) -> np.ndarray:
        return self._last[1] if self._last is not None else self.default

    def _fill_gap(self, eyes: np.ndarray, index: int) -> None:
        """Interpolate the waiting frames between the last face and this one (copy it before any face)."""
        if not self._gap:
            return
        if self._last is None:
            filled = [eyes for _ in self._gap]
        else:
            start, before = self._last
            known = np.array([start, index])
            pair = np.stack([before.ravel(), eyes.ravel()])
            columns = [np.interp(np.array(self._gap), known, pair[:, j]) for j in range(pair.shape[1])]
            filled = list(np.stack(columns, axis=1).reshape(len(self._gap), *eyes.shape))
        for value in filled:
            self._append(value)
        self._gap = []

    def _append(self, value: np.ndarray) -> None:
        self._filled.append(value)

    def _ready(self, ended: bool) -> list[TrackPoint]:
        """Frames whose smoothed value depends only on filled frames: ``half + 1`` ahead, or the clip's end."""
        known = self._base + len(self._filled)  # frames [0, known) are filled
        total = self._count if ended else None
        out = []
        while self._emitted < known and (ended or self._emitted + self._half + 1 < known):
            out.append(self._point(self._emitted, known, total))
            self._emitted += 1
        keep_from = max(0, self._emitted - self._half - 1)  # the oldest frame a later smoothing reads
        while self._base < keep_from:
            self._filled.popleft()
            self._base += 1
        return out

    def _point(self, index: int, known: int, total: int | None) -> TrackPoint:
        filled = self._filled[index - self._base]
        if self.window <= 1 or (total is not None and total < 2):
            return TrackPoint(index, filled, filled.copy())
        lo, hi = max(0, index - self._half - 1), min(known, index + self._half + 2)
        segment = np.stack([self._filled[i - self._base] for i in range(lo, hi)])
        reflect = total is None or total > self._half
        return TrackPoint(index, filled, _smooth(segment, self.window, reflect)[index - lo])
