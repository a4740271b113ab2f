"""Video files -> aligned face frames -> sliding windows of T frames -> one age per video.

Only frames where the face was actually detected are used (interpolated frames are dropped), and the
result says how many; a video with fewer face frames than one window, or than ``inference.min_face_fraction``
of its decoded frames, gets no age. Windows of ``window`` frames start every ``stride`` frames (the last window
always ends at the last frame); their ages are averaged, and their spread is reported. The video's age
gets the model's calibrated interval here, so every runtime gives the same one. Per-frame
temporal attention (and spatial maps) are averaged over the windows that cover each frame, which
``inference.explain`` draws. No TensorFlow import here: with a TFLite predictor this is the edge path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from age_estimation.config import AlignConfig, InferenceConfig
from age_estimation.inference.model_card import ModelCard
from age_estimation.inference.runtimes import Predictor
from age_estimation.inference.spec import DeploymentSpec
from age_estimation.video.align import AlignmentError, FaceAligner
from age_estimation.video.decode import VideoError, read_video

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
NO_INTERVAL = "no interval: this model was exported before intervals; retrain/re-export"
NO_MODEL_CARD = "no model card: this model was exported before model cards; retrain/re-export"


class PredictionError(ValueError):
    """A video gave no prediction; the message names the file and the reason."""


@dataclass
class VideoPrediction:
    """The estimate for one video, with what a person (``--explain``) or a machine (``--json``) needs."""

    path: str
    age: float
    window_ages: list[float]
    window_starts: list[int]
    frames_total: int
    frames_used: int
    runtime: str
    seconds: float
    source_frames: np.ndarray = field(repr=False)
    temporal_attention: np.ndarray = field(repr=False)
    spatial_attention: np.ndarray | None = field(default=None, repr=False)
    aligned_frames: np.ndarray | None = field(default=None, repr=False)
    seen: np.ndarray | None = field(default=None, repr=False)
    fps: float = 0.0  # the container's frame rate (0 when unknown)
    interval: tuple[float, float] | None = None
    coverage: float | None = None
    model_card: ModelCard | None = None

    @property
    def spread(self) -> float:
        """Standard deviation of the window ages (0 for one window)."""
        return float(np.std(self.window_ages))

    def age_text(self) -> str:
        """'age 34.5 (90% interval 28.1-41.0)', or 'age 34.5' without an interval."""
        if self.interval is None or self.coverage is None:
            return f"age {self.age:.1f}"
        low, high = self.interval
        return f"age {self.age:.1f} ({self.coverage:.0%} interval {low:.1f}-{high:.1f})"

    def to_json(self) -> dict[str, Any]:
        """The JSON object printed by ``predict --json``."""
        return {
            "path": self.path,
            "age": round(self.age, 3),
            "window_ages": [round(a, 3) for a in self.window_ages],
            "window_starts": self.window_starts,
            "spread": round(self.spread, 3),
            "age_range": [round(min(self.window_ages), 3), round(max(self.window_ages), 3)],
            "frames_total": self.frames_total,
            "frames_used": self.frames_used,
            "frames_seen": int(self.seen.sum()) if self.seen is not None else self.frames_used,
            "partial_face": self.frames_used < self.frames_total,
            "interval": None if self.interval is None else [round(b, 3) for b in self.interval],
            "coverage": self.coverage,
            "runtime": self.runtime,
            "seconds": round(self.seconds, 3),
            "model_card": None if self.model_card is None else self.model_card.to_json(),
        }


def model_notices(spec: DeploymentSpec) -> list[str]:
    """The lines to show once per run about the model: its card, and what it lacks or was trained on."""
    notices = [spec.model_card.summary_line()] if spec.model_card else [NO_MODEL_CARD]
    if spec.model_card and spec.model_card.synthetic_notice():
        notices.append(spec.model_card.synthetic_notice())
    if spec.interval is None:
        notices.append(NO_INTERVAL)
    return notices


def check_enough_face(path: Path, found: np.ndarray, window: int, min_fraction: float) -> None:
    """``PredictionError`` when the face frames cannot fill one window or are below ``min_fraction``."""
    count, total = int(found.sum()), len(found)
    if count < window or count < min_fraction * total:
        raise PredictionError(
            f"{path}: a face was found in {count} of {total} frames; at least {window} (data.clip_length) "
            f"and {min_fraction:.0%} (inference.min_face_fraction) are needed"
        )


def collect_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Video files named directly, plus the video files (by suffix) inside named folders, sorted."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not inside:
                raise PredictionError(
                    f"{path}: folder holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})"
                )
            found.extend(inside)
        else:
            found.append(path)
    return found


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


def predict_frames(
    predictor: Predictor,
    frames: np.ndarray,
    window: int,
    stride: int,
    batch_size: int = 8,
    progress: bool = False,
    span: int | None = None,
) -> dict[str, Any]:
    """Window ages and per-frame averaged attention for aligned ``frames`` (N, S, S, 3).

    Each window covers ``span`` frames (default ``window``) sampled down to ``window`` frames.
    """
    windows = window_indices(len(frames), window, span or window, stride)
    ages: list[float] = []
    temporal = np.zeros(len(frames))
    spatial = None
    coverage = np.zeros(len(frames))
    batches = range(0, len(windows), batch_size)
    for first in tqdm(
        batches, desc="windows", unit="batch", leave=False, disable=not progress or len(batches) < 2
    ):
        chunk = windows[first : first + batch_size]
        clips = np.stack([frames[indices] for indices in chunk])
        out = predictor.predict(clips, np.ones(clips.shape[:2], np.float32))
        ages.extend(float(a) for a in out["age"])
        for row, indices in enumerate(chunk):
            temporal[indices] += out["temporal_attention"][row]
            coverage[indices] += 1
            if "spatial_attention" in out:
                if spatial is None:
                    spatial = np.zeros((len(frames), *out["spatial_attention"].shape[2:]))
                spatial[indices] += out["spatial_attention"][row]
    seen = coverage > 0
    coverage = np.maximum(coverage, 1)
    temporal = temporal / coverage
    return {
        "seen": seen,
        "window_ages": ages,
        "window_starts": [int(indices[0]) for indices in windows],
        "temporal_attention": temporal / max(temporal.sum(), 1e-12),
        "spatial_attention": None if spatial is None else spatial / coverage[:, None, None],
    }


def prediction_align_config(align: AlignConfig) -> AlignConfig:
    """The training alignment, but accepting any share of face frames: predict keeps only face frames."""
    return dataclasses.replace(align, min_face_fraction=0.0)


def predict_video(
    path: str | Path,
    predictor: Predictor,
    aligner: Any,
    align: AlignConfig,
    window: int,
    stride: int | None = None,
    progress: bool = False,
    keep_frames: bool = False,
) -> VideoPrediction:
    """Read, align and estimate one video; ``PredictionError`` (naming the file) when it has too little face."""
    path = Path(path)
    started = time.perf_counter()
    try:
        video = read_video(path, max_frames=align.max_frames, frame_step=align.frame_step)
        clip = aligner.align_video(video.frames)
    except (VideoError, AlignmentError) as err:
        message = str(err)
        raise PredictionError(message if message.startswith(str(path)) else f"{path}: {message}") from err
    found = np.asarray(clip.face_found, bool)
    window = predictor.clip_length or window
    spec = predictor.spec
    min_fraction = InferenceConfig.min_face_fraction if spec.min_face_fraction is None else spec.min_face_fraction
    check_enough_face(path, found, window, min_fraction)
    used = clip.frames[found]
    span = max(window, int(spec.window_span or window))
    out = predict_frames(predictor, used, window, stride or max(1, span // 2), progress=progress, span=span)
    age = float(np.mean(out["window_ages"]))
    return VideoPrediction(
        path=str(path),
        age=age,
        window_ages=out["window_ages"],
        window_starts=out["window_starts"],
        frames_total=len(found),
        frames_used=int(found.sum()),
        runtime=predictor.name,
        seconds=time.perf_counter() - started,
        source_frames=np.asarray(video.source_index)[found],
        temporal_attention=out["temporal_attention"],
        spatial_attention=out["spatial_attention"],
        aligned_frames=used if keep_frames else None,
        seen=out["seen"],
        fps=float(video.fps),
        interval=None if spec.interval is None else spec.interval.bounds(age),
        coverage=None if spec.interval is None else spec.interval.coverage,
        model_card=spec.model_card,
    )


def predict_videos(
    paths: list[Path],
    predictor: Predictor,
    align: AlignConfig,
    window: int,
    stride: int | None = None,
    keep_frames: bool = False,
    progress: bool | None = None,
) -> Iterable[VideoPrediction | PredictionError]:
    """Predict each video in turn, yielding a result or the error that stopped it (the loop goes on)."""
    progress = len(paths) > 1 if progress is None else progress
    with FaceAligner(prediction_align_config(align)) as aligner:
        for path in tqdm(paths, desc="videos", unit="video", disable=not progress or len(paths) < 2):
            try:
                yield predict_video(path, predictor, aligner, align, window, stride, progress, keep_frames)
            except PredictionError as err:
                yield err
