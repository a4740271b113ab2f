"""Figures for ``prepare``: throughput vs decode-only, 2-worker speed-up, and still-head alignment jitter.

Run: ``python -m age_estimation.bench.prepare [--videos DIR] [--json]``. Without ``--videos``
it writes small videos of the astronaut photo that ships with scikit-image (public domain) with
small head motion; with ``--videos`` it measures the ``*.mp4`` files found under DIR.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from age_estimation.config import AlignConfig
from age_estimation.data.manifest import ManifestRow
from age_estimation.data.prepare import prepare
from age_estimation.video.decode import read_video


def face_image() -> np.ndarray:
    """The astronaut photo (RGB, 512x512) from scikit-image: a real, public-domain face."""
    from skimage import data

    return data.astronaut()


def write_face_video(
    path: str | Path,
    frames: int = 24,
    size: tuple[int, int] = (256, 256),
    motion: float = 4.0,
    noise: float = 3.0,
    gray: bool = False,
    fps: float = 25.0,
    seed: int = 0,
    image: np.ndarray | None = None,
) -> Path:
    """Write an mp4 (mp4v) of a face photo moved by up to ``motion`` px, with per-frame sensor noise.

    ``size`` is (width, height); the photo is scaled to the width and cropped around the face.
    ``motion=0`` gives a still head. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    base = _fit(face_image() if image is None else image, width, height)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), not gray)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4v video here")
    try:
        for dx, dy in face_video_shifts(frames, motion):
            shift = np.float32([[1, 0, dx], [0, 1, dy]])
            frame = cv2.warpAffine(base, shift, (width, height), borderMode=cv2.BORDER_REPLICATE)
            if noise:
                frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            writer.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if gray else bgr)
    finally:
        writer.release()
    return path


def face_video_shifts(frames: int, motion: float) -> np.ndarray:
    """The (frames, 2) pixel shifts of ``write_face_video``: one figure-eight of ``motion`` px per clip."""
    phase = 2 * np.pi * np.arange(frames) / max(frames, 1)
    return np.stack([motion * np.sin(phase), motion * np.sin(2 * phase) / 2], axis=-1)


def decode_throughput(paths: list[Path], align: AlignConfig) -> dict[str, float]:
    """Decode-only frames/s of ``paths`` in this process, with the frame settings prepare uses."""
    started, frames = time.perf_counter(), 0
    for path in paths:
        frames += len(read_video(path, align.max_frames, align.frame_step, align.max_side).frames)
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": round(seconds, 3), "frames_per_second": round(frames / seconds, 1)}


def prepare_throughput(paths: list[Path], align: AlignConfig, workers: int) -> dict[str, float]:
    """Frames/s of a full ``prepare`` (decode, detect, align, write shards) into a fresh cache."""
    rows = [ManifestRow(path, 30.0, f"s{i}") for i, path in enumerate(paths)]
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        report = prepare(rows, Path(out), align, workers=workers, progress=False)
        seconds = time.perf_counter() - started
    if report["rejected"]:
        raise RuntimeError(f"benchmark videos were rejected: {report['rejected'][:3]}")
    return {
        "workers": workers,
        "frames": report["frames"],
        "seconds": round(seconds, 3),
        "frames_per_second": round(report["frames"] / seconds, 1),
    }


def alignment_jitter(path: Path, align: AlignConfig) -> dict[str, float]:
    """Jitter of the aligned crop on a still-head clip: RMS motion (px) of the eyes in the crop.

    The head does not move, so its true eye centres are fixed in the source; their best estimate
    is the clip mean of the detected centres. ``crop_jitter_px`` is the RMS distance of that fixed
    point, mapped by each frame's transform, from its mean position in the crop (the worse eye).
    ``detected_jitter_px`` does the same for ``eye_positions`` (each frame's own detection).
    """
    from age_estimation.video.align import FaceAligner, apply_transforms

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


