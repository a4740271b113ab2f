"""Export one finished run: SavedModel in TF Serving's versioned layout, TFLite variants, parity report.

Every export carries the run's deployment spec, with its calibrated interval and model card when the
run directory has them (``interval.json``, ``model_card.json``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import ExportConfig, load_config
from age_estimation.export.clips import cache_clips, parity_clips
from age_estimation.export.report import export_report, savedmodel_parity, write_report
from age_estimation.export.savedmodel import check_exportable, export_savedmodel
from age_estimation.export.tflite import export_tflite
from age_estimation.inference.spec import DeploymentSpec, run_link
from age_estimation.models.siam.model import load_siam
from age_estimation.runs import CONFIG_NAME, EXPORTS_NAME, MODEL_NAME, exports_record


def export_run(
    run_dir: Path,
    overrides: list[str] | None = None,
    export_cfg: ExportConfig | None = None,
    variants: list[str] | None = None,
    tflite: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Export a finished run: SavedModel (next version), TFLite variants and their parity/latency report.

    The run's config.yaml gives the window, alignment and export settings, the model its crop size,
    architecture, landmark stream and age prior; ``export_cfg`` replaces the config's export section.
    Parity and calibration clips carry the landmark stream when the model reads it. The run directory
    gets ``exports.json``: the sha256 of the model.keras exported and the paths written, absolute (so
    ``predict --run`` finds the TFLite model from any working directory: ``export.directory`` is relative to
    the one export ran in) and relative to the run and to the export directory (so it still finds it after
    the run and its export were moved or copied elsewhere together).
    """
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_NAME).is_file():
        raise FileNotFoundError(f"{run_dir}: no {MODEL_NAME}; is this a finished run directory?")
    cfg = load_config(run_dir / CONFIG_NAME, overrides=overrides)
    if export_cfg is not None:
        cfg.export = export_cfg
    variants = list(cfg.export.tflite_variants) if variants is None else variants
    model = load_siam(run_dir / MODEL_NAME)
    check_exportable(model)
    spec = DeploymentSpec.from_config(cfg, model).with_run_files(run_dir)
    link = run_link(run_dir, MODEL_NAME)
    spec = dataclasses.replace(spec, run=link)

    clips, ages, heldout, source = parity_clips(cfg, model.crop_size, spec.landmark_points)
    saved = export_savedmodel(model, cfg, spec=spec)
    result: dict[str, Any] = {
        "run": str(run_dir),
        "interval": None if spec.interval is None else spec.interval.to_json(),
        "model_card": None if spec.model_card is None else spec.model_card.to_json(),
        "savedmodel": {
            "path": str(saved),
            "version": int(saved.name),
            "max_abs_diff_years": savedmodel_parity(model, saved, clips),
        },
    }
    if not tflite or not variants:
        write_json_atomic(run_dir / EXPORTS_NAME, export_paths(run_dir, link, cfg.export.directory, result))
        return result
    representative = None
    if "int8" in variants:
        representative = cache_clips(cfg, cfg.export.representative_clips, "int8 calibration",
                                     landmarks=model.reads_landmarks)[0]
    artifacts = export_tflite(model, cfg, variants=variants, representative=representative, spec=spec)
    out_dir = artifacts[0].path.parent
    result["tflite"] = {"path": str(out_dir), "variants": {a.variant: str(a.path) for a in artifacts}}
    if report:
        table = export_report(model, artifacts, clips, ages, heldout, runs=cfg.export.latency_runs)
        table["parity_source"] = source
        table["report_path"] = str(write_report(out_dir, table))
        result["tflite"]["report"] = table
    write_json_atomic(run_dir / EXPORTS_NAME, export_paths(run_dir, link, cfg.export.directory, result))
    return result


def export_paths(
    run_dir: Path, link: dict[str, Any], export_dir: str | Path, result: dict[str, Any]
) -> dict[str, Any]:
    """The ``exports.json`` of a run exported to ``export_dir`` with the spec's ``run`` ``link``: the sha256
    of the model.keras exported and the paths of its SavedModel version and TFLite variants."""
    tflite = result.get("tflite", {}).get("variants", {})
    return exports_record(run_dir, link["model_sha256"], export_dir, result["savedmodel"]["path"], tflite)
