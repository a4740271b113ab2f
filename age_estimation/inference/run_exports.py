"""Which export of a trained run ``predict`` uses, and the spec a run directory gives.

A run's float32 TFLite export is found by the paths ``exports.json`` records (absolute, relative to the
run, relative to the export directory) or by scanning the configured export directory, and is accepted only
when its recorded ``model.keras`` SHA-256 is the run's: a moved or copied run still finds its own export,
and never another model's. No TensorFlow here: the edge path opens runs through it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from age_estimation.config import load_config
from age_estimation.inference.spec import DeploymentSpec, sidecar_path
from age_estimation.runs import (
    CONFIG_NAME,
    EXPORTS_NAME,
    MODEL_NAME,
    model_sha256,
    read_exports,
    recorded_exports,
)

DEFAULT_TFLITE = "float32.tflite"  # the variant whose answers match Keras (about 2e-5 years)
# The sidecar key export writes to say which run a TFLite file came from:
# {"path": the run directory, "model_sha256": the sha256 of its model.keras at export}.
RUN_LINK = "run"


@dataclasses.dataclass(frozen=True)
class ExportSearch:
    """The run's float32 TFLite export that ``find_tflite_export`` found, or why there is none."""

    path: Path | None
    reason: str = ""  # one line, when ``path`` is None


def exported_tflite(run_dir: str | Path) -> Path | None:
    """The float32 TFLite file exported from this run's current ``model.keras``, or None (see
    ``find_tflite_export``)."""
    return find_tflite_export(run_dir).path


def find_tflite_export(run_dir: str | Path) -> ExportSearch:
    """The newest float32 TFLite file exported from this run's current ``model.keras``, or why there is none.

    An export belongs to a model, not to a folder: its sidecar's ``run`` link records the sha256 of the
    model.keras exported, and a file counts only when that equals the run's model.keras now. It looks where
    the run's ``exports.json`` says its last export went (the absolute path, then the paths relative to the
    run and to the export directory, which still hold after the run and its export moved together), then
    in the run config's ``<export.directory>/tflite/<export.model_name>/<version>/`` (newest version first).
    A file found only there also needs its link to name this run directory, or a directory that no longer
    holds that model (the run moved from there): a run copied without its exports.json does not take the
    original's export.
    """
    run_dir = Path(run_dir)
    config = run_dir / CONFIG_NAME
    if not config.is_file() or not (run_dir / MODEL_NAME).is_file():
        return ExportSearch(None, f"without both {CONFIG_NAME} and {MODEL_NAME} no export matches it")
    export = load_config(config).export
    record = read_exports(run_dir)
    recorded = recorded_exports(record, run_dir, DEFAULT_TFLITE.removesuffix(".tflite"), export.directory)
    sha256 = model_sha256(run_dir)
    other_model = []
    for path in recorded:
        link = _run_link(sidecar_path(path)) if path.is_file() else None
        if link is not None and link.get("model_sha256") == sha256:
            return ExportSearch(path)
        other_model += [path] if link is not None else []
    for path in _export_versions(Path(export.directory) / "tflite" / export.model_name):
        link = _run_link(sidecar_path(path)) if path.is_file() else None
        mine = link is not None and link.get("model_sha256") == sha256
        if mine and not _held_elsewhere(link, run_dir, sha256):
            return ExportSearch(path)
    return ExportSearch(None, _no_export_reason(record, recorded, other_model, sha256))


def _export_versions(base: Path) -> list[Path]:
    """The float32 TFLite file of each numbered version under ``base``, newest version first."""
    versions = sorted((p for p in base.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    return [version / DEFAULT_TFLITE for version in reversed(versions)]


def _no_export_reason(
    record: dict[str, Any], recorded: list[Path], other_model: list[Path], sha256: str
) -> str:
    """Why no export fits: a recorded one was made from another model.keras, is gone, or none was made."""
    if other_model or record.get("model_sha256") not in (None, sha256):
        where = other_model[0] if other_model else EXPORTS_NAME
        return f"its export ({where}) was made from another {MODEL_NAME} (sha256 differs); export it again"
    if recorded:
        return (f"its export is gone: not at {recorded[0]} ({EXPORTS_NAME}) nor at "
                f"{', '.join(map(str, recorded[1:])) or 'a path relative to the run'}")
    return "it has no TFLite export (`age-estimation export --run` makes one)"


def _run_link(sidecar: Path) -> dict[str, Any] | None:
    """The ``run`` link of a TFLite sidecar (None when the sidecar or the link is missing or unreadable)."""
    try:
        link = json.loads(sidecar.read_text()).get(RUN_LINK)
    except (OSError, ValueError, AttributeError):
        return None
    return link if isinstance(link, dict) else None


def _held_elsewhere(link: dict[str, Any], run_dir: Path, sha256: str) -> bool:
    """Whether the run directory a ``run`` link names is another one that still holds the model exported."""
    recorded = link.get("path")
    if not isinstance(recorded, str):
        return False
    other = Path(recorded)
    if other.resolve() == run_dir.resolve() or not (other / MODEL_NAME).is_file():
        return False
    return model_sha256(other) == sha256


def run_spec(run_dir: str | Path) -> DeploymentSpec:
    """The spec a run directory gives without loading its model: its config.yaml, interval and model card.

    Without a config.yaml the spec is empty (its errors name that file), still with the run's interval and card.
    """
    path = Path(run_dir) / CONFIG_NAME
    spec = DeploymentSpec.from_config(load_config(path)) if path.is_file() else DeploymentSpec(origin=str(path))
    return spec.with_run_files(run_dir)
