"""The synthetic default dataset on disk: planned videos rendered, encoded as mp4, with manifest and ground truth.

``generate_dataset`` writes the mp4 videos, ``manifest.csv`` and ``ground_truth.json`` (see
:mod:`age_estimation.data.synth.plan` for what a video shows and :mod:`age_estimation.data.synth.oracle`
for the ground truth); it is resumable and deterministic.

Example:
    >>> summary = generate_dataset(Path("data/synthetic"), SynthConfig(subjects=20), AlignConfig())
    >>> summary["oracle_floor_mae"]
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth.face import Scene, render_frame
from age_estimation.data.synth.oracle import GROUND_TRUTH_NAME, generator_info, ground_truth
from age_estimation.data.synth.plan import VIDEO_DIR, VideoPlan, all_plans, plan_video, video_indices
from age_estimation.logs import progress_bar

MANIFEST_NAME = "manifest.csv"
MARKER_NAME = ".synth_videos.json"


def build_scene(seed: int, size: int, noise_sigma: float) -> Scene:
    """A video's background (gradient plus blurred shapes), lighting field and camera-noise field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    base = rng.uniform(40, 220, 3).astype(np.float32)
    tilt = rng.uniform(-60, 60, 3).astype(np.float32)
    background = base + tilt * (xx if rng.uniform() < 0.5 else yy)[..., None]
    background = np.clip(background, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(float(v) for v in rng.uniform(20, 235, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 12, size // 4))
        if rng.uniform() < 0.5:
            cv2.circle(background, (x, y), r, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(background, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1, cv2.LINE_AA)
    background = cv2.GaussianBlur(background, (0, 0), size / 90)
    phi = rng.uniform(0, 2 * np.pi)
    gain = rng.uniform(0.8, 1.12) * (1 + rng.uniform(0, 0.5) * (np.cos(phi) * xx + np.sin(phi) * yy))
    light = gain[..., None] * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    bank = size + size // 4
    noise = rng.standard_normal((bank, bank, 3), dtype=np.float32) * noise_sigma
    noise = np.round(noise).astype(np.int16)
    return Scene(background=background, light=light.astype(np.float32), noise=noise)


def render_video(plan: VideoPlan) -> np.ndarray:
    """All frames of a planned video, (N, S, S, 3) uint8 BGR."""
    scene = build_scene(plan.scene_seed, plan.frame_size, plan.noise_sigma)
    return np.stack([render_frame(plan.identity, scene, state) for state in plan.states])


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode BGR frames as mp4 (mp4v) into a temporary file, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open an mp4v video writer (is FFmpeg support missing?)")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise RuntimeError(f"{path}: the video writer produced no data")
    tmp.replace(path)


def _make_video(task: tuple[SynthConfig, int, int, str]) -> str:
    cfg, subject_index, video_index, out_dir = task
    plan = plan_video(cfg, subject_index, video_index)
    write_video(Path(out_dir) / plan.path, render_video(plan), cfg.fps)
    return plan.path


def _init_worker() -> None:
    cv2.setNumThreads(1)


def manifest_bytes(plans: list[VideoPlan]) -> bytes:
    """``manifest.csv`` (path,age,subject,label), paths relative to the manifest's folder."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "age", "subject", "label"])
    for plan in plans:
        writer.writerow([plan.path, plan.age, plan.subject, plan.label])
    return buffer.getvalue().encode()


def generate_dataset(
    out_dir: Path, cfg: SynthConfig, align: AlignConfig, workers: int = 0, progress: bool = True
) -> dict:
    """Write the videos, manifest and ground truth into ``out_dir``; resumable and deterministic.

    Returns at once when a matching ground truth and all its videos exist; otherwise writes only
    the missing videos (all of them when the existing ones came from other settings), then the
    manifest and ground truth, each atomically.
    """
    _check_config(cfg)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    start = time.perf_counter()
    info = generator_info(cfg, align)
    plans = all_plans(cfg)
    if _complete(out_dir, info["key"], plans):
        return _summary(out_dir, plans, json.loads((out_dir / GROUND_TRUTH_NAME).read_text()), 0, start)
    stale = _previous_video_key(out_dir) != info["video_key"]
    (out_dir / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    _remove_temp_files(out_dir / VIDEO_DIR)
    write_json_atomic(out_dir / MARKER_NAME, {"video_key": info["video_key"]})
    todo = [
        (cfg, s, v, str(out_dir))
        for (s, v), plan in zip(video_indices(cfg), plans)
        if stale or not (out_dir / plan.path).is_file()
    ]
    _run_tasks(todo, workers, progress)
    truth = ground_truth(plans, cfg, align)
    write_bytes_atomic(out_dir / MANIFEST_NAME, manifest_bytes(plans))
    write_json_atomic(out_dir / GROUND_TRUTH_NAME, truth)
    return _summary(out_dir, plans, truth, len(todo), start)


def _check_config(cfg: SynthConfig) -> None:
    problems = [
        (cfg.subjects >= 1, "synth.subjects must be at least 1"),
        (cfg.videos_per_subject >= 1, "synth.videos_per_subject must be at least 1"),
        (cfg.frames >= 2, "synth.frames must be at least 2"),
        (cfg.fps >= 1, "synth.fps must be at least 1"),
        (cfg.frame_size >= 64, "synth.frame_size must be at least 64"),
        (0.0 <= cfg.distractor_fraction < 1.0, "synth.distractor_fraction must be in [0, 1)"),
        (math.ceil(cfg.min_age) <= math.floor(cfg.max_age), "synth.min_age..max_age must contain an integer age"),
    ]
    for ok, message in problems:
        if not ok:
            raise ValueError(message)


def _complete(out_dir: Path, key: str, plans: list[VideoPlan]) -> bool:
    path = out_dir / GROUND_TRUTH_NAME
    try:
        truth = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        truth.get("generator", {}).get("key") == key
        and (out_dir / MANIFEST_NAME).is_file()
        and all((out_dir / plan.path).is_file() for plan in plans)
    )


def _previous_video_key(out_dir: Path) -> str | None:
    """The settings key of the videos already in ``out_dir`` (None when unknown)."""
    for name, field_path in ((MARKER_NAME, ("video_key",)), (GROUND_TRUTH_NAME, ("generator", "video_key"))):
        try:
            node: Any = json.loads((out_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key in field_path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            return node
    return None


def _remove_temp_files(video_dir: Path) -> None:
    for tmp in video_dir.glob(".*.tmp.mp4"):
        tmp.unlink(missing_ok=True)


def _run_tasks(tasks: list[tuple[SynthConfig, int, int, str]], workers: int, progress: bool) -> None:
    workers = workers or os.cpu_count() or 1
    bar = progress_bar(total=len(tasks), desc="synth videos", unit="video", disable=not progress or not tasks)
    with bar:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                _make_video(task)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(_make_video, tasks, chunksize=4):
                bar.update()


def _summary(out_dir: Path, plans: list[VideoPlan], truth: dict, written: int, start: float) -> dict:
    return {
        "out_dir": str(out_dir),
        "manifest": str(out_dir / MANIFEST_NAME),
        "ground_truth": str(out_dir / GROUND_TRUTH_NAME),
        "videos": len(plans),
        "written": written,
        "reused": len(plans) - written,
        "frames": sum(len(plan.states) for plan in plans),
        "subjects": len({plan.subject for plan in plans}),
        "oracle_floor_mae": truth["oracle_floor_mae"],
        "expected_oracle_floor_mae": truth.get("expected_oracle_floor_mae"),
        "mean_predictor_mae": truth["mean_predictor_mae"],
        "key": truth["generator"]["key"],
        "seconds": round(time.perf_counter() - start, 2),
    }
