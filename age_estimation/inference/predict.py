"""Video files -> aligned face frames -> sliding windows of T frames -> one age per video.

Only frames where the face was actually detected are used (interpolated frames are dropped), and the
result says how many; a video with fewer face frames than one window, or than ``inference.min_face_fraction``
of its decoded frames, gets no age. Windows of ``window`` frames start every ``stride`` frames (the last window
always ends at the last frame); their ages are averaged, and their spread is reported. The video's age
gets the model's calibrated interval here, so every runtime gives the same one. Per-frame
temporal attention (and spatial maps) are averaged over the windows that cover each frame, which
``inference.explain`` draws. For a model that reads the landmark stream, each window also carries its
frames' face-mesh landmarks; the aligner tracks them only then (``prediction_align_config``), so a
pixel-only model never pays for the mesh. No TensorFlow import here: with a TFLite predictor this is
the edge path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import AlignConfig, InferenceConfig, QualityConfig
from age_estimation.inference.atypicality import Judgement, input_measures
from age_estimation.inference.model_card import ModelCard
from age_estimation.inference.quality import QualityTracker, VideoQuality, video_verdict
from age_estimation.inference.runtimes import Predictor
from age_estimation.inference.spec import DeploymentSpec
from age_estimation.inference.windows import WindowStream
from age_estimation.logs import progress_bar
from age_estimation.video.align import AlignmentError, FaceAligner, open_video
from age_estimation.video.decode import VideoError
from age_estimation.video.face_track import TRACK_MIN_IOU, box_iou
from age_estimation.video.landmark_set import LANDMARK_COUNT

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
NO_INTERVAL = "no interval: this model was exported before intervals; retrain/re-export"
DECODE_STARTED = "decode_started"  # the ``timings`` key: when the first video's decoding began
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
    landmarks: np.ndarray | None = field(default=None, repr=False)  # (N, K, 2) of the frames used, when read
    landmark_found: np.ndarray | None = field(default=None, repr=False)  # (N,) bool: the mesh found the face
    fps: float = 0.0  # the container's frame rate (0 when unknown)
    interval: tuple[float, float] | None = None
    coverage: float | None = None
    model_card: ModelCard | None = None
    quality: VideoQuality | None = field(default=None, repr=False)
    windows_left_out: int = 0  # windows over damaged frames, not averaged
    flip_gap: float | None = None  # mean |age - mirrored age| over the windows, with test-time flip
    atypicality: float | None = None  # how unlike the clean validation videos the input is (None: not judged)
    face: int | None = None  # with --all-faces: which of the persons in view (0 = seen in most frames)
    face_box: list[float] | None = None  # ... and its median box (x, y, w, h) in source pixels
    notes: list[str] = field(default_factory=list)  # what a reader must know about this answer

    @property
    def faces_seen(self) -> int:
        """Persons in view: face tracks seen in enough frames (at least the one estimated)."""
        return max(1, len(self.quality.persons)) if self.quality else 1

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
            "quality": None if self.quality is None else self.quality.to_json(),
            "windows_left_out": self.windows_left_out,
            "flip_gap": None if self.flip_gap is None else round(self.flip_gap, 3),
            "atypicality": None if self.atypicality is None else round(self.atypicality, 3),
            "faces_seen": self.faces_seen,
            "faces": [] if self.quality is None else [
                {"box": person.box(), "frames": person.frames} for person in self.quality.persons],
            "notes": self.notes,
            "face": None if self.face is None else {"index": self.face, "box": self.face_box},
            "model_card": None if self.model_card is None else self.model_card.to_json(),
        }


def model_notices(spec: DeploymentSpec) -> list[str]:
    """The lines to show once per run about the model: its card, and what it lacks or was trained on."""
    notices = [spec.model_card.summary_line()] if spec.model_card else [NO_MODEL_CARD]
    if spec.model_card and spec.model_card.synthetic_notice():
        notices.append(spec.model_card.synthetic_notice())
    if spec.interval is None:
        notices.append((spec.model_card.interval_note if spec.model_card else "") or NO_INTERVAL)
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


def prediction_align_config(align: AlignConfig, landmark_points: int = 0) -> AlignConfig:
    """The training alignment for ``predict``: any share of face frames accepted (predict keeps only face
    frames), and the landmark stream tracked exactly when the model reads it (``landmark_points`` K > 0).

    The face mesh costs a few ms a frame, so a pixel-only model's alignment skips it. A K other than the
    aligner's is a ``ValueError``: the model was trained on another landmark set.
    """
    if landmark_points and landmark_points != LANDMARK_COUNT:
        raise ValueError(
            f"the model reads {landmark_points} landmarks a frame (landmark_points of its deployment spec), but "
            f"this version's aligner tracks {LANDMARK_COUNT} (video/landmark_set.py); retrain the model with it"
        )
    return dataclasses.replace(align, min_face_fraction=0.0, landmarks=bool(landmark_points))


def predict_video(
    path: str | Path,
    predictor: Predictor,
    aligner: Any,
    align: AlignConfig,
    window: int,
    stride: int | None = None,
    progress: bool = False,
    keep_frames: bool = False,
    timings: dict[str, float] | None = None,
) -> VideoPrediction:
    """Read, align and estimate one video; ``PredictionError`` (naming the file) when it has too little face.

    ``aligner`` must track the landmark stream when the predictor reads it (build it from
    ``prediction_align_config``). ``timings`` (when given) gets the Unix time decoding started
    (``DECODE_STARTED``), once per process.
    """
    path = Path(path)
    started = time.perf_counter()
    if timings is not None:
        timings.setdefault(DECODE_STARTED, time.time())
    window = predictor.clip_length or window
    spec = predictor.spec
    span = max(window, int(spec.window_span or window))
    windows = WindowStream(predictor, window, stride or max(1, span // 2), span, keep_frames=keep_frames)
    quality = QualityTracker()
    found: list[bool] = []
    try:
        # Frames stream from the decoder through alignment into the windows: only the last window span of
        # aligned crops is held, whatever the video's length.
        with open_video(path, align) as video:
            for item in aligner.align_stream(video, fps=video.fps):
                found.append(bool(item.face_found))
                quality.push_faces(item.faces)
                if item.face_found:
                    windows.push(item.crop, item.landmarks, item.landmark_found)
                    quality.push_frame(item.crop, item.detection, item.frame, aligner.detect,
                                       item.landmarks, item.landmark_found)
            fps = float(video.fps)
            sources = np.asarray(video.source_index(np.arange(len(found))))
    except (VideoError, AlignmentError) as err:
        message = str(err)
        raise PredictionError(message if message.startswith(str(path)) else f"{path}: {message}") from err
    found_mask = np.asarray(found, bool)
    min_fraction = InferenceConfig.min_face_fraction if spec.min_face_fraction is None else spec.min_face_fraction
    check_enough_face(path, found_mask, window, min_fraction)
    judged = quality.finish(window)
    refusal = video_verdict(judged, spec.quality or QualityConfig(), spec.face_ranges)
    if refusal:
        raise PredictionError(f"{path}: {refusal}")
    out = windows.finish()
    kept = clean_windows(out["window_starts"], windows.span, windows.count, judged.damaged)
    if not kept.any():  # damage in every window: all are averaged, and the interval takes its widest width
        kept[:] = True
    age = float(np.mean(np.asarray(out["window_ages"])[kept]))
    flip_gap = float(np.mean(out["flip_gaps"])) if out["flip_gaps"] else None
    typicality = input_judgement(spec, judged, flip_gap)
    if typicality.refusal:
        raise PredictionError(f"{path}: {typicality.refusal}")
    notes = answer_notes(judged, int((~kept).sum()), len(kept)) + ([typicality.note] if typicality.note else [])
    return VideoPrediction(
        path=str(path),
        age=age,
        window_ages=out["window_ages"],
        window_starts=out["window_starts"],
        frames_total=len(found_mask),
        frames_used=int(found_mask.sum()),
        runtime=predictor.name,
        seconds=time.perf_counter() - started,
        source_frames=sources[found_mask],
        temporal_attention=out["temporal_attention"],
        spatial_attention=out["spatial_attention"],
        aligned_frames=out["frames"],
        seen=out["seen"],
        landmarks=out["landmarks"],
        landmark_found=out["landmark_found"],
        fps=fps,
        interval=None if spec.interval is None else spec.interval.bounds(age, widest=bool(judged.damaged.size),
                                                                         factor=typicality.factor),
        coverage=None if spec.interval is None else spec.interval.coverage,
        model_card=spec.model_card,
        quality=judged,
        windows_left_out=int((~kept).sum()),
        flip_gap=flip_gap,
        atypicality=typicality.score,
        notes=notes,
    )


def input_judgement(spec: DeploymentSpec, quality: VideoQuality, flip_gap: float | None) -> Judgement:
    """How the interval of this input widens, or why it is refused, by the interval's calibrated
    atypicality; a factor of 1 for a model calibrated without it."""
    widening = spec.interval.atypicality if spec.interval else None
    if widening is None:
        return Judgement(None, 1.0)
    return widening.judge(input_measures(quality.to_json(), flip_gap))


def clean_windows(starts: list[int], span: int, frames: int, damaged: np.ndarray) -> np.ndarray:
    """Which windows (by their first face frame ``starts``, each covering ``span`` face frames, or all
    ``frames`` of a shorter video) hold none of the ``damaged`` face frames."""
    ends = np.minimum(np.asarray(starts) + span, max(frames, 1))
    return np.array([not ((damaged >= start) & (damaged < end)).any() for start, end in zip(starts, ends)], bool)


def answer_notes(quality: VideoQuality, left_out: int, windows: int) -> list[str]:
    """What a reader of the answer must know: damaged frames left out (the interval then takes its widest
    calibrated width) and other persons in view."""
    notes = []
    if len(quality.damaged):
        notes.append(f"{len(quality.damaged)} face frames look damaged (their content jumps between frames); "
                     f"{left_out} of {windows} windows left out, interval widened")
    if len(quality.persons) > 1:
        def text(box: list[float] | None) -> str:
            return "?" if box is None else f"({', '.join(f'{v:.0f}' for v in box)})"

        others = [text(p.box()) for p in quality.persons if quality.box is None or box_iou(
            np.asarray(p.box()), np.asarray(quality.box)) < TRACK_MIN_IOU]
        notes.append(f"{len(quality.persons)} faces in view: estimated the largest, most central one at "
                     f"{text(quality.box)} (x, y, w, h), also seen at {'; '.join(others)}; --all-faces estimates each")
    return notes


def predict_videos(
    paths: list[Path],
    predictor: Predictor,
    align: AlignConfig,
    window: int,
    stride: int | None = None,
    keep_frames: bool = False,
    progress: bool | None = None,
    timings: dict[str, float] | None = None,
    all_faces: bool = False,
) -> Iterator[VideoPrediction | PredictionError]:
    """Predict each video in turn, yielding a result or the error that stopped it (the loop goes on).

    By default the largest, most central face is estimated and other persons in view are noted; with
    ``all_faces`` each person in view is estimated in a pass of its own that follows that face (one
    result each, ``face`` numbering them). The alignment (``prediction_align_config``) is checked against
    the predictor at the call, so a model the aligner cannot feed is a ``ValueError`` before any video is read.
    """
    aligned = prediction_align_config(align, predictor.landmark_points)
    progress = len(paths) > 1 if progress is None else progress

    def one(path: Path, aligner: FaceAligner) -> VideoPrediction:
        return predict_video(path, predictor, aligner, aligned, window, stride, progress, keep_frames, timings)

    def each() -> Iterator[VideoPrediction | PredictionError]:
        with FaceAligner(aligned) as aligner:
            for path in progress_bar(paths, desc="videos", unit="video", disable=not progress or len(paths) < 2):
                try:
                    result = one(path, aligner)
                except PredictionError as err:
                    yield err
                    continue
                persons = result.quality.persons if result.quality else []
                if not all_faces or len(persons) < 2:
                    yield result
                    continue
                for number, person in enumerate(persons):
                    try:
                        with FaceAligner(aligned, follow=person.first) as follower:
                            face = one(path, follower)
                        yield dataclasses.replace(face, face=number, face_box=person.box(),
                                                  notes=[n for n in face.notes if "faces in view" not in n])
                    except PredictionError as err:
                        yield PredictionError(f"{err} (face {number}, box {person.box()})")

    return each()
