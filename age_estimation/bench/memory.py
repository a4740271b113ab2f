"""Memory figures: peak resident memory of prepare, a short training and predict, each in its own process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from age_estimation.bench.face_video import write_face_video
from age_estimation.bench.measure import BenchSizes
from age_estimation.bench.prepare import prepared_rows
from age_estimation.config import PipelineConfig, save_config
from age_estimation.data.manifest import write_csv_manifest


def bench_memory(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Peak RSS (MiB) of the ``prepare``, ``train`` and ``predict`` commands (``workdir/run`` is the model)."""
    manifest = workdir / "memory_manifest.csv"
    write_csv_manifest(prepared_rows(cfg, sizes.videos), manifest)
    config = str(workdir / "bench_config.yaml")
    save_config(cfg, config)
    video = write_face_video(workdir / "memory_predict.mp4", frames=60, size=(320, 320), fps=30.0)
    cli = [sys.executable, "-m", "age_estimation.cli.main"]
    commands = {
        "prepare": cli + ["prepare", "--manifest", str(manifest), "--out", str(workdir / "memory_cache"),
                          "--config", config, "--workers", "1", "--json"],
        "train": cli + ["train", "--config", config, "--no-export", "--json",
                        "--set", "train.epochs=1", "--set", f"train.steps_per_epoch={sizes.train_steps}",
                        "--set", f"runtime.runs_dir={workdir / 'memory_runs'}"],
        "predict": cli + ["predict", str(video), "--run", str(workdir / "run"), "--json"],
    }
    return {name: peak_rss_mib(command) for name, command in commands.items()}


def peak_rss_mib(command: list[str], poll_seconds: float = 0.05) -> dict[str, Any]:
    """Run ``command``; its peak resident memory is the largest VmHWM seen in its process tree.

    ``wait4``'s ``ru_maxrss`` is useless here: a forked child inherits the parent's high-water mark
    (this process has TensorFlow loaded), and it survives ``exec``. VmHWM is per address space.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peaks: dict[int, int] = {}
    while process.poll() is None:
        for pid in _process_tree(process.pid):
            peaks[pid] = max(peaks.get(pid, 0), _vm_hwm_kib(pid))
        time.sleep(poll_seconds)
    return {"peak_rss_mib": max(peaks.values(), default=0) / 1024, "exit_code": process.returncode}


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            try:
                tree += [int(child) for child in task.read_text().split()]
            except OSError:
                pass
        index += 1
    return tree


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
