"""Export one finished run: SavedModel in TF Serving's versioned layout, TFLite variants, parity report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import ExportConfig


def export_run(
    run_dir: Path,
    overrides: list[str] | None = None,
    export_cfg: ExportConfig | None = None,
    variants: list[str] | None = None,
    tflite: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Export a finished run: SavedModel (next version), TFLite variants and their parity/latency report.

    The run's config.yaml gives the model, alignment and T; ``export_cfg`` replaces its export section.
    """
    import keras

    import age_estimation.models.siam.layers  # noqa: F401  (registers the custom layers)
    from age_estimation.config import load_config
    from age_estimation.export import tflite as tflite_export
    from age_estimation.export.savedmodel import export_savedmodel
    from age_estimation.runs import CONFIG_NAME, MODEL_NAME

    run_dir = Path(run_dir)
    if not (run_dir / MODEL_NAME).is_file():
        raise FileNotFoundError(f"{run_dir}: no {MODEL_NAME}; is this a finished run directory?")
    cfg = load_config(run_dir / CONFIG_NAME, overrides=overrides)
    if export_cfg is not None:
        cfg.export = export_cfg
    variants = list(cfg.export.tflite_variants) if variants is None else variants
    model = keras.saving.load_model(run_dir / MODEL_NAME)

    clips, ages, heldout, source = _parity_clips(cfg)
    saved = export_savedmodel(model, cfg)
    result: dict[str, Any] = {
        "run": str(run_dir),
        "savedmodel": {
            "path": str(saved),
            "version": int(saved.name),
            "max_abs_diff_years": _savedmodel_parity(model, saved, clips),
        },
    }
    if not tflite or not variants:
        return result
    representative = None
    if "int8" in variants:
        representative = tflite_export.cache_clips(cfg, cfg.export.representative_clips, "int8 calibration")[0]
    artifacts = tflite_export.export_tflite(model, cfg, variants=variants, representative=representative)
    out_dir = artifacts[0].path.parent
    result["tflite"] = {"path": str(out_dir), "variants": {a.variant: str(a.path) for a in artifacts}}
    if report:
        table = tflite_export.export_report(model, artifacts, clips, ages, heldout, runs=cfg.export.latency_runs)
        table["parity_source"] = source
        table["report_path"] = str(tflite_export.write_report(out_dir, table))
        result["tflite"]["report"] = table
    return result


def _parity_clips(cfg: Any) -> tuple[list[dict[str, np.ndarray]], list[float] | None, int, str]:
    """Parity clips from the cache (held-out first), or random clips when there is no cache."""
    from age_estimation.export.tflite import cache_clips

    count = cfg.export.parity_clips
    try:
        clips, ages, heldout = cache_clips(cfg, count, "parity", heldout_first=True)
        return clips, ages, heldout, f"cache {cfg.data.cache_dir}: {len(clips)} clips, {heldout} held out"
    except FileNotFoundError as err:
        rng = np.random.default_rng(0)
        shape = (1, cfg.data.clip_length, cfg.align.crop_size, cfg.align.crop_size, 3)
        clips = [
            {"frames": rng.integers(0, 256, shape, dtype=np.uint8), "mask": np.ones(shape[:2], np.float32)}
            for _ in range(count)
        ]
        return clips, None, 0, f"random clips ({err})"


def _savedmodel_parity(model: Any, saved: Path, clips: list[dict[str, np.ndarray]]) -> float:
    """Max |age diff| between the loaded SavedModel's ``padded`` signature and Keras on ``clips``."""
    from age_estimation.inference.runtimes import SavedModelPredictor

    predictor = SavedModelPredictor(saved)
    frames = np.concatenate([c["frames"] for c in clips])
    mask = np.concatenate([c["mask"] for c in clips])
    got = predictor.predict(frames, mask, test_time_flip=False)["age"]
    expected = np.asarray(model({"frames": frames, "mask": mask}, training=False)["age"])[:, 0]
    return float(np.max(np.abs(got - expected)))
