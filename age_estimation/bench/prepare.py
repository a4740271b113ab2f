"""Prepare figures: frames/s of decode-only vs a full prepare (1 and 2 processes; with and without the
landmark stream; 1080p pixel-only, with the stream, and with the face-mesh eyes), and alignment jitter.

The dataset's videos are those its own prepare accepted; a video that prepare rejects elsewhere is still
work done (decoded and searched for a face), so its frames count and the figures say how many there were.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from age_estimation.bench.face_video import write_face_video
from age_estimation.bench.measure import BenchSizes, median_spread, paired_ratio
from age_estimation.config import AlignConfig, PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.manifest import ManifestRow, scan_manifest
from age_estimation.data.prepare import prepare
from age_estimation.video.align import FaceAligner, apply_transforms, open_video
from age_estimation.video.decode import VideoError, read_video

# Rejected videos named in a figure (the count covers them all).
SHOWN_REJECTS = 3


def prepared_rows(cfg: PipelineConfig, count: int) -> list[ManifestRow]:
    """The first ``count`` manifest rows of the config's dataset whose videos are in its prepared cache."""
    prepared = {Path(entry["source"]).resolve() for entry in read_index(cfg.data.cache_dir)["videos"].values()}
    return [row for row in scan_manifest(cfg.data).rows if Path(row.path).resolve() in prepared][:count]


