"""Manifest -> cache of aligned face clips (the layout of ``data/cache.py``), parallel and resumable.

Each video is decoded and aligned in a worker process (each builds its own ``FaceAligner``
once); the parent writes the clip's shard and updates ``index.json`` atomically after every
finished video, so a killed run loses at most the videos in flight. A rerun skips videos whose
source bytes, manifest fields and alignment settings are unchanged. One bad video never aborts
the run: it is listed in ``report.json`` with its reason, and the rest is prepared.

A run holds the cache folder's lock (``cache_lock.py``): a second run on the same folder is refused.
A full disk stops the run with ``DiskFullError``: the interrupted video's temporary files are removed
and every video finished before stays in the index, so a rerun once space is freed resumes.

Example:
    >>> rows = scan_csv_manifest("data/synthetic/manifest.csv").strict()
    >>> report = prepare(rows, Path("data/cache/x"), AlignConfig())
    >>> len(report["prepared"]), len(report["rejected"])
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import AlignConfig, PipelineConfig
from age_estimation.data import cache
from age_estimation.data.cache_lock import cache_lock
from age_estimation.data.manifest import ManifestRow, row_problems, scan_manifest
from age_estimation.data.synth.generator import generate_dataset
from age_estimation.logs import library_logs_shown, progress_bar, set_library_logs
from age_estimation.video.align import AlignmentError, FaceAligner, open_video
from age_estimation.video.decode import VideoError
from age_estimation.video.face_models import FACE_DETECTOR, FACE_MESH, asset_path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 1.0  # how often a worker without prctl checks that its parent is alive

log = logging.getLogger(__name__)


@dataclass
class _Job:
    video_id: str
    row: ManifestRow
    sha256: str


class DiskFullError(OSError):
    """The disk of the cache filled up: the run stopped, keeping every video it had indexed."""

    def __init__(self, out_dir: Path, kept: int) -> None:
        super().__init__(f"no space left on device writing {out_dir}; {kept} videos prepared and kept "
                         "(free some space, then run prepare again to resume)")
        self.errno = errno.ENOSPC
        self.kept = kept


def prepare(
    rows: list[ManifestRow],
    out_dir: Path,
    align: AlignConfig,
    workers: int = 0,
    progress: bool = True,
    rejected: list[dict[str, str]] | None = None,
    wait: bool = False,
) -> dict[str, Any]:
    """Align and cache every row's video; returns the report, also written to ``out_dir/report.json``.

    ``workers`` processes (0 = all cores); ``rejected`` pre-seeds the report with rows already
    refused while reading the manifest. Raises ``AssetError`` before any work if models are missing,
    ``DiskFullError`` if its disk fills up, and ``CacheBusyError`` if another process is preparing
    ``out_dir`` (with ``wait``, it waits for that one instead, then reuses what it prepared).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    with cache_run(out_dir, wait):
        index, report, jobs = plan_run(rows, out_dir, align, rejected)
        write_json_atomic(out_dir / cache.INDEX_NAME, index)
        bar = progress_bar(total=len(rows), initial=len(rows) - len(jobs), unit="video", disable=not progress,
                           desc="prepare")
        # closing(): on an error the pool is shut down here, before cache_run removes its spools
        with bar, contextlib.closing(_run(jobs, align, workers, out_dir)) as results:
            for job, result in results:
                _record(job, result, index, out_dir, report)
                write_json_atomic(out_dir / cache.INDEX_NAME, index)
                bar.set_postfix(rejected=len(report["rejected"]))
                bar.update()
        return finish_report(report, len(rows) + len(rejected or []), started, out_dir)


