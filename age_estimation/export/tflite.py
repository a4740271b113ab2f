"""TFLite export for edge and mobile: float32, float16, dynamic-range and full-int8 variants of SIAM.

Conversion: the trained weights go into a batch-1, fixed-T twin with ``unroll=True``, so the LSTM
becomes plain ops (no WHILE loop: what the mobile GPU delegate supports, and what full-int8
quantisation needs); the twin is written as a SavedModel and converted from it. Each variant gets a
JSON sidecar (``<variant>.json``): the twin's ``DeploymentSpec`` with the ``tflite_*`` keys (and the run's
interval and model card, so a deployer of the file alone sees them).

Inputs are the twin's: ``frames`` uint8 (1, T, S, S, 3), ``mask`` float32 (1, T) and, for a model that reads
the landmark stream, ``landmarks`` float32 (1, T, K, 2) and ``landmark_mask`` float32 (1, T). Every variant,
int8 included, keeps these input types (int8 quantises inside the graph).

Layout: ``<export.directory>/tflite/<model_name>/<version>/{<variant>.tflite, <variant>.json, report.json}``.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import PipelineConfig
from age_estimation.export.clips import Clip, cache_clips
from age_estimation.export.savedmodel import check_exportable, next_version
from age_estimation.inference.spec import DeploymentSpec, sidecar_path
from age_estimation.logs import native_logs_hidden
from age_estimation.models.siam.model import Siam

VARIANTS = ("float32", "float16", "dynamic_range", "int8")
DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, float32 compute",
    "dynamic_range": "int8 weights (tensors of 1024+ values), float activations",
    "int8": "int8 weights and activations (calibrated on cache clips); uint8 frames, float32 other inputs "
            "and outputs",
}
BUILTIN_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}


@dataclasses.dataclass
class TFLiteArtifact:
    """One converted variant: its files, size and op list."""

    variant: str
    path: Path
    sidecar: Path
    size_bytes: int
    ops: list[str]


def tflite_dir(cfg: PipelineConfig, directory: str | Path | None = None) -> Path:
    """Folder holding the TFLite versions of ``cfg.export.model_name``."""
    return Path(directory or cfg.export.directory) / "tflite" / cfg.export.model_name


def fixed_twin(model: Siam, clip_length: int) -> Siam:
    """A batch-1, T = ``clip_length``, unrolled-RNN copy of ``model`` holding the same weights."""
    twin = Siam.from_config({**model.get_config(), "clip_length": clip_length, "batch_size": 1, "unroll": True})
    twin.set_weights(model.get_weights())
    return twin


def convert(
    saved_model_dir: str | Path, variant: str, representative: Callable[[], Iterator[Clip]] | None = None
) -> bytes:
    """Convert a batch-1 SavedModel to the TFLite flatbuffer of ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None:
            raise ValueError(
                "the int8 variant needs a representative dataset (clips from the prepared cache)"
            )
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with native_logs_hidden():  # the converter's MLIR passes log straight to fd 2
        return converter.convert()


def export_tflite(
    model: Siam,
    cfg: PipelineConfig,
    directory: str | Path | None = None,
    variants: list[str] | None = None,
    representative: list[Clip] | None = None,
    version: int | None = None,
    spec: DeploymentSpec | None = None,
) -> list[TFLiteArtifact]:
    """Write each variant (default ``export.tflite_variants``) with its sidecar into a new version folder.

    The twin's T is ``data.clip_length``, the prediction window. ``representative`` clips (with the
    model's inputs) calibrate int8;
    when None they are read from the prepared cache (``export.representative_clips`` clips), and a
    missing cache is a clear error before any conversion. ``spec`` (default: ``cfg``'s) is the sidecars'
    deployment spec, with the twin's facts added.
    """
    check_exportable(model)
    variants = list(variants or cfg.export.tflite_variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"export.tflite_variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if "int8" in variants and representative is None:
        representative = cache_clips(cfg, cfg.export.representative_clips, purpose="int8 calibration",
                                     landmarks=model.reads_landmarks)[0]
    base = tflite_dir(cfg, directory)
    base.mkdir(parents=True, exist_ok=True)
    version = version or next_version(base)
    out_dir = base / str(version)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: TFLite version {version} exists already; not overwriting it")
    twin = fixed_twin(model, cfg.data.clip_length)
    spec = (spec or DeploymentSpec.from_config(cfg)).with_model(twin)
    artifacts = []
    work = Path(tempfile.mkdtemp(prefix="siam-tflite-"))
    try:
        twin.export(str(work / "twin"), verbose=False)
        for variant in variants:
            data = convert(work / "twin", variant, _generator(representative) if variant == "int8" else None)
            artifacts.append(write_variant(out_dir, variant, data, spec))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return artifacts


def write_variant(out_dir: Path, variant: str, data: bytes, spec: DeploymentSpec) -> TFLiteArtifact:
    """Write ``<variant>.tflite`` and its sidecar (``spec`` with the variant's ``tflite_*`` keys)."""
    path = out_dir / f"{variant}.tflite"
    write_bytes_atomic(path, data)
    ops = list_ops(path)
    sidecar = sidecar_path(path)
    described = dataclasses.replace(
        spec, tflite_variant=variant, quantization=DESCRIPTIONS[variant], signature="serving_default", ops=ops
    )
    write_json_atomic(sidecar, described.to_json())
    return TFLiteArtifact(variant, path, sidecar, path.stat().st_size, ops)


def list_ops(path: str | Path) -> list[str]:
    """The distinct op names in a TFLite file, read from its flatbuffer with LiteRT's schema module."""
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    names = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(o).OpcodeIndex())
            # Op codes past 127 live in BuiltinCode; DeprecatedBuiltinCode keeps the older, smaller ones.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                names.add(code.CustomCode().decode())
            else:
                names.add(BUILTIN_NAMES[builtin])
    return sorted(names)


def _generator(clips: list[Clip] | None) -> Callable[[], Iterator[Clip]]:
    def generate() -> Iterator[Clip]:
        for clip in clips or []:
            yield {name: value.astype(np.uint8 if name == "frames" else np.float32) for name, value in clip.items()}

    return generate