def bench_prepare(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Prepare figures on the dataset's videos and on 1080p face videos, and the still-head jitter.

    The 1080p figure and the pixel-only ones align without the landmark stream (``align.landmarks`` off);
    with the config's stream on, the same measurements are repeated with it (``1080p_landmarks``).
    """
    paths = [row.path for row in prepared_rows(cfg, sizes.videos)]
    pixels = dataclasses.replace(cfg.align, landmarks=False)
    parallel = enough_videos(paths, parallel_videos(sizes), workdir / "parallel")
    out = prepare_figures(paths, cfg.align, sizes, workers=False)
    out.update(parallel_figures(parallel, cfg.align, sizes))
    if cfg.align.landmarks:
        out["pixels_only"] = prepare_figures(paths, pixels, sizes, workers=False, sparse=False)
        out["pixels_only"].update(parallel_figures(parallel, pixels, sizes))
    hd = [write_face_video(workdir / f"hd{i}.mp4", frames=sizes.hd_video_frames, size=(1920, 1080), seed=i)
          for i in range(max(2, sizes.videos // 12))]
    out["1080p"] = prepare_figures(hd, pixels, sizes, workers=False)
    if cfg.align.landmarks:
        out["1080p_landmarks"] = prepare_figures(hd, cfg.align, sizes, workers=False, sparse=False)
    mesh_align = dataclasses.replace(pixels, use_face_mesh=True)
    out["1080p_face_mesh"] = prepare_figures(hd, mesh_align, sizes, workers=False, sparse=False)
    still = write_face_video(workdir / "still.mp4", frames=40, size=(256, 256), motion=0.0)
    jitter_align = dataclasses.replace(pixels, crop_size=112)
    out["jitter"] = alignment_jitter(still, jitter_align)
    out["jitter_face_mesh"] = alignment_jitter(still, dataclasses.replace(jitter_align, use_face_mesh=True))
    return out


def parallel_videos(sizes: BenchSizes) -> int:
    """Videos the 1-vs-2-process figure prepares: 100 in the full bench (48 videos), 12 in the quick one.

    Worker start-up is paid once per run, so the figure needs many videos to show the steady speed-up.
    """
    return 2 * sizes.videos + 4


def enough_videos(paths: list[Path], count: int, folder: Path) -> list[Path]:
    """``paths`` extended to ``count`` files by hard links (or copies) of them under ``folder``.

    A link is a distinct manifest path (the video id hashes the path), so prepare does the work again.
    """
    out = list(paths[:count])
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(out), count if paths else 0):
        source = Path(paths[i % len(paths)])
        link = folder / f"{i}-{source.name}"
        if not link.exists():
            try:
                os.link(source, link)
            except OSError:
                shutil.copyfile(source, link)
        out.append(link)
    return out


def prepare_figures(
    paths: list[Path], align: AlignConfig, sizes: BenchSizes, workers: bool = True, sparse: bool = True
) -> dict[str, Any]:
    """Decode-only and prepare frames/s of ``paths`` (each a median of ``sizes.repeats``) and their ratios.

    ``workers`` adds the 2-process figure on the same videos, ``sparse`` the ``detect_every=2`` one. Each
    repeat measures decode-only and every prepare setting back to back, so a change in the machine's load
    moves them together, and a ratio is the median of the repeats' own ratios. One untimed prepare of the
    first video comes first: it pays the one-off costs (the shard writer's TensorFlow import, model loads).
    """
    settings = {"prepare_1_fps": align}
    if sparse:
        settings["prepare_1_detect_every_2_fps"] = dataclasses.replace(align, detect_every=2)
    prepare_throughput(paths[:1], align, workers=1)
    runs: dict[str, list[dict[str, Any]]] = {"decode_fps": [], **{key: [] for key in settings}}
    for _ in range(sizes.repeats):
        runs["decode_fps"].append(decode_throughput(paths, align))
        for key, setting in settings.items():
            runs[key].append(prepare_throughput(paths, setting, workers=1))
    fps = {key: [run["frames_per_second"] for run in measured] for key, measured in runs.items()}
    prepared = runs["prepare_1_fps"][-1]
    out = {
        "videos": len(paths),
        "use_face_mesh": align.use_face_mesh,
        "landmarks": align.landmarks,
        "unreadable": runs["decode_fps"][-1]["unreadable"],
        "rejected": prepared["rejected"],
        "rejected_videos": prepared["rejected_videos"],
        **{key: median_spread(values) for key, values in fps.items()},
        "ratio_prepare_to_decode": paired_ratio(fps["prepare_1_fps"], fps["decode_fps"]),
    }
    if sparse:
        out["ratio_prepare_detect_every_2_to_decode"] = paired_ratio(
            fps["prepare_1_detect_every_2_fps"], fps["decode_fps"])
    if workers:
        out.update(parallel_figures(paths, align, sizes))
    return out


def parallel_figures(paths: list[Path], align: AlignConfig, sizes: BenchSizes) -> dict[str, Any]:
    """Whole-run frames/s of ``prepare`` with 1 and 2 worker processes on ``paths``, and their ratio (the
    median of each repeat's pair, measured back to back)."""
    one, two = [], []
    for _ in range(sizes.repeats):
        one.append(prepare_throughput(paths, align, workers=1)["frames_per_second"])
        two.append(prepare_throughput(paths, align, workers=2)["frames_per_second"])
    return {"parallel_videos": len(paths), "parallel_prepare_1_fps": median_spread(one),
            "prepare_2_fps": median_spread(two), "speedup_2_over_1": paired_ratio(two, one)}


def decode_throughput(paths: list[Path], align: AlignConfig) -> dict[str, Any]:
    """Decode-only frames/s of ``paths`` in this process, with the frame settings prepare uses."""
    started, frames, unreadable = time.perf_counter(), 0, 0
    for path in paths:
        count = _decoded_frames(Path(path), align)
        frames += count
        unreadable += count == 0
    seconds = time.perf_counter() - started
    return {"frames": frames, "unreadable": unreadable, "seconds": round(seconds, 3),
            "frames_per_second": round(frames / seconds, 1)}


def prepare_throughput(paths: list[Path], align: AlignConfig, workers: int) -> dict[str, Any]:
    """Frames/s of a full ``prepare`` (decode, detect, align, write shards) into a fresh cache.

    The frames of videos prepare rejects count too: they were decoded and searched for a face.
    """
    rows = [ManifestRow(path, 30.0, f"s{i}") for i, path in enumerate(paths)]
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        report = prepare(rows, Path(out), align, workers=workers, progress=False)
        seconds = time.perf_counter() - started
    rejected = report["rejected"]
    frames = report["frames"] + sum(_decoded_frames(Path(item["path"]), align) for item in rejected)
    return {
        "workers": workers,
        "frames": frames,
        "prepared_frames": report["frames"],
        "rejected": len(rejected),
        "rejected_videos": rejected[:SHOWN_REJECTS],
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 1),
    }


def alignment_jitter(path: Path, align: AlignConfig) -> dict[str, float]:
    """Jitter of the aligned crop on a still-head clip: RMS motion (px) of the eyes in the crop.

    The head does not move, so its true eye centres are fixed in the source; their best estimate
    is the clip mean of the detected centres. ``crop_jitter_px`` is the RMS distance of that fixed
    point, mapped by each frame's transform, from its mean position in the crop (the worse eye).
    ``detected_jitter_px`` does the same for ``eye_positions`` (each frame's own detection).
    """
    frames = read_video(path, align.max_frames, align.frame_step).frames
    with FaceAligner(align) as aligner:
        clip = aligner.align_video(frames)
        inverse = np.stack([cv2.invertAffineTransform(m) for m in clip.transforms])
    source_eyes = apply_transforms(inverse, clip.eye_positions).mean(axis=0)
    fixed = apply_transforms(clip.transforms, np.repeat(source_eyes[None], len(frames), axis=0))
    return {
        "crop_size": align.crop_size,
        "smoothing_window": align.smoothing_window,
        "use_face_mesh": align.use_face_mesh,
        "landmarks": align.landmarks,
        "frames": len(frames),
        "crop_jitter_px": round(_rms_spread(fixed), 3),
        "detected_jitter_px": round(_rms_spread(clip.eye_positions), 3),
    }


def _decoded_frames(path: Path, align: AlignConfig) -> int:
    """Frames prepare decoded from ``path`` (0 if it cannot be read), streamed as prepare does."""
    try:
        with open_video(path, align) as stream:
            return sum(1 for _ in stream)
    except VideoError:
        return 0


def _rms_spread(points: np.ndarray) -> float:
    """Worst, over the K points of (N, K, 2), RMS distance from the point's mean position."""
    spread = np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))
    return float(spread.max())
