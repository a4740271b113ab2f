"""``DeploymentSpec``: what a deployed model needs beside its weights, in one typed, JSON-ready record.

Input shapes, the alignment template, the prediction window and normalisation, the least face a video
needs, the calibrated interval and the model card. Export writes it (a
SavedModel keeps it in ``assets.extra/input_spec.json`` of each version, a TFLite variant in the JSON
sidecar ``<variant>.json`` with its ``tflite_*`` keys) and every runtime reads it back through
``DeploymentSpec.from_json``, which also reads specs that lack keys (the missing ones stay None and
``require`` names the file and what to re-export). No TensorFlow here: the edge path reads sidecars.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from age_estimation.config import AlignConfig, PipelineConfig, QualityConfig, from_dict
from age_estimation.inference.interval import IntervalCalibration
from age_estimation.inference.model_card import ModelCard
from age_estimation.inference.quality import FaceRanges
from age_estimation.video.align import template_eyes
from age_estimation.video.landmark_set import LANDMARK_COUNT

SPEC_NAME = "input_spec.json"
SPEC_DIR = "assets.extra"
FORMAT = 1
NORMALIZATION = {
    "symmetric": "inside the model: x / 127.5 - 1; feed raw 0..255 RGB",
    "raw": "inside the model: none (0..255 floats); feed raw 0..255 RGB",
}
TFLITE_KEYS = ("tflite_variant", "quantization", "signature", "ops")
# Files a finished run directory holds beside its model, written at the end of training.
INTERVAL_NAME = "interval.json"
MODEL_CARD_NAME = "model_card.json"
FACE_RANGES_NAME = "face_ranges.json"
# Fields that describe one trained model, never filled in from another run's or a config's spec.
OWN_FIELDS = ("interval", "model_card", "face_ranges", "run")


@dataclasses.dataclass(frozen=True)
class DeploymentSpec:
    """One deployed model's input/output contract; the field order is the JSON key order."""

    format: int = FORMAT
    model_name: str = "siam"
    variant: str | None = None
    crop_size: int | None = None
    clip_length: int | None = None  # the model's fixed T (TFLite), None = any T
    landmark_points: int | None = None  # K of the landmark stream the model reads (0/None: pixels only)
    window: int | None = None  # frames per prediction window (data.clip_length)
    window_span: int | None = None  # source frames one window covers
    test_time_flip: bool | None = None
    min_face_fraction: float | None = None  # least share of decoded frames with a face (inference.*)
    quality: QualityConfig | None = None  # when predict refuses a video's face (inference.quality)
    face_ranges: FaceRanges | None = None  # the face measures' range over the model's training videos
    batch_size: int | None = None
    inputs: dict[str, Any] | None = None
    normalization: str | None = None
    outputs: dict[str, Any] | None = None
    align: AlignConfig | None = None
    template_eyes: list[list[float]] | None = None
    interval: IntervalCalibration | None = None  # None: exported before intervals
    model_card: ModelCard | None = None
    run: dict[str, Any] | None = None  # the run exported: {"path", "model_sha256"}; predict finds its export by it
    tflite_variant: str | None = None
    quantization: str | None = None
    signature: str | None = None
    ops: list[str] | None = None
    origin: str = dataclasses.field(default="", compare=False)  # the file it was read from, for errors

    @classmethod
    def from_config(cls, cfg: PipelineConfig, model: Any = None) -> Self:
        """The spec of ``model`` (a ``Siam``: crop size, T, batch, variant, landmark stream, normalisation,
        attention grid) deployed with ``cfg`` (model name, window, test-time flip, alignment). Without a
        model the crop size, variant and landmark stream come from ``cfg``."""
        spec = cls(
            model_name=cfg.export.model_name,
            variant=cfg.model.variant,
            crop_size=cfg.align.crop_size,
            landmark_points=LANDMARK_COUNT if cfg.model.reads_landmarks else 0,
            window=cfg.data.clip_length,
            window_span=cfg.inference.window_span,
            test_time_flip=cfg.inference.test_time_flip,
            min_face_fraction=cfg.inference.min_face_fraction,
            quality=dataclasses.replace(cfg.inference.quality),
            align=dataclasses.replace(cfg.align),
            template_eyes=np.asarray(template_eyes(cfg.align), dtype=float).round(3).tolist(),
            origin=cfg.source_file or "pipeline config",
        )
        return spec.with_model(model) if model is not None else spec

    def with_model(self, model: Any) -> Self:
        """This spec with the facts ``model`` (a ``Siam``) carries, and its inputs/outputs described.

        A model without those facts (a plain Keras model) leaves the spec as it is.
        """
        if getattr(model, "crop_size", None) is None:
            return self
        crop, steps, batch = model.crop_size, model.clip_length, model.batch_size
        points = model.landmark_points if model.reads_landmarks else 0
        return dataclasses.replace(
            self,
            variant=model.variant,
            landmark_points=points,
            crop_size=crop,
            clip_length=steps,
            batch_size=batch,
            normalization=NORMALIZATION[model.normalization],
            inputs=describe_inputs(crop, steps, batch, points),
            outputs=describe_outputs(steps, batch, model.spatial_grid),
        )

    def with_run_files(self, run_dir: str | Path) -> Self:
        """This spec with the interval, model card and face ranges a finished run directory holds (when it
        has them)."""
        run_dir = Path(run_dir)
        found: dict[str, Any] = {}
        for name, filename in (("interval", INTERVAL_NAME), ("model_card", MODEL_CARD_NAME),
                               ("face_ranges", FACE_RANGES_NAME)):
            path = run_dir / filename
            if path.is_file():
                found[name] = _parsed(name, json.loads(path.read_text()), str(path))
        return dataclasses.replace(self, **found)

    def updated(self, changes: Mapping[str, Any] | None) -> Self:
        """A copy with ``changes`` (spec field -> value) applied; an unknown field is a ``ValueError``."""
        if not changes:
            return self
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"not deployment spec fields: {unknown}")
        return dataclasses.replace(self, **_typed(dict(changes), self.origin))

    def filled_from(self, fallback: DeploymentSpec) -> Self:
        """This spec with every field it lacks (None) taken from ``fallback``, except the interval and
        model card: those of another model would describe the wrong one."""
        missing = {
            f.name: getattr(fallback, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is None and f.name not in ("origin", *OWN_FIELDS)
        }
        return dataclasses.replace(self, **missing)

    def require(self, *names: str) -> Self:
        """This spec, or a ``ValueError`` naming the file and the fields it lacks, to re-export it."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            where = self.origin or "the model's deployment spec"
            raise ValueError(f"{where}: lacks {', '.join(missing)}; re-export the model (age-estimation export)")
        return self

    def to_json(self) -> dict[str, Any]:
        """The JSON object export writes; the TFLite keys and the run link only when set."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "origin" or (f.name in (*TFLITE_KEYS, "run") and value is None):
                continue
            if isinstance(value, (AlignConfig, QualityConfig)):
                value = dataclasses.asdict(value)
            elif isinstance(value, (IntervalCalibration, ModelCard, FaceRanges)):
                value = value.to_json()
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], origin: str = "") -> Self:
        """The spec of a JSON object written by ``to_json`` (or by an older export: absent keys stay None)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"origin"}
        return cls(**_typed({k: v for k, v in raw.items() if k in names}, origin), origin=origin)

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """The spec in a JSON file; a missing file gives an empty spec whose errors name that file."""
        path = Path(path)
        raw = json.loads(path.read_text()) if path.is_file() else {}
        return cls.from_json(raw, origin=str(path))


def run_link(run_dir: str | Path, model_file: str) -> dict[str, Any]:
    """The ``run`` field of an export: the run directory and the sha256 of the model file exported."""
    run_dir = Path(run_dir).resolve()
    return {"path": str(run_dir), "model_sha256": hashlib.sha256((run_dir / model_file).read_bytes()).hexdigest()}


def read_spec(version_dir: str | Path) -> DeploymentSpec:
    """The spec stored with an exported SavedModel version."""
    return DeploymentSpec.read(Path(version_dir) / SPEC_DIR / SPEC_NAME)


def sidecar_path(tflite_path: str | Path) -> Path:
    """The JSON sidecar beside a ``.tflite`` variant."""
    return Path(tflite_path).with_suffix(".json")




def describe_inputs(
    crop: int, clip_length: int | None, batch_size: int | None, landmark_points: int = 0
) -> dict[str, Any]:
    """The ``inputs`` entry: frames and mask (and the landmark stream when read) dtypes, shapes and meaning."""
    inputs: dict[str, Any] = {
        "frames": {
            "dtype": "uint8",
            "shape": [batch_size, clip_length, crop, crop, 3],
            "layout": "RGB face crops aligned by the template below",
        },
        "mask": {
            "dtype": "float32",
            "shape": [batch_size, clip_length],
            "meaning": "1 = real frame, 0 = padding (TFLite and Keras); SavedModel uses lengths",
        },
    }
    if landmark_points:
        inputs["landmarks"] = {
            "dtype": "float32",
            "shape": [batch_size, clip_length, landmark_points, 2],
            "layout": "face-mesh points of each frame (video/landmark_set.py order) in the aligned template, "
                      "centred on the eye midpoint, in eye distances",
        }
        inputs["landmark_mask"] = {
            "dtype": "float32",
            "shape": [batch_size, clip_length],
            "meaning": "1 = the face mesh found the face in that frame, 0 = not found or padding",
        }
    return inputs


def describe_outputs(
    clip_length: int | None, batch_size: int | None, grid: tuple[int, int] | None
) -> dict[str, Any]:
    """The ``outputs`` entry: age, temporal attention and (with a grid) spatial attention."""
    outputs: dict[str, Any] = {
        "age": {"dtype": "float32", "shape": [batch_size], "unit": "years"},
        "temporal_attention": {
            "dtype": "float32",
            "shape": [batch_size, clip_length],
            "meaning": "weight of each frame; sums to 1 over real frames",
        },
    }
    if grid is not None:
        outputs["spatial_attention"] = {
            "dtype": "float32",
            "shape": [batch_size, clip_length, *grid],
            "meaning": "weight of each facial region per frame (grid over the crop)",
        }
    return outputs


def _typed(values: dict[str, Any], origin: str) -> dict[str, Any]:
    """``values`` with ``align``, ``quality``, ``interval`` and ``model_card`` as their types (dicts from JSON are checked)."""
    if isinstance(values.get("align"), Mapping):
        values["align"] = from_dict(AlignConfig, dict(values["align"]), origin or "deployment spec", "align.")
    if isinstance(values.get("quality"), Mapping):
        values["quality"] = from_dict(QualityConfig, dict(values["quality"]), origin or "deployment spec",
                                      "quality.")
    for name in ("interval", "model_card", "face_ranges"):
        if isinstance(values.get(name), Mapping):
            values[name] = _parsed(name, values[name], origin)
    return values


def _parsed(name: str, raw: Mapping[str, Any], origin: str) -> IntervalCalibration | ModelCard | FaceRanges:
    """The ``interval``, ``model_card`` or ``face_ranges`` of a JSON object; a bad one is a ``ValueError``
    naming the file."""
    kind = {"interval": IntervalCalibration, "model_card": ModelCard, "face_ranges": FaceRanges}[name]
    try:
        return kind.from_json(dict(raw))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{origin or 'deployment spec'}: {name}: {err}") from err
