"""``prepare`` as an Apache Beam pipeline: the same per-video work and cache, on any Beam runner.

The driver plans the jobs as the local path does (invalid rows rejected, unchanged videos skipped);
the pipeline has one element per video, and a DoFn prepares it (decode, align, write its shard) with
a ``FaceAligner`` built once per DoFn instance; each video's result (index entry or rejection) comes
back as one JSON line, and the driver folds them, in manifest order, into ``index.json`` and
``report.json``. The cache folder must be a file system every worker sees: the local disk for
DirectRunner, a shared mount on a cluster.

The driver holds the cache folder's lock for the whole run (``prepare.cache_run``). A full disk in a
DoFn comes back as that video's result, and the DoFn instance skips its later videos; the driver
indexes every video that finished, then stops with ``DiskFullError`` as the local path does.

Example:
    >>> report = prepare_beam(rows, Path("data/cache/x"), AlignConfig(),
    ...                       ["runner=DirectRunner", "direct_num_workers=2"])
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apache_beam as beam
import cv2
from apache_beam.options.pipeline_options import PipelineOptions

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import AlignConfig
from age_estimation.data import cache
from age_estimation.data import prepare as local
from age_estimation.data.manifest import ManifestRow
from age_estimation.logs import library_logs_shown, native_logs_hidden, set_library_logs
from age_estimation.video.align import FaceAligner

RESULTS_PREFIX = ".beam-results-"  # the pipeline's per-video results, removed once folded into the index


def prepare_beam(
    rows: list[ManifestRow],
    out_dir: Path,
    align: AlignConfig,
    options: Iterable[str] = (),
    workers: int = 0,
    rejected: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Align and cache every row's video in a Beam pipeline; the report and cache of ``prepare.prepare``.

    ``options`` are Beam pipeline options as ``KEY=VALUE`` (or ``KEY`` for a switch); without a
    ``runner`` it is DirectRunner with ``workers`` processes (0 = all cores). Raises what
    ``prepare.prepare`` raises (``CacheBusyError``, ``DiskFullError``).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    with local.cache_run(out_dir):
        index, report, jobs = local.plan_run(rows, out_dir, align, rejected)
        write_json_atomic(out_dir / cache.INDEX_NAME, index)
        if jobs:
            pipeline_options = beam_options(options, local.resolve_workers(workers, len(jobs)))
            results = _run_pipeline(jobs, out_dir, align, pipeline_options)
            for job in jobs:
                _fold(job, results.get(job.video_id), index, report)
            write_json_atomic(out_dir / cache.INDEX_NAME, index)
            _stop_if_disk_full(results.values(), out_dir)
        return local.finish_report(report, len(rows) + len(rejected or []), started, out_dir)


def beam_options(pairs: Iterable[str], workers: int = 1) -> PipelineOptions:
    """Pipeline options from ``KEY=VALUE`` pairs over the default: DirectRunner with ``workers`` processes.

    Worker logs are held at ERROR unless library logs are shown (``-v``), as in the local path.
    """
    values: dict[str, str | None] = {
        "runner": "DirectRunner",
        "direct_num_workers": str(workers),
        "direct_running_mode": "multi_processing" if workers > 1 else "in_memory",
        "default_sdk_harness_log_level": "INFO" if library_logs_shown() else "ERROR",
    }
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().removeprefix("--")
        if not key:
            raise ValueError(f"beam option {pair!r}: expected KEY=VALUE (or KEY for a switch)")
        values[key] = value if sep else None
    flags = [f"--{key}" if value is None else f"--{key}={value}" for key, value in values.items()]
    return PipelineOptions(flags)


class PrepareVideo(beam.DoFn):
    """Prepares one video per element (decode, align, write its shard); yields its result as a JSON line."""

    def __init__(self, align: AlignConfig, out_dir: str, show_logs: bool) -> None:
        self._align_fields = asdict(align)
        self._out_dir = out_dir
        self._show_logs = show_logs
        self._align: AlignConfig | None = None
        self._aligner: FaceAligner | None = None
        self._disk_full = ""  # set once a video met a full disk: this instance's later videos are skipped

    def setup(self) -> None:
        # One aligner per DoFn instance, one OpenCV thread: the runner runs instances in parallel.
        set_library_logs(self._show_logs)
        cv2.setNumThreads(1)
        self._align = AlignConfig(**self._align_fields)
        self._aligner = FaceAligner(self._align)

    def process(self, job: local._Job) -> Iterator[str]:
        if not self._disk_full:
            result = _prepare_one(job, self._align, self._aligner, Path(self._out_dir))
            self._disk_full = result.get("disk_full", "")
        else:
            result = _disk_full_result(job, self._disk_full)
        yield json.dumps(result)

    def teardown(self) -> None:
        if self._aligner is not None:
            self._aligner.close()


def _run_pipeline(
    jobs: list[local._Job], out_dir: Path, align: AlignConfig, options: PipelineOptions
) -> dict[str, dict[str, Any]]:
    """Run the pipeline over ``jobs``; video id -> that video's result, read back from its JSON lines.

    A pipeline that failed on a full disk outside the DoFn (its results files) raises ENOSPC.
    """
    results_dir = Path(tempfile.mkdtemp(prefix=RESULTS_PREFIX, dir=out_dir))
    try:
        # The runner's worker processes log as they start, before any log level applies to them; they
        # inherit the hidden stderr. A failed element is still raised here, after stderr is restored.
        with (
            native_logs_hidden(),
            _full_disk_raised_as_enospc(out_dir),
            beam.Pipeline(options=options) as pipeline,
        ):
            _ = (
                pipeline
                | "Videos" >> beam.Create(jobs)
                | "Spread" >> beam.Reshuffle()  # one video per worker at a time, not one bundle for all
                | "Prepare" >> beam.ParDo(PrepareVideo(align, str(out_dir), library_logs_shown()))
                | "Results" >> beam.io.WriteToText(str(results_dir / "part"), file_name_suffix=".jsonl")
            )
        lines = (line for part in sorted(results_dir.glob("part*.jsonl")) for line in part.read_text().splitlines())
        return {result["video_id"]: result for result in map(json.loads, lines)}
    finally:
        shutil.rmtree(results_dir, ignore_errors=True)


# The adapter onto data/prepare.py: planning, one video's work, and folding a result into the cache.


def _prepare_one(job: local._Job, align: AlignConfig, aligner: FaceAligner, out_dir: Path) -> dict[str, Any]:
    """One video's work as the local path does it: its shard written, its index entry or its rejection."""
    index: dict[str, Any] = {"videos": {}}
    report: dict[str, Any] = {"prepared": [], "rejected": []}
    try:
        result = local.align_file(job.row.path, align, aligner, local._spool_path(out_dir, job))
        local._record(job, result, index, out_dir, report)
    except Exception as err:
        if not local.is_disk_full(err):
            raise
        return _disk_full_result(job, str(err) or type(err).__name__)
    return {"video_id": job.video_id, "entry": index["videos"].get(job.video_id), **report}


