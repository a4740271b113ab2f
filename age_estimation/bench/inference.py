"""Inference figures: batch-1 latency and size of every runtime, end-to-end ``predict`` time per video second,
and the ``age-estimation predict`` process (start-up to decoding, whole run) against decode + detect alone."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from age_estimation.bench.face_video import write_face_video
from age_estimation.bench.measure import BenchSizes, median_spread, repeat
from age_estimation.bench.model import default_model
from age_estimation.config import PipelineConfig, save_config
from age_estimation.data.cache import read_index
from age_estimation.export.clips import cache_clips
from age_estimation.export.report import call_ms
from age_estimation.export.savedmodel import export_savedmodel
from age_estimation.export.tflite import export_tflite
from age_estimation.inference.predict import predict_video, prediction_align_config
from age_estimation.inference.runtimes import KerasPredictor, Predictor, SavedModelPredictor, TFLitePredictor
from age_estimation.inference.spec import DeploymentSpec, run_link
from age_estimation.runs import CONFIG_NAME, MODEL_NAME
from age_estimation.training.task import crop_size_of
from age_estimation.video.align import FaceAligner, open_video


def bench_inference(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Batch-1 per-clip latency: Keras, SavedModel and each TFLite variant at 1 and 2 threads; sizes."""
    crop = crop_size_of(read_index(cfg.data.cache_dir))
    model = default_model(cfg, crop)
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    export_cfg = dataclasses.replace(cfg, export=dataclasses.replace(
        cfg.export, directory=str(workdir / "exported"), tflite_variants=list(sizes.variants)))
    model.save(run_dir / MODEL_NAME)
    save_config(export_cfg, run_dir / CONFIG_NAME)
    # Linked to the run as ``export`` links a trained one, so ``predict --run`` takes the default runtime.
    spec = dataclasses.replace(DeploymentSpec.from_config(export_cfg, model), run=run_link(run_dir, MODEL_NAME))
    savedmodel = export_savedmodel(model, export_cfg, spec=spec)
    artifacts = export_tflite(model, export_cfg, spec=spec)
    clip = cache_clips(cfg, 1, "the latency benchmark", landmarks=model.reads_landmarks)[0][0]

    def latency(predictor: Predictor) -> dict[str, Any]:
        return median_spread(call_ms(lambda: predictor.predict(test_time_flip=False, **clip), sizes.latency_runs))

    keras_ms = latency(KerasPredictor(run_dir / MODEL_NAME))
    table = {"keras": {"ms": keras_ms, "size_bytes": (run_dir / MODEL_NAME).stat().st_size},
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
            "predict": bench_predict(cfg, sizes, workdir, run_dir, artifacts),
            "predict_process": bench_predict_process(cfg, sizes, workdir, run_dir, artifacts)}


def bench_predict(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path, run_dir: Path,
                  artifacts: list[Any]) -> dict[str, Any]:
    """End-to-end ``predict`` wall time per second of a 30 fps face video (decode + align + model).

    For a pixel-only model it also times Keras with the landmark stream tracked anyway
    (``align.landmarks`` on): what alignment would cost if it did not follow the model.
    """
    frames = round(30 * sizes.predict_seconds)
    video = write_face_video(workdir / "predict_30fps.mp4", frames=frames, size=(320, 320), fps=30.0)
    keras_predictor = KerasPredictor(run_dir / MODEL_NAME)
    align = prediction_align_config(cfg.align, keras_predictor.landmark_points)
    out: dict[str, Any] = {"video_seconds": sizes.predict_seconds, "fps": 30}
    runs: dict[str, tuple[Predictor, Any]] = {"keras": (keras_predictor, align)}
    if artifacts:
        runs[f"tflite_{artifacts[0].variant}"] = (TFLitePredictor(artifacts[0].path, num_threads=2), align)
    if not align.landmarks:
        runs["keras, align.landmarks on (unused)"] = (keras_predictor, dataclasses.replace(align, landmarks=True))
    for name, (predictor, config) in runs.items():
        with FaceAligner(config) as aligner:
            predict_video(video, predictor, aligner, config, cfg.data.clip_length)

            def once(predictor: Predictor = predictor, aligner: FaceAligner = aligner, config: Any = config) -> float:
                begin = time.perf_counter()
                predict_video(video, predictor, aligner, config, cfg.data.clip_length)
                return (time.perf_counter() - begin) / sizes.predict_seconds

            out[name] = repeat(once, sizes.repeats)
    return out


def bench_predict_process(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path, run_dir: Path,
                          artifacts: list[Any]) -> dict[str, Any]:
    """The whole ``age-estimation predict VIDEO`` process vs decode + detect of the same 640x360 face video.

    Per command (the run's default runtime; ``--model`` of the first TFLite variant): seconds from launch
    to the start of decoding (``--timings``) and to exit, and the exit time over decode + detect.
    """
    frames = round(30 * sizes.predict_seconds)
    video = write_face_video(workdir / "predict_process.mp4", frames=frames, size=(640, 360), fps=30.0)
    reference = repeat(lambda: decode_detect_seconds(video, prediction_align_config(cfg.align)), sizes.repeats)
    out: dict[str, Any] = {"video_frames": frames, "size": [640, 360], "decode_detect_s": reference}
    commands = {"default": ["--run", str(run_dir)]}
    if artifacts:
        commands[f"tflite_{artifacts[0].variant}"] = ["--model", str(artifacts[0].path)]
    for name, flags in commands.items():
        runs = [predict_process(video, flags) for _ in range(sizes.repeats)]
        whole = median_spread([r["whole_s"] for r in runs])
        out[name] = {"runtime": runs[0]["runtime"],
                     "startup_to_decode_s": median_spread([r["startup_s"] for r in runs]),
                     "whole_s": whole, "ratio_to_decode_detect": whole["median"] / reference["median"]}
    return out


def predict_process(video: Path, flags: list[str]) -> dict[str, Any]:
    """One ``age-estimation predict VIDEO --json --timings`` process: start-up, whole time, runtime used."""
    command = [sys.executable, "-m", "age_estimation.cli.main", "predict", str(video), "--json", "--timings",
               *flags]
    launched = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    whole = time.time() - launched
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = done.stderr.splitlines()
    timings = next(json.loads(line)["timings"] for line in lines if line.startswith('{"timings"'))
    result = next(json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))
    return {"startup_s": timings["decode_started"] - launched, "whole_s": whole, "runtime": result["runtime"]}


def decode_detect_seconds(video: Path, align: Any) -> float:
    """Seconds to decode ``video`` and run face detection where alignment does (every ``detect_every``-th
    frame), in this process with the detector already built: the work ``predict`` cannot avoid."""
    every = max(1, align.detect_every)
    with FaceAligner(align) as aligner:
        begin = time.perf_counter()
        with open_video(video, align) as stream:
            for index, frame in enumerate(stream):
                if index % every == 0:
                    aligner.detect(frame)
        return time.perf_counter() - begin


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
