"""Memory figures: peak resident memory of prepare, a short training and predict, each in its own process,
and of prepare and predict on a long 1080p video against a 10-second clip (neither may grow with the
video's length)."""

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
from age_estimation.data.manifest import ManifestRow, write_csv_manifest


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
    out = {name: peak_rss_mib(command) for name, command in commands.items()}
    out.update(long_video_memory(workdir / "long", config, round(25 * sizes.long_video_seconds),
                                 run_dir=workdir / "run"))
    return out


def long_video_memory(
    folder: Path,
    config: str,
    frames: int,
    clip_frames: int = 250,
    size: tuple[int, int] = (1920, 1080),
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """Peak RSS of ``prepare`` (1 worker), and of ``predict`` with ``run_dir``'s model when given, on a
    ``clip_frames`` clip and on a ``frames`` video of ``size``.

    Each long entry also gives its ratio to the clip's: a streaming pipeline keeps it near 1.
    """
    commands = {"prepare": lambda video, count: ["prepare", "--manifest", str(_manifest(folder, video, count)),
                                                  "--out", str(folder / f"cache{count}"), "--config", config,
                                                  "--workers", "1", "--json"]}
    if run_dir is not None:
        commands["predict"] = lambda video, count: ["predict", str(video), "--run", str(run_dir), "--json"]
    figures: dict[str, Any] = {}
    for label, count in ((f"{size[1]}p {clip_frames / 25:g} s clip", clip_frames),
                         (f"{size[1]}p {count_minutes(frames)} video", frames)):
        started = time.perf_counter()
        video = write_face_video(folder / f"{count}.mp4", frames=count, size=size, noise=0.0, seed=count)
        written = time.perf_counter() - started
        for name, arguments in commands.items():
            command = [sys.executable, "-m", "age_estimation.cli.main", *arguments(video, count)]
            started = time.perf_counter()
            figures[f"{name}, {label}"] = {**peak_rss_mib(command), "frames": count,
                                           "seconds": round(time.perf_counter() - started, 1),
                                           "generation_seconds": round(written, 1)}
        video.unlink()
    for name in commands:
        clip, long = (entry for key, entry in figures.items() if key.startswith(f"{name}, "))
        long["ratio_to_clip"] = long["peak_rss_mib"] / clip["peak_rss_mib"] if clip["peak_rss_mib"] else 0.0
    return figures


def _manifest(folder: Path, video: Path, count: int) -> Path:
    manifest = folder / f"{count}.csv"
    write_csv_manifest([ManifestRow(video, 30.0, "long")], manifest)
    return manifest


def count_minutes(frames: int, fps: float = 25.0) -> str:
    """A video length for a figure's name: '115 s' or '10.0 min'."""
    seconds = frames / fps
    return f"{seconds / 60:.1f} min" if seconds >= 600 else f"{seconds:g} s"


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