@contextlib.contextmanager
def cache_run(out_dir: Path, wait: bool = False) -> Iterator[None]:
    """One run on the cache folder ``out_dir`` (created): under its lock, its temporary files removed at
    the end, and a full disk anywhere turned into ``DiskFullError``; ``CacheBusyError`` if another runs
    (with ``wait``, once it has finished)."""
    try:
        with cache_lock(out_dir, wait):
            try:
                yield
            finally:
                _remove_stale_spools(out_dir)  # under the lock, every temporary file there is this run's
    except Exception as err:
        if not is_disk_full(err):
            raise
        raise DiskFullError(out_dir, _videos_indexed(out_dir)) from err


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` means the disk is full: ENOSPC from the OS, or TensorFlow's ResourceExhaustedError,
    which its file writers (the shards' TFRecordWriter) raise for it."""
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    tf = sys.modules.get("tensorflow")  # not imported for this: a run without it loaded did not raise it
    return tf is not None and isinstance(err, tf.errors.ResourceExhaustedError)


def _videos_indexed(out_dir: Path) -> int:
    """Videos in the cache's index as it is on disk (0 when there is none)."""
    try:
        return len(cache.read_index(out_dir)["videos"])
    except (OSError, ValueError):
        return 0


def plan_run(
    rows: list[ManifestRow], out_dir: Path, align: AlignConfig, rejected: list[dict[str, str]] | None
) -> tuple[dict[str, Any], dict[str, Any], list[_Job]]:
    """A run's start: assets checked, stale spools removed, the index loaded and the jobs planned
    (unchanged videos skipped); returns the index, the report begun, and the jobs."""
    _check_assets(align)
    (out_dir / cache.SHARD_DIR).mkdir(exist_ok=True)
    _remove_stale_spools(out_dir)
    index = _load_index(out_dir, align)
    report: dict[str, Any] = {
        "out_dir": str(out_dir),
        "align_key": index["align_key"],
        "prepared": [],
        "skipped": [],
        "rejected": list(rejected or []),
    }
    return index, report, _plan(rows, index, out_dir, report)


def finish_report(report: dict[str, Any], videos: int, started: float, out_dir: Path) -> dict[str, Any]:
    """Add the run's counts and speed to ``report`` and write it as ``report.json`` (atomically)."""
    seconds = time.perf_counter() - started
    frames = sum(item["frames"] for item in report["prepared"])
    report.update(
        videos=videos,
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


def align_file(path: str | Path, align: AlignConfig, aligner: Any, spool: str | Path) -> dict[str, Any]:
    """Decode and align one video as a stream, writing its raw crops to ``spool``; its metadata or ``error``.

    Only the aligner's bounded look-ahead is held, so memory does not grow with the video; the spool
    (N x S x S x 3 raw bytes) becomes the shard in the parent (``_write_shard``). Removed on an error;
    a full disk is raised (it stops the run) rather than reported as this video's problem.
    """
    spool = Path(spool)
    try:
        return _align_to_spool(Path(path), align, aligner, spool)
    except (VideoError, AlignmentError) as err:
        error = _without_path(str(err), path)
    except Exception as err:  # one broken file must not stop the run; a full disk does
        if is_disk_full(err):
            spool.unlink(missing_ok=True)
            raise
        error = f"unexpected {type(err).__name__}: {err}"
    spool.unlink(missing_ok=True)
    return {"error": error}


def _align_to_spool(path: Path, align: AlignConfig, aligner: Any, spool: Path) -> dict[str, Any]:
    face_found: list[bool] = []
    landmarks: list[np.ndarray] = []  # K x 2 floats a frame: small beside the spooled crops
    landmark_found: list[bool] = []
    with open_video(path, align) as stream, open(spool, "wb") as out:
        try:
            for item in aligner.align_stream(stream, fps=stream.fps):
                out.write(item.crop.tobytes())
                face_found.append(item.face_found)
                landmarks.append(item.landmarks)
                landmark_found.append(item.landmark_found)
            aligned: AlignmentError | None = None
        except AlignmentError as err:  # judged after truncation: a cut-off file is reported as such
            aligned = err
    shortfall = f"decoded {stream.decoded_frames} of {stream.expected_frames} frames"
    if stream.truncated and not align.accept_truncated:
        raise VideoError(f"{shortfall}: the file looks truncated; set align.accept_truncated=true to keep it")
    if aligned is not None:
        raise aligned
    result: dict[str, Any] = {
        "spool": str(spool),
        "size": align.crop_size,
        "face_found": np.array(face_found),
        "source_index": stream.source_index(np.arange(len(face_found))),
        "landmarks": np.stack(landmarks).astype(np.float32),
        "landmark_found": np.array(landmark_found),
    }
    if stream.truncated:
        result["warning"] = f"truncated: {shortfall}, kept because align.accept_truncated is true"
    return result


def _write_shard(path: Path, job: _Job, result: dict[str, Any]) -> None:
    """Turn a finished spool into the video's shard, one chunk of frames in memory at a time."""
    row, size = job.row, result["size"]
    spool = Path(result["spool"])
    frame_bytes = size * size * 3
    try:
        with cache.ShardWriter(path) as writer, open(spool, "rb") as crops:
            points = result["landmarks"]
            writer.write(cache.encode_header(job.video_id, size, size, row.age, row.subject, row.label,
                                             points.shape[1]))
            for start in range(0, len(result["face_found"]), cache.CHUNK_FRAMES):
                end = start + cache.CHUNK_FRAMES
                chunk = np.frombuffer(crops.read(frame_bytes * cache.CHUNK_FRAMES), np.uint8)
                frames = chunk.reshape(-1, size, size, 3)
                writer.write(cache.encode_chunk(frames, result["face_found"][start:end],
                                                result["source_index"][start:end], points[start:end],
                                                result["landmark_found"][start:end]))
            writer.commit()
    finally:
        spool.unlink(missing_ok=True)


def _check_assets(align: AlignConfig) -> None:
    asset_path(FACE_DETECTOR)
    if align.use_face_mesh or align.landmarks:
        asset_path(FACE_MESH)


def _load_index(out_dir: Path, align: AlignConfig) -> dict[str, Any]:
    """The existing index when its alignment settings match, else a fresh one (everything re-prepared)."""
    try:
        index = cache.read_index(out_dir)
    except FileNotFoundError:
        return cache.empty_index(align)
    except ValueError as err:
        log.warning("preparing every video again: %s", err)
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
            index["videos"][video_id]["source"] = cache.source_of(row.path)
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


def _run(
    jobs: list[_Job], align: AlignConfig, workers: int, out_dir: Path
) -> Iterator[tuple[_Job, dict[str, Any]]]:
    """Align jobs in this process (one worker) or a pool of worker processes; yields results as they finish.

    The pool lives for the whole run (each worker builds its aligner once) and its workers exit by
    themselves if this process dies (``_die_with_parent``).
    """
    if not jobs:
        return
    count = resolve_workers(workers, len(jobs))
    if count == 1:
        with FaceAligner(align) as aligner:
            for job in jobs:
                yield job, align_file(job.row.path, align, aligner, _spool_path(out_dir, job))
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no TensorFlow, no forked threads
    pool = ProcessPoolExecutor(count, mp_context=context, initializer=_init_worker,
                               initargs=(asdict(align), library_logs_shown(), os.getpid()))
    futures = {pool.submit(_align_in_worker, str(job.row.path), str(_spool_path(out_dir, job))): job for job in jobs}
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


def _init_worker(align_fields: dict[str, Any], show_logs: bool, parent: int) -> None:
    """Build this worker's aligner once, with the parent's log setting and one OpenCV thread (no contention)."""
    _die_with_parent(parent)
    set_library_logs(show_logs)
    cv2.setNumThreads(1)
    _WORKER["align"] = AlignConfig(**align_fields)
    _WORKER["aligner"] = FaceAligner(_WORKER["align"])


def _align_in_worker(path: str, spool: str) -> dict[str, Any]:
    return align_file(path, _WORKER["align"], _WORKER["aligner"], spool)


def _die_with_parent(parent: int) -> None:
    """Make this worker exit when ``parent`` dies, even by ``kill -9`` (no chance to shut the pool down).

    Linux: the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``). Everywhere,
    as a fallback: a daemon thread exits the process once it has been re-parented.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _spool_path(out_dir: Path, job: _Job) -> Path:
    """Where a video's raw crops wait for their shard (a hidden ``.tmp`` next to the shards)."""
    return out_dir / cache.SHARD_DIR / f".{job.video_id}.crops.tmp"


def _remove_stale_spools(out_dir: Path) -> None:
    """Temporary files (spools, shards being written) that no running prepare owns: called under the lock."""
    for stale in (out_dir / cache.SHARD_DIR).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _record(job: _Job, result: dict[str, Any], index: dict[str, Any], out_dir: Path, report: dict[str, Any]) -> None:
    """Write a finished clip's shard and index entry, or list the video as rejected."""
    path = str(job.row.path)
    if "error" in result:
        index["videos"].pop(job.video_id, None)
        report["rejected"].append({"path": path, "reason": result["error"]})
        return
    row = job.row
    shard = f"{cache.SHARD_DIR}/{job.video_id}.tfrecord"
    _write_shard(out_dir / shard, job, result)
    frames, faces = len(result["face_found"]), int(np.sum(result["face_found"]))
    index["videos"][job.video_id] = {
        "source": cache.source_of(path), "source_sha256": job.sha256, "shard": shard, "frames": frames, "faces": faces,
        "landmark_frames": int(np.sum(result["landmark_found"])),
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


def generate_if_synthetic(cfg: PipelineConfig, workers: int, progress: bool = True) -> None:
    """Write the synthetic dataset when the config's data source is synthetic (resumable; instant once written)."""
    if cfg.data.source == "synthetic":
        generate_dataset(Path(cfg.data.path), cfg.synth, cfg.align, workers=workers, progress=progress)


def prepare_data(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    """Generate the synthetic dataset when configured, then align and cache every manifest row."""
    generate_if_synthetic(cfg, cfg.data.workers, progress)
    scan = scan_manifest(cfg.data)
    if not scan.rows:
        problems = "; ".join(str(p) for p in scan.problems[:5])
        raise ValueError(f"{scan.source}: no usable video in the manifest ({problems})")
    rejected = [{"path": p.path, "reason": f"manifest row {p.row}: {p.reason}"} for p in scan.problems]
    # Training processes started together (workers of one cluster, runs of a sweep) share the cache:
    # each waits for the one preparing it, then finds its videos unchanged.
    return prepare(scan.rows, Path(cfg.data.cache_dir), cfg.align, workers=cfg.data.workers,
                   progress=progress, rejected=rejected, wait=True)
