"""Manifest -> cache of aligned face clips (the layout of ``data/cache.py``), parallel and resumable.

Each video is decoded and aligned in a worker process (each builds its own ``FaceAligner``
once); the parent writes the clip's shard and updates ``index.json`` atomically after every
finished video, so a killed run loses at most the videos in flight. A rerun skips videos whose
source bytes, manifest fields and alignment settings are unchanged. One bad video never aborts
the run: it is listed in ``report.json`` with its reason, and the rest is prepared.

Example:
    >>> rows = scan_csv_manifest("data/synthetic/manifest.csv").strict()
    >>> report = prepare(rows, Path("data/cache/x"), AlignConfig())
    >>> len(report["prepared"]), len(report["rejected"])
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import AlignConfig, PipelineConfig
from age_estimation.data import cache
from age_estimation.data.manifest import ManifestRow, row_problems, scan_manifest
from age_estimation.data.synth.generator import generate_dataset
from age_estimation.logs import library_logs_shown, set_library_logs
from age_estimation.video.align import AlignmentError, FaceAligner
from age_estimation.video.decode import VideoError, read_video
from age_estimation.video.face_models import FACE_DETECTOR, FACE_MESH, asset_path

# Longer frame side kept for alignment unless ``align.max_side`` is set: the detector sees
# 128x128 and crops are <= 128 px, so larger frames only cost memory (x workers).
DEFAULT_MAX_SIDE = 640


@dataclass
class _Job:
    video_id: str
    row: ManifestRow
    sha256: str


def prepare(
    rows: list[ManifestRow],
    out_dir: Path,
    align: AlignConfig,
    workers: int = 0,
    progress: bool = True,
    rejected: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Align and cache every row's video; returns the report, also written to ``out_dir/report.json``.

    ``workers`` processes (0 = all cores); ``rejected`` pre-seeds the report with rows already
    refused while reading the manifest. Raises ``AssetError`` before any work if models are missing.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_assets(align)
    index = _load_index(out_dir, align)
    report: dict[str, Any] = {
        "out_dir": str(out_dir),
        "align_key": index["align_key"],
        "prepared": [],
        "skipped": [],
        "rejected": list(rejected or []),
    }
    jobs = _plan(rows, index, out_dir, report)
    write_json_atomic(out_dir / cache.INDEX_NAME, index)
    bar = tqdm(total=len(rows), initial=len(rows) - len(jobs), unit="video", disable=not progress, desc="prepare")
    with bar:
        for job, result in _run(jobs, align, workers):
            _record(job, result, index, out_dir, report)
            write_json_atomic(out_dir / cache.INDEX_NAME, index)
            bar.set_postfix(rejected=len(report["rejected"]))
            bar.update()
    seconds = time.perf_counter() - started
    frames = sum(item["frames"] for item in report["prepared"])
    report.update(
        videos=len(rows) + len(rejected or []),
        frames=frames,
        seconds=round(seconds, 3),
        frames_per_second=round(frames / seconds, 2) if seconds > 0 else 0.0,
    )
    write_json_atomic(out_dir / cache.REPORT_NAME, report)
    return report


def resolve_workers(workers: int, jobs: int) -> int:
    """Worker processes to use: ``workers`` (0 = all cores), never more than there are jobs."""
    wanted = workers if workers > 0 else (os.cpu_count() or 1)
    return max(1, min(wanted, jobs))


def align_file(path: str | Path, align: AlignConfig, aligner: Any) -> dict[str, Any]:
    """Decode and align one video with an existing ``FaceAligner``; a dict with arrays or ``error``."""
    try:
        video = read_video(
            path, max_frames=align.max_frames, frame_step=align.frame_step,
            max_side=align.max_side,
        )
        shortfall = f"decoded {video.decoded_frames} of {video.expected_frames} frames"
        if video.truncated and not align.accept_truncated:
            return {"error": f"{shortfall}: the file looks truncated; set align.accept_truncated=true to keep it"}
        clip = aligner.align_video(video.frames)
    except (VideoError, AlignmentError) as err:
        return {"error": _without_path(str(err), path)}
    except Exception as err:  # noqa: BLE001 - one broken file must not stop the run
        return {"error": f"unexpected {type(err).__name__}: {err}"}
    result = {"frames": clip.frames, "face_found": clip.face_found, "source_index": video.source_index}
    if video.truncated:
        result["warning"] = f"truncated: {shortfall}, kept because align.accept_truncated is true"
    return result


def _check_assets(align: AlignConfig) -> None:
    asset_path(FACE_DETECTOR)
    if align.use_face_mesh:
        asset_path(FACE_MESH)


def _load_index(out_dir: Path, align: AlignConfig) -> dict[str, Any]:
    """The existing index when its alignment settings match, else a fresh one (everything re-prepared)."""
    try:
        index = cache.read_index(out_dir)
    except (FileNotFoundError, ValueError):
        return cache.empty_index(align)
    return index if index.get("align_key") == cache.align_key(align) else cache.empty_index(align)


def _plan(rows: list[ManifestRow], index: dict[str, Any], out_dir: Path, report: dict[str, Any]) -> list[_Job]:
    """Reject invalid rows, skip unchanged videos, drop index entries no longer in the manifest."""
    jobs: list[_Job] = []
    wanted: set[str] = set()
    for row in rows:
        problems = row_problems(row)
        video_id = cache.video_id_for(row.path)
        if not problems and video_id in wanted:
            problems = ["duplicate path in the manifest"]
        if problems:
            report["rejected"].append({"path": str(row.path), "reason": "; ".join(problems)})
            continue
        wanted.add(video_id)
        job = _Job(video_id, row, cache.file_sha256(row.path))
        if _unchanged(index["videos"].get(video_id), job, out_dir):
            report["skipped"].append({"path": str(row.path), "video_id": video_id})
        else:
            jobs.append(job)
    for stale in set(index["videos"]) - wanted:
        del index["videos"][stale]
    return jobs


def _unchanged(entry: dict[str, Any] | None, job: _Job, out_dir: Path) -> bool:
    if entry is None:
        return False
    row = job.row
    same = (
        entry.get("source_sha256") == job.sha256
        and entry.get("age") == float(row.age)
        and entry.get("subject") == row.subject
        and entry.get("label") == row.label
        and entry.get("split") == row.split
    )
    return same and (out_dir / entry["shard"]).is_file()


def _run(jobs: list[_Job], align: AlignConfig, workers: int) -> Iterator[tuple[_Job, dict[str, Any]]]:
    """Align jobs in this process (one worker) or a spawned process pool; yields results as they finish."""
    if not jobs:
        return
    count = resolve_workers(workers, len(jobs))
    if count == 1:
        with FaceAligner(align) as aligner:
            for job in jobs:
                yield job, align_file(job.row.path, align, aligner)
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no TensorFlow, no forked threads
    pool = ProcessPoolExecutor(count, mp_context=context, initializer=_init_worker,
                               initargs=(asdict(align), library_logs_shown()))
    futures = {pool.submit(_align_in_worker, str(job.row.path)): job for job in jobs}
    done: set[Any] = set()
    try:
        for future in as_completed(futures):
            result = future.result()
            done.add(future)
            yield futures[future], result
    except BrokenProcessPool:
        for future, job in futures.items():
            if future in done:
                continue
            if future.done() and not future.cancelled() and future.exception() is None:
                yield job, future.result()
            else:
                yield job, {"error": "a worker process died (crash or out of memory) while this video was pending"}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_WORKER: dict[str, Any] = {}


def _init_worker(align_fields: dict[str, Any], show_logs: bool) -> None:
    """Build this worker's aligner once, with the parent's log setting and one OpenCV thread (no contention)."""
    set_library_logs(show_logs)
    cv2.setNumThreads(1)
    _WORKER["align"] = AlignConfig(**align_fields)
    _WORKER["aligner"] = FaceAligner(_WORKER["align"])


def _align_in_worker(path: str) -> dict[str, Any]:
    return align_file(path, _WORKER["align"], _WORKER["aligner"])


def _record(job: _Job, result: dict[str, Any], index: dict[str, Any], out_dir: Path, report: dict[str, Any]) -> None:
    """Write a finished clip's shard and index entry, or list the video as rejected."""
    path = str(job.row.path)
    if "error" in result:
        index["videos"].pop(job.video_id, None)
        report["rejected"].append({"path": path, "reason": result["error"]})
        return
    row = job.row
    serialized = cache.encode_clip(
        job.video_id, result["frames"], result["face_found"], result["source_index"], row.age, row.subject, row.label
    )
    shard = f"{cache.SHARD_DIR}/{job.video_id}.tfrecord"
    cache.write_clip_shard(out_dir / shard, serialized)
    frames, faces = len(result["frames"]), int(np.sum(result["face_found"]))
    index["videos"][job.video_id] = {
        "source": path, "source_sha256": job.sha256, "shard": shard, "frames": frames, "faces": faces,
        "age": float(row.age), "subject": row.subject, "label": row.label, "split": row.split,
    }
    item = {"path": path, "video_id": job.video_id, "frames": frames, "faces": faces}
    if "warning" in result:
        item["warning"] = result["warning"]
    report["prepared"].append(item)


def _without_path(message: str, path: str | Path) -> str:
    """Drop a leading ``<path>: `` from an error message; the report already names the file."""
    prefix = f"{path}: "
    return message.removeprefix(prefix)


def prepare_data(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    """Generate the synthetic dataset when configured, then align and cache every manifest row."""
    if cfg.data.source == "synthetic":
        generate_dataset(Path(cfg.data.path), cfg.synth, cfg.align, workers=cfg.data.workers, progress=progress)
    scan = scan_manifest(cfg.data)
    if not scan.rows:
        problems = "; ".join(str(p) for p in scan.problems[:5])
        raise ValueError(f"{scan.source}: no usable video in the manifest ({problems})")
    rejected = [{"path": p.path, "reason": f"manifest row {p.row}: {p.reason}"} for p in scan.problems]
    return prepare(scan.rows, Path(cfg.data.cache_dir), cfg.align, workers=cfg.data.workers,
                   progress=progress, rejected=rejected)
