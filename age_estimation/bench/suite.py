"""``make bench``: where time, memory and disk go, measured side by side in one run on this machine.

Every speed is a median over ``repeats`` with its range, and is also given as a ratio to its own
reference measured in the same run (decode-only for prepare, in-memory batches for the input
pipeline, Keras for the inference runtimes). ``quick`` shrinks every size for a CI smoke run.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import PipelineConfig


@dataclasses.dataclass
class BenchSizes:
    """How much work each measurement does."""

    videos: int
    repeats: int
    train_steps: int
    latency_runs: int
    predict_seconds: float
    variants: tuple[str, ...]


QUICK = BenchSizes(videos=4, repeats=3, train_steps=3, latency_runs=5, predict_seconds=2.0,
                   variants=("float32", "dynamic_range"))
FULL = BenchSizes(videos=48, repeats=3, train_steps=10, latency_runs=30, predict_seconds=10.0,
                  variants=("float32", "float16", "dynamic_range", "int8"))


def median_spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def repeat(measure: Callable[[], float], times: int) -> dict[str, Any]:
    """Call ``measure`` ``times`` times and summarise the results."""
    return median_spread([measure() for _ in range(times)])


def run_bench(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Every section of the bench on the config's data (prepared first if needed)."""
    from age_estimation.data.prepare import prepare_data

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
    results["inference"] = bench_inference(cfg, sizes, workdir)
    results["memory"] = bench_memory(cfg, sizes, workdir)
    results["seconds"] = time.perf_counter() - started
    return results


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import tensorflow as tf

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


