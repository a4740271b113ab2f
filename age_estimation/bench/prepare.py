"""Prepare figures: frames/s of decode-only vs a full prepare (1 and 2 processes, 1080p), and alignment jitter.

The dataset's videos are those its own prepare accepted; a video that prepare rejects elsewhere is still
work done (decoded and searched for a face), so its frames count and the figures say how many there were.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from age_estimation.bench.face_video import write_face_video
from age_estimation.bench.measure import BenchSizes, median_spread
from age_estimation.config import AlignConfig, PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.manifest import ManifestRow, scan_manifest
from age_estimation.data.prepare import prepare
from age_estimation.video.align import FaceAligner, apply_transforms
from age_estimation.video.decode import VideoError, read_video

# Rejected videos named in a figure (the count covers them all).
SHOWN_REJECTS = 3


def prepared_rows(cfg: PipelineConfig, count: int) -> list[ManifestRow]:
    """The first ``count`` manifest rows of the config's dataset whose videos are in its prepared cache."""
    prepared = {Path(entry["source"]).resolve() for entry in read_index(cfg.data.cache_dir)["videos"].values()}
    return [row for row in scan_manifest(cfg.data).rows if Path(row.path).resolve() in prepared][:count]


def bench_prepare(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Prepare figures on the dataset's videos and on 1080p face videos, and the still-head jitter."""
    paths = [row.path for row in prepared_rows(cfg, sizes.videos)]
    out = prepare_figures(paths, cfg.align, sizes)
    hd = [write_face_video(workdir / f"hd{i}.mp4", frames=40, size=(1920, 1080), seed=i)
          for i in range(max(2, sizes.videos // 12))]
    out["1080p"] = prepare_figures(hd, cfg.align, dataclasses.replace(sizes, repeats=max(1, sizes.repeats // 2)),
                                   workers=False)
    still = write_face_video(workdir / "still.mp4", frames=40, size=(256, 256), motion=0.0)
    jitter_align = dataclasses.replace(cfg.align, crop_size=112)
    out["jitter"] = alignment_jitter(still, jitter_align)
    out["jitter_face_mesh"] = alignment_jitter(still, dataclasses.replace(jitter_align, use_face_mesh=True))
    return out


def prepare_figures(paths: list[Path], align: AlignConfig, sizes: BenchSizes, workers: bool = True) -> dict[str, Any]:
    """Decode-only and prepare frames/s of ``paths`` (each a median of ``sizes.repeats``) and their ratios."""
    decode, decoded = _repeated(lambda: decode_throughput(paths, align), sizes.repeats)
    one, prepared = _repeated(lambda: prepare_throughput(paths, align, workers=1), sizes.repeats)
    sparse_align = dataclasses.replace(align, detect_every=2)
    sparse, _ = _repeated(lambda: prepare_throughput(paths, sparse_align, workers=1), sizes.repeats)
    out = {
        "videos": len(paths),
        "unreadable": decoded["unreadable"],
        "rejected": prepared["rejected"],
        "rejected_videos": prepared["rejected_videos"],
        "decode_fps": decode,
        "prepare_1_fps": one,
        "prepare_1_detect_every_2_fps": sparse,
        "ratio_prepare_to_decode": one["median"] / decode["median"],
        "ratio_prepare_detect_every_2_to_decode": sparse["median"] / decode["median"],
    }
    if workers:
        two, _ = _repeated(lambda: prepare_throughput(paths, align, workers=2), sizes.repeats)
        out["prepare_2_fps"] = two
        out["speedup_2_over_1"] = two["median"] / one["median"]
    return out


def decode_throughput(paths: list[Path], align: AlignConfig) -> dict[str, Any]:
    """Decode-only frames/s of ``paths`` in this process, with the frame settings prepare uses."""
    started, frames, unreadable = time.perf_counter(), 0, 0
    for path in paths:
        try:
            frames += len(read_video(path, align.max_frames, align.frame_step, align.max_side).frames)
        except VideoError:
            unreadable += 1
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
        "frames": len(frames),
        "crop_jitter_px": round(_rms_spread(fixed), 3),
        "detected_jitter_px": round(_rms_spread(clip.eye_positions), 3),
    }


def _repeated(measure: Callable[[], dict[str, Any]], times: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The frames/s summary of ``times`` runs of ``measure``, and the last run's full figures."""
    runs = [measure() for _ in range(times)]
    return median_spread([run["frames_per_second"] for run in runs]), runs[-1]


def _decoded_frames(path: Path, align: AlignConfig) -> int:
    """Frames prepare decoded from ``path`` (0 if it cannot be read)."""
    try:
        return len(read_video(path, align.max_frames, align.frame_step, align.max_side).frames)
    except VideoError:
        return 0


def _rms_spread(points: np.ndarray) -> float:
    """Worst, over the K points of (N, K, 2), RMS distance from the point's mean position."""
    spread = np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))
    return float(spread.max())
