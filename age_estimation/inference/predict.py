"""Video files -> aligned face frames -> sliding windows of T frames -> one age per video.

Only frames where the face was actually detected are used (interpolated frames are dropped), and the
result says how many. Windows of ``window`` frames start every ``stride`` frames (the last window
always ends at the last frame); their ages are averaged, and their spread is reported. Per-frame
temporal attention (and spatial maps) are averaged over the windows that cover each frame, which
``write_explanation`` draws. No TensorFlow import here: with a TFLite predictor this is the edge path.
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

from age_estimation.config import AlignConfig
from age_estimation.inference.runtimes import Predictor
from age_estimation.video.align import AlignmentError, FaceAligner
from age_estimation.video.decode import VideoError, read_video

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


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

    @property
    def spread(self) -> float:
        """Standard deviation of the window ages (0 for one window)."""
        return float(np.std(self.window_ages))

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
            "partial_face": self.frames_used < self.frames_total,
            "runtime": self.runtime,
            "seconds": round(self.seconds, 3),
        }


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
    """Read, align and estimate one video; ``PredictionError`` (naming the file) when it has no face."""
    path = Path(path)
    started = time.perf_counter()
    try:
        video = read_video(path, max_frames=align.max_frames, frame_step=align.frame_step)
        clip = aligner.align_video(video.frames)
    except (VideoError, AlignmentError) as err:
        message = str(err)
        raise PredictionError(message if message.startswith(str(path)) else f"{path}: {message}") from err
    found = np.asarray(clip.face_found, bool)
    used = clip.frames[found]
    window = predictor.clip_length or window
    span = max(window, int(predictor.spec.window_span or window))
    out = predict_frames(predictor, used, window, stride or max(1, span // 2), progress=progress, span=span)
    return VideoPrediction(
        path=str(path),
        age=float(np.mean(out["window_ages"])),
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


def write_explanation(result: VideoPrediction, out_dir: str | Path, max_frames: int = 8) -> list[Path]:
    """Write ``<stem>_frames.png`` (aligned frames with the spatial heatmap) and ``<stem>_temporal.png``."""
    # matplotlib loads only for --explain pictures.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(result.path).stem
    written = []
    if result.aligned_frames is not None:
        shown = np.flatnonzero(result.seen) if result.seen is not None else np.arange(len(result.aligned_frames))
        picks = shown[np.unique(np.linspace(0, len(shown) - 1, min(max_frames, len(shown))).astype(int))]
        fig, axes = plt.subplots(1, len(picks), figsize=(2.2 * len(picks), 2.6), squeeze=False)
        for ax, index in zip(axes[0], picks):
            frame = result.aligned_frames[index]
            ax.imshow(frame)
            if result.spatial_attention is not None:
                size = frame.shape[0]
                ax.imshow(
                    result.spatial_attention[index],
                    cmap="jet",
                    alpha=0.45,
                    extent=(0, size, size, 0),
                    interpolation="bilinear",
                )
            ax.set_title(
                f"frame {int(result.source_frames[index])}\nweight {result.temporal_attention[index]:.3f}",
                fontsize=8,
            )
            ax.axis("off")
        fig.suptitle(f"{stem}: age {result.age:.1f} (spatial attention overlaid)", fontsize=10, y=1.04)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"{stem}_frames.png", plt))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(result.source_frames, result.temporal_attention, marker="o", markersize=3)
    ax.set_xlabel("source frame")
    ax.set_ylabel("temporal attention")
    ax.set_title(
        f"{stem}: age {result.age:.1f} ± {result.spread:.1f} over {len(result.window_ages)} window(s), "
        f"{result.frames_used}/{result.frames_total} face frames",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(_save(fig, out_dir / f"{stem}_temporal.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
