"""Inference figures: batch-1 latency and size of every runtime, and end-to-end ``predict`` time per video second."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from age_estimation.bench.face_video import write_face_video
from age_estimation.bench.measure import BenchSizes, median_spread, repeat
from age_estimation.bench.model import default_model
from age_estimation.config import PipelineConfig, save_config
from age_estimation.data.cache import read_index
from age_estimation.export.clips import cache_clips
from age_estimation.export.savedmodel import export_savedmodel
from age_estimation.export.tflite import export_tflite
from age_estimation.inference.predict import predict_video, prediction_align_config
from age_estimation.inference.runtimes import KerasPredictor, Predictor, SavedModelPredictor, TFLitePredictor
from age_estimation.training.task import crop_size_of
from age_estimation.video.align import FaceAligner


def bench_inference(cfg: PipelineConfig, sizes: BenchSizes, workdir: Path) -> dict[str, Any]:
    """Batch-1 per-clip latency: Keras, SavedModel and each TFLite variant at 1 and 2 threads; sizes."""
    crop = crop_size_of(read_index(cfg.data.cache_dir))
    model = default_model(cfg, crop)
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    save_config(cfg, run_dir / "config.yaml")
    export_cfg = dataclasses.replace(cfg, export=dataclasses.replace(
        cfg.export, directory=str(workdir / "exported"), tflite_variants=list(sizes.variants)))
    savedmodel = export_savedmodel(model, export_cfg)
    artifacts = export_tflite(model, export_cfg)
    clip = cache_clips(cfg, 1, "the latency benchmark")[0][0]

    def latency(predictor: Predictor) -> dict[str, Any]:
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
    frames = round(30 * sizes.predict_seconds)
    video = write_face_video(workdir / "predict_30fps.mp4", frames=frames, size=(320, 320), fps=30.0)
    align = prediction_align_config(cfg.align)
    out: dict[str, Any] = {"video_seconds": sizes.predict_seconds, "fps": 30}
    predictors: dict[str, Predictor] = {"keras": KerasPredictor(run_dir / "model.keras")}
    if artifacts:
        predictors[f"tflite_{artifacts[0].variant}"] = TFLitePredictor(artifacts[0].path, num_threads=2)
    with FaceAligner(align) as aligner:
        for name, predictor in predictors.items():
            predict_video(video, predictor, aligner, align, cfg.data.clip_length)

            def once(predictor: Predictor = predictor) -> float:
                begin = time.perf_counter()
                predict_video(video, predictor, aligner, align, cfg.data.clip_length)
                return (time.perf_counter() - begin) / sizes.predict_seconds

            out[name] = repeat(once, sizes.repeats)
    return out


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