def _disk_full_result(job: local._Job, error: str) -> dict[str, Any]:
    """A video left unprepared by a full disk: neither indexed nor rejected; it is done on the next run."""
    return {"video_id": job.video_id, "entry": None, "prepared": [], "rejected": [], "disk_full": error}


def _fold(job: local._Job, result: dict[str, Any] | None, index: dict[str, Any], report: dict[str, Any]) -> None:
    """Put one video's result into the run's index and report (a lost result is a rejection; one that met
    a full disk leaves both as they are, as in the local path)."""
    if result is not None and result.get("disk_full"):
        return
    if result is None:
        result = {"entry": None, "prepared": [],
                  "rejected": [{"path": str(job.row.path), "reason": "the pipeline returned no result for it"}]}
    if result["entry"] is None:
        index["videos"].pop(job.video_id, None)
    else:
        index["videos"][job.video_id] = result["entry"]
    report["prepared"].extend(result["prepared"])
    report["rejected"].extend(result["rejected"])


def _stop_if_disk_full(results: Iterable[dict[str, Any]], out_dir: Path) -> None:
    """Raise ENOSPC when a video met a full disk (after the others are indexed): the run stops there."""
    full = [result["disk_full"] for result in results if result.get("disk_full")]
    if full:
        raise OSError(errno.ENOSPC, f"No space left on device ({full[0]})", str(out_dir))


@contextlib.contextmanager
def _full_disk_raised_as_enospc(out_dir: Path) -> Iterator[None]:
    """Runners re-raise a worker's error as their own (e.g. a RuntimeError holding the remote traceback);
    one that says the disk is full becomes ENOSPC again."""
    try:
        yield
    except Exception as err:
        if local.is_disk_full(err) or not _says_disk_full(err):
            raise
        raise OSError(errno.ENOSPC, "No space left on device (in the Beam pipeline)", str(out_dir)) from err


def _says_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` or an error it was raised from is a full disk, by type or by its message."""
    while err is not None:
        if local.is_disk_full(err) or os.strerror(errno.ENOSPC) in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
