"""``make bench``: where time, memory and disk go, measured side by side in one run on this machine.

Every speed is a median over ``repeats`` with its range, and is also given as a ratio to its own
reference measured in the same run (decode-only for prepare, in-memory batches for the input
pipeline, Keras for the inference runtimes). ``quick`` shrinks every size for a CI smoke run.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.bench.inference import bench_inference
from age_estimation.bench.input import bench_input
from age_estimation.bench.measure import FULL, QUICK, BenchSizes
from age_estimation.bench.memory import bench_memory
from age_estimation.bench.model import bench_training
from age_estimation.bench.prepare import bench_prepare
from age_estimation.bench.report import PERFORMANCE_PAGE, format_bench, performance_page
from age_estimation.config import PipelineConfig
from age_estimation.data.prepare import prepare_data


def bench(
    cfg: PipelineConfig, quick: bool = False, out: Path | None = None, page: Path | None = None
) -> dict[str, Any]:
    """Run the bench in a temporary folder and write ``bench.json`` and ``bench.md`` under ``out``.

    A full run also rewrites the performance page: ``page``, by default ``docs/performance.md`` when the
    working directory has a ``docs/`` folder (the repository root, where ``make bench`` runs). A ``quick``
    run writes no page unless one is named: its CI-sized figures are not the ones to publish.
    """
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="age-bench-") as tmp:
        results = run_bench(cfg, sizes, Path(tmp))
    out = Path(out or Path(cfg.runtime.runs_dir) / f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench.json", results)
    write_bytes_atomic(out / "bench.md", format_bench(results).encode())
    results["out"] = str(out)
    page = page or (PERFORMANCE_PAGE if not quick and PERFORMANCE_PAGE.parent.is_dir() else None)
    if page is not None:
        write_bytes_atomic(page, performance_page(results, bench_command(cfg, quick)).encode())
        results["page"] = str(page)
    return results


def bench_command(cfg: PipelineConfig, quick: bool) -> str:
    """The command line that measured these figures, for the performance page's header."""
    config = f" --config {cfg.source_file}" if cfg.source_file and not cfg.source_file.startswith("<") else ""
    return f"age-estimation bench{config}{' --quick' if quick else ''}"


def run_bench(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Every section of the bench on the config's data (prepared first if needed)."""
    started = time.perf_counter()
    prepare_data(cfg, progress=False)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": cfg.source_file,
        "sizes": dataclasses.asdict(sizes),
        "date": time.strftime("%Y-%m-%d"),
    }
    results["prepare"] = bench_prepare(cfg, sizes, workdir)
    results["input"] = bench_input(cfg, sizes)
    results["training"] = bench_training(cfg, sizes)
    # The inference section saves workdir/run, the model the memory section's predict loads.
    results["inference"] = bench_inference(cfg, sizes, workdir)
    results["memory"] = bench_memory(cfg, sizes, workdir)
    results["seconds"] = time.perf_counter() - started
    return results


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "processor": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