def run_all(videos: list[Path], still: Path, align: AlignConfig) -> dict[str, Any]:
    """Every figure, measured side by side in one run (after TensorFlow's one-off import)."""
    import tensorflow  # noqa: F401 - ~2 s once per run; would otherwise land in the first timing

    decode = decode_throughput(videos, align)
    one = prepare_throughput(videos, align, workers=1)
    two = prepare_throughput(videos, align, workers=2)
    jitter_align = replace(align, crop_size=112)
    return {
        "videos": len(videos),
        "decode_only": decode,
        "prepare_1_worker": one,
        "prepare_2_workers": two,
        "ratio_prepare1_to_decode": round(one["frames_per_second"] / decode["frames_per_second"], 3),
        "ratio_prepare2_to_decode": round(two["frames_per_second"] / decode["frames_per_second"], 3),
        "speedup_2_over_1": round(two["frames_per_second"] / one["frames_per_second"], 3),
        "jitter": alignment_jitter(still, jitter_align),
        "jitter_face_mesh": alignment_jitter(still, replace(jitter_align, use_face_mesh=True)),
    }


def main(argv: list[str] | None = None) -> int:
    """Write (or find) benchmark videos, measure every figure, print a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, help="measure the *.mp4 files under this folder instead")
    parser.add_argument("--count", type=int, default=8, help="videos to write or to take from --videos (default 8)")
    parser.add_argument("--frames", type=int, default=40, help="frames per astronaut video (default 40)")
    parser.add_argument("--size", type=int, default=256, help="astronaut video width = height (default 256)")
    parser.add_argument("--crop-size", type=int, default=64, help="crop size for throughput (default 64)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    align = AlignConfig(crop_size=args.crop_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = (args.size, args.size)
        still = write_face_video(folder / "still.mp4", frames=args.frames, size=size, motion=0.0)
        if args.videos:
            videos = sorted(p for p in args.videos.rglob("*.mp4") if not p.name.startswith("."))[: args.count]
            if not videos:
                parser.error(f"{args.videos}: no .mp4 files found")
        else:
            videos = [
                write_face_video(folder / f"face_{i}.mp4", frames=args.frames, size=size, seed=i)
                for i in range(args.count)
            ]
        figures = run_all(videos, still, align)
    figures["source"] = str(args.videos) if args.videos else f"astronaut {args.size}x{args.size}"
    print(json.dumps(figures, indent=2) if args.json else _table(figures))
    return 0


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale a portrait photo to ``width`` and crop ``height`` rows around its upper quarter (the face)."""
    scaled = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA)
    if scaled.shape[0] < height:
        scaled = cv2.copyMakeBorder(scaled, 0, height - scaled.shape[0], 0, 0, cv2.BORDER_REPLICATE)
    top = int(np.clip(scaled.shape[0] * 0.25 - height / 2, 0, scaled.shape[0] - height))
    return np.ascontiguousarray(scaled[top : top + height])


def _rms_spread(points: np.ndarray) -> float:
    """Worst, over the K points of (N, K, 2), RMS distance from the point's mean position."""
    spread = np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))
    return float(spread.max())


def _table(figures: dict[str, Any]) -> str:
    decode, one, two = figures["decode_only"], figures["prepare_1_worker"], figures["prepare_2_workers"]
    jitter, mesh = figures["jitter"], figures["jitter_face_mesh"]
    lines = [
        f"videos: {figures['videos']} ({figures['source']}), {decode['frames']} frames",
        f"decode only (1 process)   {decode['frames_per_second']:>8.1f} frames/s",
        (f"prepare, 1 worker         {one['frames_per_second']:>8.1f} frames/s  "
        f"ratio to decode {figures['ratio_prepare1_to_decode']:.2f} (goal >= 0.5)"),
        (f"prepare, 2 workers        {two['frames_per_second']:>8.1f} frames/s  "
        f"ratio to decode {figures['ratio_prepare2_to_decode']:.2f}"),
        f"speed-up 2 workers over 1 {figures['speedup_2_over_1']:>8.2f}x (goal >= 1.7x)",
        (f"still-head jitter at {jitter['crop_size']} px: {jitter['crop_jitter_px']:.3f} px "
        f"(face mesh: {mesh['crop_jitter_px']:.3f} px; goal <= 1 px)"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
