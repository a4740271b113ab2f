"""Run directories: where a training run keeps its config, model, checkpoints, metrics, plots and logs.

Layout of ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>/``::

    config.yaml        the resolved pipeline config (reload with load_config)
    model.keras        the trained model (best epoch), complete once training ends
    checkpoints/       best-checkpoint weights and BackupAndRestore state
    metrics.json       held-out metrics and the training summary
    interval.json      the interval calibration (split-conformal on held-back validation subjects)
    model_card.json    what the model was trained on and how well it did, shown by predict and exports
    face_ranges.json   the face measures' range over the training videos: predict refuses a face outside it
    heldout_predictions.csv  one row per held-out video: true and predicted age
    exports.json       where the newest export of this run went and which model.keras it holds (export)
    plots/             PNG figures
    logs/              TensorBoard event files and training.csv
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL_NAME = "model.keras"
CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"
PREDICTIONS_NAME = "heldout_predictions.csv"
EXPORTS_NAME = "exports.json"
# exports.json: {"model_sha256": the sha256 of model.keras exported, "savedmodel": absolute path,
# "tflite": {variant: absolute path}, and the same paths relative to the run directory ("from_run") and to
# the export directory ("from_export_directory")}: the relative ones find the export after the run moved.


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Create and return a fresh, timestamped run directory under ``runs_dir``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(runs_dir) / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        path = Path(runs_dir) / f"{name}-{stamp}-{suffix}"
        suffix += 1
    for sub in ("checkpoints", "plots", "logs"):
        (path / sub).mkdir(parents=True)
    return path


def latest_run(runs_dir: str | Path = "runs") -> Path:
    """The newest run directory that holds a finished model; a clear error when there is none."""
    root = Path(runs_dir)
    finished = sorted(
        (p.parent for p in root.glob(f"**/{MODEL_NAME}")), key=lambda p: (p / MODEL_NAME).stat().st_mtime
    )
    if not finished:
        raise FileNotFoundError(f"{root}: no trained run found (no {MODEL_NAME}); run `make train` first")
    return finished[-1]


def model_sha256(run_dir: str | Path) -> str:
    """The SHA-256 of a run's ``model.keras``: what links an export to the model it was made from, wherever
    the run and the export are moved."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / MODEL_NAME, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exports_record(
    run_dir: str | Path,
    sha256: str,
    export_dir: str | Path,
    savedmodel: str | Path,
    tflite: dict[str, str | Path],
) -> dict[str, Any]:
    """The ``exports.json`` of a run whose model.keras (``sha256``, as the export's spec records it) was
    exported to ``export_dir``: that sha256 and the export's paths, absolute and relative to the run
    directory and to the export directory."""
    paths = {"savedmodel": Path(savedmodel).resolve(),
             "tflite": {variant: Path(path).resolve() for variant, path in tflite.items()}}
    bases = {"from_run": Path(run_dir).resolve(), "from_export_directory": Path(export_dir).resolve()}
    record: dict[str, Any] = {"model_sha256": sha256, **_mapped(paths, str)}
    for key, base in bases.items():
        record[key] = _mapped(paths, lambda path, base=base: os.path.relpath(path, base))
    return record


def read_exports(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``exports.json`` ({} when it is missing or unreadable: the run was never exported)."""
    try:
        record = json.loads((Path(run_dir) / EXPORTS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_exports(
    record: dict[str, Any], run_dir: str | Path, variant: str, export_dir: str | Path
) -> list[Path]:
    """Where an ``exports.json`` ``record`` says the run's TFLite ``variant`` went: the absolute path, then
    the relative ones resolved from ``run_dir`` and from ``export_dir`` (the export directory its config
    names now).

    Each path once, in that order; none when the record has no such variant. The paths may not exist.
    """
    # Resolved as exports_record resolved them when it made the relative paths (symlinks followed).
    bases = {"from_run": Path(run_dir).resolve(), "from_export_directory": Path(export_dir).resolve()}
    found = [_variant_path(record, variant)]
    found += [_variant_path(record.get(key), variant, base) for key, base in bases.items()]
    return list(dict.fromkeys(path for path in found if path is not None))


def _mapped(paths: dict[str, Any], convert: Callable[[Path], str]) -> dict[str, Any]:
    """``paths`` (a SavedModel path, a variant -> TFLite path dict) with ``convert`` applied to each path."""
    return {"savedmodel": convert(paths["savedmodel"]),
            "tflite": {variant: convert(path) for variant, path in paths["tflite"].items()}}


def _variant_path(record: Any, variant: str, base: Path | None = None) -> Path | None:
    """``record["tflite"][variant]`` as a path (joined to ``base`` and normalised when given), or None."""
    try:
        value = record["tflite"][variant]
    except (KeyError, TypeError):
        return None
    if not isinstance(value, str):
        return None
    return Path(value) if base is None else Path(os.path.normpath(base / value))
