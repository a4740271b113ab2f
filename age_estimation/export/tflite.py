"""TFLite export for edge and mobile: float32, float16, dynamic-range and full-int8 variants of SIAM.

Conversion (DESIGN §3): the trained weights go into a batch-1, fixed-T twin built with ``unroll=True``,
so the LSTM becomes plain ops (no WHILE loop: what the mobile GPU delegate supports, and what full-int8
quantisation needs); the twin is written as a SavedModel and converted from it. Each variant gets a
JSON sidecar (``<variant>.json``) with the input spec, normalisation, output names and the alignment
template. ``export_report`` measures parity against Keras, file sizes and LiteRT latency at 1 and 2 threads.

Layout: ``<export.directory>/tflite/<model_name>/<version>/{<variant>.tflite, <variant>.json, report.json}``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import PipelineConfig
from age_estimation.export.savedmodel import model_spec, next_version

VARIANTS = ("float32", "float16", "dynamic_range", "int8")
DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, float32 compute",
    "dynamic_range": "int8 weights (tensors of 1024+ values), float activations",
    "int8": "int8 weights and activations (calibrated on cache clips), float32 inputs and outputs",
}
Clip = dict[str, np.ndarray]


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


def fixed_twin(model: Any, cfg: PipelineConfig) -> Any:
    """A batch-1, T = ``data.clip_length``, unrolled-RNN copy of ``model`` holding the same weights."""
    from age_estimation.models.siam.model import build_siam

    twin = build_siam(
        dataclasses.replace(cfg.model, unroll=True),
        crop_size=cfg.align.crop_size,
        clip_length=cfg.data.clip_length,
        batch_size=1,
        age_prior=age_prior_of(model),
    )
    twin.set_weights(model.get_weights())
    return twin


def age_prior_of(model: Any) -> tuple[float, float]:
    """The (mean, std) age prior baked into ``model``'s output rescaling (a config value, not a weight)."""
    head = model.get_layer("age").get_config()
    return float(head["offset"]), float(head["scale"])


def convert(
    saved_model_dir: str | Path, variant: str, representative: Callable[[], Iterator[Clip]] | None = None
) -> bytes:
    """Convert a batch-1 SavedModel to the TFLite flatbuffer of ``variant``."""
    import tensorflow as tf

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
    return converter.convert()