def bench_prepare(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Decode-only vs full prepare frames/s on the same videos; 1 vs 2 worker processes; 1080p too."""
    from age_estimation.bench.prepare import write_face_video
    from age_estimation.data.manifest import scan_manifest

    paths = [row.path for row in scan_manifest(cfg.data).rows[: sizes.videos]]
    out = _prepare_figures(paths, cfg, sizes)
    hd = [write_face_video(workdir / f"hd{i}.mp4", frames=40, size=(1920, 1080), seed=i)
          for i in range(max(2, sizes.videos // 12))]
    out["1080p"] = _prepare_figures(hd, cfg, dataclasses.replace(sizes, repeats=max(1, sizes.repeats // 2)),
                                    workers=False)
    return out


def _prepare_figures(paths: list[Path], cfg: PipelineConfig, sizes: BenchSizes, workers: bool = True) -> dict[str, Any]:
    from age_estimation.bench.prepare import decode_throughput, prepare_throughput

    decode = repeat(lambda: decode_throughput(paths, cfg.align)["frames_per_second"], sizes.repeats)
    one = repeat(lambda: prepare_throughput(paths, cfg.align, workers=1)["frames_per_second"], sizes.repeats)
    sparse_align = dataclasses.replace(cfg.align, detect_every=2)
    sparse = repeat(lambda: prepare_throughput(paths, sparse_align, workers=1)["frames_per_second"], sizes.repeats)
    out = {
        "videos": len(paths),
        "decode_fps": decode,
        "prepare_1_fps": one,
        "prepare_1_detect_every_2_fps": sparse,
        "ratio_prepare_to_decode": one["median"] / decode["median"],
        "ratio_prepare_detect_every_2_to_decode": sparse["median"] / decode["median"],
    }
    if workers:
        two = repeat(lambda: prepare_throughput(paths, cfg.align, workers=2)["frames_per_second"], sizes.repeats)
        out["prepare_2_fps"] = two
        out["speedup_2_over_1"] = two["median"] / one["median"]
    return out


def _default_model(cfg: PipelineConfig, crop: int) -> Any:
    from age_estimation.models.siam.model import build_siam

    return build_siam(cfg.model, crop_size=crop)


def _train_step(cfg: PipelineConfig, crop: int) -> tuple[Any, Callable[[Any, Any], Any]]:
    """A compiled age-only training view of the config's model and a step function over one batch."""
    from age_estimation.training.optim import make_loss, make_optimizer
    from age_estimation.training.task import age_view

    fitted = age_view(_default_model(cfg, crop))
    fitted.compile(optimizer=make_optimizer(cfg.train, 100), loss=make_loss(cfg.train))

    def step(inputs: Any, targets: Any) -> Any:
        return fitted.train_on_batch(inputs, targets["age"])

    return fitted, step


def bench_input(cfg: PipelineConfig, sizes: BenchSizes) -> dict[str, Any]:
    """Training steps/s fed by the tf.data pipeline vs by the same batches held in memory."""
    from age_estimation.bench.input import input_throughput
    from age_estimation.data.cache import read_index

    index = read_index(cfg.data.cache_dir)
    ids = sorted(index["videos"])[: max(sizes.videos * 4, cfg.data.batch_size * 2)]
    _, step = _train_step(cfg, int(index["align"]["crop_size"]))
    return input_throughput(cfg.data.cache_dir, ids, cfg.data, steps=sizes.train_steps * 2,
                            repeats=sizes.repeats, consume=step)


def bench_training(cfg: PipelineConfig, sizes: BenchSizes) -> dict[str, Any]:
    """Seconds per training step and clips/s for the config's model and batch size."""
    from age_estimation.data.cache import read_index

    crop = int(read_index(cfg.data.cache_dir)["align"]["crop_size"])
    fitted, step = _train_step(cfg, crop)
    rng = np.random.default_rng(0)
    inputs = {"frames": rng.integers(0, 256, (cfg.data.batch_size, cfg.data.clip_length, crop, crop, 3), np.uint8),
              "mask": np.ones((cfg.data.batch_size, cfg.data.clip_length), np.float32)}
    targets = {"age": rng.uniform(8, 76, (cfg.data.batch_size, 1)).astype(np.float32)}
    step(inputs, targets)

    def timed() -> float:
        begin = time.perf_counter()
        for _ in range(sizes.train_steps):
            step(inputs, targets)
        return (time.perf_counter() - begin) / sizes.train_steps

    seconds = repeat(timed, sizes.repeats)
    return {"params": int(fitted.count_params()), "batch_size": cfg.data.batch_size,
            "clip_length": cfg.data.clip_length, "seconds_per_step": seconds,
            "clips_per_second": cfg.data.batch_size / seconds["median"]}


def bench_inference(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Batch-1 per-clip latency: Keras, SavedModel and each TFLite variant at 1 and 2 threads; sizes."""
    from age_estimation.config import save_config
    from age_estimation.data.cache import read_index
    from age_estimation.export.savedmodel import export_savedmodel
    from age_estimation.export.tflite import cache_clips, export_tflite
    from age_estimation.inference.runtimes import KerasPredictor, SavedModelPredictor, TFLitePredictor

    crop = int(read_index(cfg.data.cache_dir)["align"]["crop_size"])
    model = _default_model(cfg, crop)
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    save_config(cfg, run_dir / "config.yaml")
    export_cfg = dataclasses.replace(cfg, export=dataclasses.replace(
        cfg.export, directory=str(workdir / "exported"), tflite_variants=list(sizes.variants)))
    savedmodel = export_savedmodel(model, export_cfg)
    artifacts = export_tflite(model, export_cfg)
    clip = cache_clips(cfg, 1, "the latency benchmark")[0][0]

    def latency(predictor: Any) -> dict[str, Any]:
        for _ in range(3):
            predictor.predict(clip["frames"], clip["mask"], test_time_flip=False)

        def once() -> float:
            begin = time.perf_counter()
            predictor.predict(clip["frames"], clip["mask"], test_time_flip=False)
            return (time.perf_counter() - begin) * 1000

        return median_spread([once() for _ in range(sizes.latency_runs)])

    keras_ms = latency(KerasPredictor(run_dir / "model.keras"))
    table = {"keras": {"ms": keras_ms, "size_bytes": (run_dir / "model.keras").stat().st_size},
             "savedmodel": {"ms": latency(SavedModelPredictor(savedmodel)), "size_bytes": _tree_size(savedmodel)}}
    for artifact in artifacts:
        for threads in (1, 2):
            table[f"tflite_{artifact.variant}@{threads}"] = {
                "ms": latency(TFLitePredictor(artifact.path, num_threads=threads)),
                "size_bytes": artifact.size_bytes,
            }
    for entry in table.values():
        entry["speedup_over_keras"] = keras_ms["median"] / entry["ms"]["median"]
    return {"clip_length": cfg.data.clip_length, "crop_size": crop, "runtimes": table,
            "predict": bench_predict(cfg, sizes, workdir, run_dir, artifacts)}


def bench_predict(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path, run_dir: Path,
                  artifacts: list[Any]) -> dict[str, Any]:
    """End-to-end ``predict`` wall time per second of a 30 fps face video (decode + align + model)."""
    from age_estimation.bench.prepare import write_face_video
    from age_estimation.inference.predict import predict_video, prediction_align_config
    from age_estimation.inference.runtimes import KerasPredictor, TFLitePredictor
    from age_estimation.video.align import FaceAligner

    frames = round(30 * sizes.predict_seconds)
    video = write_face_video(workdir / "predict_30fps.mp4", frames=frames, size=(320, 320), fps=30.0)
    align = prediction_align_config(cfg.align)
    out: dict[str, Any] = {"video_seconds": sizes.predict_seconds, "fps": 30}
    predictors = {"keras": KerasPredictor(run_dir / "model.keras")}
    if artifacts:
        predictors[f"tflite_{artifacts[0].variant}"] = TFLitePredictor(artifacts[0].path, num_threads=2)
    with FaceAligner(align) as aligner:
        for name, predictor in predictors.items():
            predict_video(video, predictor, aligner, align, cfg.data.clip_length)

            def once(predictor: Any = predictor) -> float:
                begin = time.perf_counter()
                predict_video(video, predictor, aligner, align, cfg.data.clip_length)
                return (time.perf_counter() - begin) / sizes.predict_seconds

            out[name] = repeat(once, sizes.repeats)
    return out


def bench_memory(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Peak RSS (MiB) of prepare, a short training and predict, each in its own process."""
    from age_estimation.bench.prepare import write_face_video
    from age_estimation.config import save_config
    from age_estimation.data.manifest import scan_manifest, write_csv_manifest

    rows = scan_manifest(cfg.data).rows[: sizes.videos]
    manifest = workdir / "memory_manifest.csv"
    write_csv_manifest(rows, manifest)
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


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def format_bench(results: dict[str, Any]) -> str:
    """The bench results as a Markdown table a person can read."""

    def spread(entry: dict[str, Any], unit: str, digits: int = 1) -> str:
        return f"{entry['median']:.{digits}f} {unit} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"

    prep, inp, trn, inf = results["prepare"], results["input"], results["training"], results["inference"]
    hd = prep["1080p"]
    lines = [
        (f"Measured {results['date']} on {results['machine']['cpu_count']} cores "
        f"({results['machine']['processor']}), TF {results['machine']['tensorflow']}; "
        f"median (min-max) of {results['sizes']['repeats']} repeats."),
        "",
        "| what | figure | ratio to its reference |",
        "|---|---|---|",
        f"| decode only ({prep['videos']} videos of the dataset) | {spread(prep['decode_fps'], 'frames/s')} | reference |",
        (f"| prepare, 1 process (decode+detect+align+write) | {spread(prep['prepare_1_fps'], 'frames/s')} | "
        f"{prep['ratio_prepare_to_decode']:.2f} of decode-only |"),
        (f"| prepare, 1 process, align.detect_every=2 | {spread(prep['prepare_1_detect_every_2_fps'], 'frames/s')} | "
        f"{prep['ratio_prepare_detect_every_2_to_decode']:.2f} of decode-only |"),
        (f"| prepare, 2 processes | {spread(prep['prepare_2_fps'], 'frames/s')} | "
        f"{prep['speedup_2_over_1']:.2f}x over 1 process |"),
        (f"| 1080p: decode only ({hd['videos']} videos) | {spread(hd['decode_fps'], 'frames/s')} | reference |"),
        (f"| 1080p: prepare, 1 process | {spread(hd['prepare_1_fps'], 'frames/s')} | "
         f"{hd['ratio_prepare_to_decode']:.2f} of decode-only |"),
        (f"| 1080p: prepare, 1 process, align.detect_every=2 | {spread(hd['prepare_1_detect_every_2_fps'], 'frames/s')} | "
         f"{hd['ratio_prepare_detect_every_2_to_decode']:.2f} of decode-only |"),
        (f"| training input: tf.data pipeline | {inp['pipeline_steps_per_s']:.2f} steps/s | "
        f"{inp['ratio']:.2f} of in-memory batches ({inp['memory_steps_per_s']:.2f} steps/s) |"),
        (f"| training step (B={trn['batch_size']}, T={trn['clip_length']}, {trn['params']:,} params) | "
        f"{spread(trn['seconds_per_step'], 's/step', 3)}, {trn['clips_per_second']:.1f} clips/s | |"),
    ]
    for name, entry in inf["runtimes"].items():
        lines.append(f"| inference {name} (batch 1, T={inf['clip_length']}) | {spread(entry['ms'], 'ms', 2)}, "
                     f"{entry['size_bytes'] / 1024:.0f} KiB | {entry['speedup_over_keras']:.2f}x Keras |")
    predict = inf["predict"]
    for name in (k for k in predict if k not in ("video_seconds", "fps")):
        lines.append(f"| predict end to end, {name} | {spread(predict[name], 's per s of 30 fps video', 2)} | |")
    for name, entry in results["memory"].items():
        lines.append(f"| peak RSS, {name} | {entry['peak_rss_mib']:.0f} MiB | exit {entry['exit_code']} |")
    return "\n".join(lines) + "\n"


def bench(cfg: PipelineConfig, quick: bool = False, out: Path | None = None) -> dict[str, Any]:
    """Run the bench in a temporary folder and write ``bench.json`` and ``bench.md`` under ``out``."""
    from age_estimation.atomic_files import write_json_atomic

    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="age-bench-") as tmp:
        results = run_bench(cfg, sizes, Path(tmp))
    out = Path(out or Path(cfg.runtime.runs_dir) / f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench.json", results)
    (out / "bench.md").write_text(format_bench(results))
    results["out"] = str(out)
    return results