def export_tflite(
    model: Any,
    cfg: PipelineConfig,
    directory: str | Path | None = None,
    variants: list[str] | None = None,
    representative: list[Clip] | None = None,
    version: int | None = None,
) -> list[TFLiteArtifact]:
    """Write each variant (default ``export.tflite_variants``) with its sidecar into a new version folder.

    ``representative`` clips calibrate int8; when None they are read from the prepared cache
    (``export.representative_clips`` clips), and a missing cache is a clear error before any conversion.
    """
    variants = list(variants or cfg.export.tflite_variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"export.tflite_variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if "int8" in variants and representative is None:
        representative = cache_clips(cfg, cfg.export.representative_clips, purpose="int8 calibration")[0]
    base = tflite_dir(cfg, directory)
    base.mkdir(parents=True, exist_ok=True)
    version = version or next_version(base)
    out_dir = base / str(version)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: TFLite version {version} exists already; not overwriting it")
    twin = fixed_twin(model, cfg)
    spec = model_spec(twin, cfg, clip_length=cfg.data.clip_length, batch_size=1)
    artifacts = []
    work = Path(tempfile.mkdtemp(prefix="siam-tflite-"))
    try:
        twin.export(str(work / "twin"), verbose=False)
        for variant in variants:
            data = convert(work / "twin", variant, _generator(representative) if variant == "int8" else None)
            artifacts.append(_write_variant(out_dir, variant, data, spec))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return artifacts


def _write_variant(out_dir: Path, variant: str, data: bytes, spec: dict[str, Any]) -> TFLiteArtifact:
    path = out_dir / f"{variant}.tflite"
    write_bytes_atomic(path, data)
    ops = list_ops(path)
    sidecar = path.with_suffix(".json")
    write_json_atomic(
        sidecar,
        {
            **spec,
            "tflite_variant": variant,
            "quantization": DESCRIPTIONS[variant],
            "signature": "serving_default",
            "ops": ops,
        },
    )
    return TFLiteArtifact(variant, path, sidecar, path.stat().st_size, ops)


def list_ops(path: str | Path) -> list[str]:
    """The distinct builtin op names in a TFLite file (from LiteRT's op details)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def cache_clips(
    cfg: PipelineConfig, count: int, purpose: str, heldout_first: bool = False
) -> tuple[list[Clip], list[float], int]:
    """Up to ``count`` batch-1 clips of T frames from the cache, their ages, and how many are held out.

    Calibration draws from the development side; parity (``heldout_first``) takes the held-out videos
    first and fills up with development ones. A missing cache is a ``FileNotFoundError`` naming ``purpose``.
    """
    from age_estimation.data.cache import read_index
    from age_estimation.data.pipeline import build_dataset
    from age_estimation.data.splits import heldout_split

    cache_dir = Path(cfg.data.cache_dir)
    try:
        index = read_index(cache_dir)
    except (FileNotFoundError, ValueError) as err:
        raise FileNotFoundError(f"{purpose} needs clips from the prepared cache: {err}") from err
    try:
        dev, heldout = heldout_split(index, cfg.data.heldout_fraction, cfg.data.split_seed)
    except ValueError:
        dev, heldout = sorted(index.get("videos", {})), []
    ids = (heldout + dev) if heldout_first else (dev + heldout)
    ids = ids[:count]
    if not ids:
        raise FileNotFoundError(f"{purpose} needs clips, but the cache at {cache_dir} lists no videos")
    data = dataclasses.replace(cfg.data, batch_size=1)
    clips, ages = [], []
    for inputs, targets in build_dataset(cache_dir, ids, data, training=False).as_numpy_iterator():
        clips.append({"frames": inputs["frames"], "mask": inputs["mask"].astype(np.float32)})
        ages.append(float(targets["age"][0, 0]))
    held = sum(1 for vid in ids if vid in set(heldout)) if heldout_first else 0
    return clips, ages, held


def export_report(
    model: Any,
    artifacts: list[TFLiteArtifact],
    clips: list[Clip],
    ages: list[float] | None = None,
    heldout: int = 0,
    threads: tuple[int, ...] = (1, 2),
    runs: int = 20,
) -> dict[str, Any]:
    """Parity vs Keras on ``clips`` (max |age diff|; MAE change on the first ``heldout`` when ``ages`` is
    given), file size, op list and median LiteRT latency per variant and thread count; one forward pass
    per clip on both sides (no test-time flip), so the figures measure the conversion alone."""
    from age_estimation.inference.runtimes import TFLitePredictor

    reference = np.array([float(np.asarray(model(clip, training=False)["age"]).ravel()[0]) for clip in clips])
    truth = np.asarray(ages[:heldout], dtype=float) if ages and heldout else None
    report: dict[str, Any] = {
        "parity_clips": len(clips),
        "heldout_clips": heldout if truth is not None else 0,
        "variants": {},
    }
    if truth is not None:
        report["keras_heldout_mae"] = float(np.mean(np.abs(reference[:heldout] - truth)))
    for artifact in artifacts:
        predictor = TFLitePredictor(artifact.path, num_threads=max(threads))
        got = np.array([predictor.predict(c["frames"], c["mask"], test_time_flip=False)["age"][0] for c in clips])
        entry: dict[str, Any] = {
            "path": str(artifact.path),
            "size_bytes": artifact.size_bytes,
            "max_abs_diff_years": float(np.max(np.abs(got - reference))),
            "mean_abs_diff_years": float(np.mean(np.abs(got - reference))),
            "delegate": predictor.delegate,
            "ops": artifact.ops,
            "latency_ms": {str(n): measure_latency(artifact.path, clips[0], n, runs) for n in threads},
        }
        if truth is not None:
            mae = float(np.mean(np.abs(got[:heldout] - truth)))
            entry["heldout_mae"] = mae
            entry["mae_change_years"] = mae - report["keras_heldout_mae"]
        report["variants"][artifact.variant] = entry
    return report


def measure_latency(path: str | Path, clip: Clip, num_threads: int, runs: int = 20) -> float:
    """Median milliseconds of one LiteRT call on ``clip`` with ``num_threads`` threads (after warm-up)."""
    from age_estimation.inference.runtimes import TFLitePredictor

    predictor = TFLitePredictor(path, num_threads=num_threads)
    for _ in range(3):
        predictor.predict(clip["frames"], clip["mask"], test_time_flip=False)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        predictor.predict(clip["frames"], clip["mask"], test_time_flip=False)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def format_table(report: dict[str, Any]) -> str:
    """The size / parity / latency table of ``export_report`` as aligned text."""
    threads = sorted({t for v in report["variants"].values() for t in v["latency_ms"]}, key=int)
    header = ["variant", "size KiB", "max|diff| y", "MAE change y"] + [f"ms @{t} thr" for t in threads]
    rows = [header]
    for name, v in report["variants"].items():
        change = v.get("mae_change_years")
        rows.append(
            [
                name,
                f"{v['size_bytes'] / 1024:.1f}",
                f"{v['max_abs_diff_years']:.4g}",
                "-" if change is None else f"{change:+.3f}",
            ]
            + [f"{v['latency_ms'][t]:.2f}" for t in threads]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    """Save the report as ``report.json`` beside the variants."""
    path = Path(out_dir) / "report.json"
    write_json_atomic(path, json.loads(json.dumps(report)))
    return path


def _generator(clips: list[Clip] | None) -> Callable[[], Iterator[Clip]]:
    def generate() -> Iterator[Clip]:
        for clip in clips or []:
            yield {"frames": clip["frames"].astype(np.uint8), "mask": clip["mask"].astype(np.float32)}

    return generate
