"""One ``Predictor`` interface over every runtime: Keras model, SavedModel, TFLite (LiteRT), TF Serving, and the
built-in pretrained per-frame face-age network (``face-age-v1``, on Keras or, from its TFLite export, on LiteRT).

Every predictor takes ``frames`` uint8 (B, T, S, S, 3) aligned RGB crops and ``mask`` float32 (B, T)
(1 = real frame, 0 = padding at the end of a clip), and for a model that reads the landmark stream
(``spec.landmark_points`` K > 0) ``landmarks`` float32 (B, T, K, 2) and ``landmark_mask`` float32 (B, T)
(1 = the face mesh found the face); it returns ``age`` (B,), ``temporal_attention``
(B, T) and, when the model has it, ``spatial_attention`` (B, T, h, w). Inputs are validated first,
so a wrong dtype or shape is a ``ValueError`` naming the problem. ``spec`` is the model's
``DeploymentSpec`` (crop size, T, alignment template): from the model and its run config (Keras), the
SavedModel's assets or the TFLite sidecar.

This module imports no TensorFlow at load time; the TFLite predictor runs with LiteRT alone. By default
``open_predictor`` answers with the newest run's own float32 TFLite export (same windows, flip, interval
and model card as its Keras model, within float32 parity), so the usual ``predict`` never loads TensorFlow.
The export is matched to the run by the sha256 of its model.keras, so a run moved or copied with its export
still finds it; when none matches, Keras answers and stderr says why in one line.

Example:
    >>> predictor = open_predictor(model="exported/tflite/siam/1/float32.tflite")
    >>> predictor.predict(frames, mask)["age"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.inference.face_age import FACE_AGE_VALUES, face_age_spec
from age_estimation.inference.run_exports import find_tflite_export, run_spec
from age_estimation.inference.spec import DeploymentSpec, read_spec, sidecar_path
from age_estimation.logs import native_logs_hidden
from age_estimation.runs import (
    MODEL_NAME,
    latest_run,
)
from age_estimation.video.face_models import AssetError

SpecLike = DeploymentSpec | Mapping[str, Any] | None
OUTPUTS = ("age", "temporal_attention", "spatial_attention")
LANDMARK_INPUTS = ("landmarks", "landmark_mask")  # the landmark stream's inputs, beside frames and mask
# Built-in pretrained models ``open_predictor(model=NAME)`` takes by name (inference/face_age.py).
PRETRAINED_NAMES = ("face-age-v1",)
FACE_AGE_CACHE_FRAMES = 512  # per-frame ages kept for frames that a later overlapping window holds again


class Predictor:
    """Base class: ``predict(frames, mask)`` on aligned clips; subclasses implement ``_run``."""

    name = "base"

    def __init__(self, spec: SpecLike = None) -> None:
        self.spec = as_spec(spec)

    @property
    def crop_size(self) -> int | None:
        """The aligned crop size the model needs, when known."""
        return self.spec.crop_size

    @property
    def clip_length(self) -> int | None:
        """The fixed T of the model (TFLite), or None when any T works."""
        return self.spec.clip_length

    @property
    def landmark_points(self) -> int:
        """K of the landmark stream the model reads; 0 when it reads none."""
        return int(self.spec.landmark_points or 0)

    def predict(
        self,
        frames: np.ndarray,
        mask: np.ndarray | None = None,
        test_time_flip: bool | None = None,
        landmarks: np.ndarray | None = None,
        landmark_mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Ages and attention for a batch of aligned clips (see the module docstring for shapes).

        With ``test_time_flip`` (default: the spec's), the age is the mean over each clip and its
        mirror image; the attention maps are those of the clip as given. False = one forward pass.
        The mirror image keeps the landmarks: the model reads them through flip-invariant features.
        A padding frame has no landmarks whatever ``landmark_mask`` says there: the model masks it by ``mask``.
        """
        frames, mask = validate_clips(frames, mask, self.crop_size, self.clip_length)
        clips = {"frames": frames, "mask": mask}
        if self.landmark_points:
            clips.update(validate_landmarks(landmarks, landmark_mask, frames.shape[:2], self.landmark_points))
        out = self._run(clips)
        result = {"age": np.asarray(out["age"], np.float32).reshape(len(frames))}
        if bool(self.spec.test_time_flip) if test_time_flip is None else test_time_flip:
            mirrored = self._run({**clips, "frames": np.ascontiguousarray(frames[:, :, :, ::-1])})
            mirrored_age = np.asarray(mirrored["age"], np.float32).reshape(len(frames))
            result["flip_gap"] = np.abs(result["age"] - mirrored_age)
            result["age"] = (result["age"] + mirrored_age) / 2
        for name in OUTPUTS[1:]:
            if name in out:
                result[name] = np.asarray(out[name], np.float32)[:, : frames.shape[1]]
        return result

    def _run(self, clips: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model's outputs for validated ``clips`` (``frames``, ``mask`` and, when read, the landmarks)."""
        raise NotImplementedError


def as_spec(spec: SpecLike, base: DeploymentSpec | None = None) -> DeploymentSpec:
    """``spec`` as a ``DeploymentSpec``: a mapping names fields to set on ``base`` (default: an empty spec)."""
    if isinstance(spec, DeploymentSpec):
        return spec
    return (base or DeploymentSpec()).updated(spec)


def validate_clips(
    frames: Any, mask: Any, crop_size: int | None = None, clip_length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check clips are uint8 (B, T, S, S, 3) with a (B, T) 0/1 mask that has a real frame per clip."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB crops (0..255), got dtype {frames.dtype}")
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[2] != frames.shape[3]:
        raise ValueError(f"frames must be (B, T, S, S, 3) square RGB crops, got shape {frames.shape}")
    if crop_size and frames.shape[2] != crop_size:
        raise ValueError(
            f"frames are {frames.shape[2]}x{frames.shape[3]} crops; this model needs {crop_size}x{crop_size}"
        )
    if clip_length and frames.shape[1] > clip_length:
        raise ValueError(f"clips have {frames.shape[1]} frames; this model takes at most T={clip_length}")
    mask = np.ones(frames.shape[:2], np.float32) if mask is None else np.asarray(mask, np.float32)
    if mask.ndim == 1:
        mask = mask[None]
    if mask.shape != frames.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match frames (B, T) = {frames.shape[:2]}")
    if not np.isin(mask, (0.0, 1.0)).all() or (mask.sum(axis=1) < 1).any():
        raise ValueError("mask must be 0/1 with at least one real frame (1) per clip")
    return frames, mask


def validate_landmarks(
    landmarks: Any, landmark_mask: Any, batch_steps: tuple[int, int], points: int
) -> dict[str, np.ndarray]:
    """Check the landmark stream is float (B, T, K, 2) with a (B, T) 0/1 mask (default: every frame found)."""
    if landmarks is None:
        raise ValueError(f"this model reads the landmark stream: pass landmarks (B, T, {points}, 2) "
                         "and landmark_mask (B, T) with the frames")
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.ndim == 3:
        landmarks = landmarks[None]
    if landmarks.shape != (*batch_steps, points, 2):
        raise ValueError(f"landmarks must be (B, T, K, 2) = {(*batch_steps, points, 2)}, got {landmarks.shape}")
    found = np.ones(batch_steps, np.float32) if landmark_mask is None else np.asarray(landmark_mask, np.float32)
    if found.ndim == 1:
        found = found[None]
    if found.shape != batch_steps or not np.isin(found, (0.0, 1.0)).all():
        raise ValueError(f"landmark_mask must be 0/1 of shape (B, T) = {batch_steps}, got {found.shape}")
    return {"landmarks": landmarks, "landmark_mask": found}


def lengths_from_mask(mask: np.ndarray) -> np.ndarray:
    """Clip lengths (B,) int32 from a mask whose padding is at the end; an error for holes."""
    lengths = mask.sum(axis=1).astype(np.int32)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    if not np.array_equal(prefix, mask > 0):
        raise ValueError("SavedModel and TF Serving take lengths: padding must come after the real frames")
    return lengths


def padded_request(clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs of the exported ``padded`` signature for validated ``clips``: frames, lengths, the landmark stream."""
    stream = {name: clips[name] for name in LANDMARK_INPUTS if name in clips}
    return {"frames": clips["frames"], "lengths": lengths_from_mask(clips["mask"]), **stream}


class KerasPredictor(Predictor):
    """A ``Siam`` model (or its ``.keras`` file, with the run's config.yaml beside it) and its spec.

    The spec is the model's facts plus the run config's window and alignment; a mapping ``spec`` sets
    fields on that (``{"test_time_flip": False}``), a ``DeploymentSpec`` replaces it.
    """

    name = "keras"

    def __init__(self, model: Any, spec: SpecLike = None) -> None:
        if isinstance(model, (str, Path)):
            # Keras (and TensorFlow under it) loads only here, so the LiteRT path never imports it.
            from age_estimation.models.siam.model import load_siam

            path = Path(model)
            model = load_siam(path)
            base = run_spec(path.parent).with_model(model)
        else:
            base = DeploymentSpec().with_model(model)
        super().__init__(as_spec(spec, base))
        self.model = model

    def _run(self, clips: dict[str, np.ndarray]) -> dict[str, Any]:
        out = self.model.predict_on_batch({name: clips[name] for name in self.model.input})
        return {name: np.asarray(value) for name, value in out.items()}


class FaceAgePredictor(Predictor):
    """``face-age-v1`` on Keras, or its TFLite export on LiteRT: each frame's expected age, averaged over a
    window's real frames.

    The network reads one dlib-framed 64x64 chip at a time (spec and model card: ``inference/face_age.py``).
    ``predict(frames, mask)`` returns ``age`` (B,), the mean of the per-frame expected ages where ``mask``
    is 1, and a uniform ``temporal_attention`` (B, T) over those frames. ``frame_ages`` and
    ``frame_probabilities`` give the per-frame figures (what the parity checks compare with onnxruntime).
    With ``tflite`` (a file of ``export/face_age.py``) LiteRT runs it and its sidecar is the spec: no TensorFlow.
    """

    name = "face-age-v1"

    def __init__(
        self, name: str = "face-age-v1", batch_frames: int = 128, tflite: str | Path | None = None,
        num_threads: int = 2,
    ) -> None:
        self.batch_frames = batch_frames
        self._age_values = np.asarray(FACE_AGE_VALUES, np.float64)
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        if tflite is not None:
            self.path = Path(tflite)
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: TFLite model file not found")
            spec = DeploymentSpec.read(sidecar_path(self.path)).require("model_name", "tflite_variant", "align")
            super().__init__(spec)
            self.name = f"{spec.model_name}-tflite-{spec.tflite_variant}"
            runner = open_tflite(self.path, num_threads)
            self._forward = lambda chips: runner(chips=chips.astype(np.uint8, copy=False))["probabilities"]
            return
        # Keras (and TensorFlow under it) loads only here, like the Keras predictor.
        from age_estimation.models.face_age.pretrained import load_face_age

        super().__init__(face_age_spec(name))
        try:
            self.model = load_face_age(name)
        except AssetError as err:  # the CLI reports a missing file as a setup error, without a traceback
            raise FileNotFoundError(str(err)) from err
        self._forward = lambda chips: self.model.predict_on_batch(chips.astype(np.float32))

    def frame_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(N, 81) float32 softmax of (N, 64, 64, 3) uint8 RGB chips."""
        frames = np.asarray(frames)
        out = [np.asarray(self._forward(np.ascontiguousarray(frames[i: i + self.batch_frames])), np.float32)
               for i in range(0, len(frames), self.batch_frames)]
        return np.concatenate(out) if out else np.zeros((0, len(self._age_values)), np.float32)

    def frame_ages(self, frames: np.ndarray) -> np.ndarray:
        """(N,) expected ages in years of (N, 64, 64, 3) uint8 RGB chips (recent frames from the cache)."""
        keys = [hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=16).digest() for f in frames]
        todo = sorted({i for i, key in enumerate(keys) if key not in self._cache})
        if todo:
            ages = self.frame_probabilities(np.stack([frames[i] for i in todo])).astype(np.float64) @ self._age_values
            for index, age in zip(todo, ages):
                self._cache[keys[index]] = float(age)
        out = np.array([self._cache[key] for key in keys], np.float64)
        for key in keys:
            self._cache.move_to_end(key)
        while len(self._cache) > FACE_AGE_CACHE_FRAMES:
            self._cache.popitem(last=False)
        return out

    def _run(self, clips: dict[str, np.ndarray]) -> dict[str, Any]:
        frames, mask = clips["frames"], clips["mask"]
        batch, steps = mask.shape
        ages = self.frame_ages(frames.reshape(batch * steps, *frames.shape[2:])).reshape(batch, steps)
        weights = mask / mask.sum(axis=1, keepdims=True)
        return {"age": (ages * weights).sum(axis=1).astype(np.float32), "temporal_attention": weights}


class SavedModelPredictor(Predictor):
    """An exported SavedModel (a version folder, or the model folder: the newest version) via ``padded``."""

    name = "savedmodel"

    def __init__(self, path: str | Path) -> None:
        # TensorFlow loads only here, so the LiteRT path never imports it.
        import tensorflow as tf

        path = resolve_savedmodel(path)
        super().__init__(read_spec(path))
        self.path = path
        self._fn = tf.saved_model.load(str(path)).signatures["padded"]

    def _run(self, clips: dict[str, np.ndarray]) -> dict[str, Any]:
        out = self._fn(**padded_request(clips))
        return {name: value.numpy() for name, value in out.items()}


class TFLitePredictor(Predictor):
    """A TFLite variant run by LiteRT (batch 1, fixed T: shorter clips are padded and masked)."""

    name = "tflite"

    def __init__(self, path: str | Path, num_threads: int = 2) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: TFLite model file not found")
        self.path = path
        self.num_threads = num_threads
        self.delegate = "xnnpack"
        self._runner = self._open(default_delegates=True)
        frames = self._runner.get_input_details()["frames"]["shape"]
        spec = DeploymentSpec.read(sidecar_path(path))
        crop_size = spec.crop_size or int(frames[2])
        super().__init__(dataclasses.replace(spec, crop_size=crop_size, clip_length=int(frames[1])))

    def _open(self, default_delegates: bool) -> Any:
        return open_tflite(self.path, self.num_threads, default_delegates)

    def _run(self, clips: dict[str, np.ndarray]) -> dict[str, Any]:
        steps, names = self.clip_length, list(self._runner.get_input_details())
        results = []
        for index in range(len(clips["frames"])):
            padded = {}
            for name in names:
                value = clips[name][index]
                padded[name] = np.zeros((1, steps, *value.shape[1:]), value.dtype)
                padded[name][0, : len(value)] = value
            results.append(self._invoke(padded))
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def _invoke(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self._runner(**inputs)
        except RuntimeError as err:
            # XNNPACK cannot prepare some fully-int8 graphs; LiteRT's builtin kernels run them.
            if self.delegate != "xnnpack" or "delegate" not in str(err).lower():
                raise
            self.delegate = "none"
            self._runner = self._open(default_delegates=False)
            return self._runner(**inputs)


class ServingPredictor(Predictor):
    """A model on a TF Serving server (REST or gRPC by URL scheme) via the ``padded`` signature."""

    name = "serving"

    def __init__(self, url: str, model_name: str = "siam", spec: SpecLike = None) -> None:
        # The HTTP/gRPC client stack loads only for a served model; it slows every other predict's start-up.
        from age_estimation.inference.serving_client import ServingClient

        super().__init__(spec)
        self.client = ServingClient(
            url, model_name=model_name, crop_size=self.crop_size, landmark_points=self.landmark_points
        )

    def _run(self, clips: dict[str, np.ndarray]) -> dict[str, Any]:
        return self.client.predict(padded_request(clips), signature="padded")


def open_tflite(path: str | Path, num_threads: int = 2, default_delegates: bool = True) -> Any:
    """LiteRT's ``serving_default`` signature runner of a ``.tflite`` file (XNNPACK unless ``default_delegates``
    is False)."""
    # LiteRT loads only for TFLite models (it is an optional dependency of the other runtimes).
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if default_delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with native_logs_hidden():  # LiteRT prints its delegate set-up straight to fd 2, at the first allocation
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        return interpreter.get_signature_runner("serving_default")


def resolve_savedmodel(path: str | Path) -> Path:
    """A SavedModel version folder from ``path`` (the newest integer version of a model folder)."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = (
        sorted(
            (p for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file()),
            key=lambda p: int(p.name),
        )
        if path.is_dir()
        else []
    )
    if not versions:
        raise FileNotFoundError(f"{path}: no SavedModel here (no saved_model.pb, no numbered version folder)")
    return versions[-1]


def open_predictor(
    model: str | Path | None = None,
    server: str | None = None,
    run_dir: str | Path | None = None,
    runs_dir: str | Path = "runs",
    num_threads: int = 2,
) -> Predictor:
    """The predictor asked for: ``server`` URL, ``model`` a built-in name (``face-age-v1``) or a path by kind,
    else the run's (``run_dir``, default
    the newest under ``runs_dir``) exported float32 TFLite file when ``find_tflite_export`` finds one, else
    its ``model.keras``, saying on stderr in one line why the run's export was not used."""
    if server:
        spec = run_spec(Path(run_dir)) if run_dir else DeploymentSpec()
        return ServingPredictor(server, model_name=spec.model_name, spec=spec)
    if model and str(model) in PRETRAINED_NAMES and not Path(model).exists():
        return FaceAgePredictor(str(model))  # a built-in pretrained model, by name
    if model:
        path = Path(model)
        if path.suffix == ".tflite":
            name = DeploymentSpec.read(sidecar_path(path)).model_name  # a face-age export's sidecar names it
            if name in PRETRAINED_NAMES:
                return FaceAgePredictor(name, tflite=path, num_threads=num_threads)
            return TFLitePredictor(path, num_threads=num_threads)
        if path.suffix == ".keras":
            return KerasPredictor(path)
        if path.is_dir():
            return SavedModelPredictor(path)
        raise ValueError(f"{path}: not a .keras file, a .tflite file or a SavedModel folder")
    run = Path(run_dir) if run_dir else latest_run(runs_dir)
    found = find_tflite_export(run)
    if found.path is not None:
        return TFLitePredictor(found.path, num_threads=num_threads)
    print(f"note: {run}: {found.reason}; predicting with its {MODEL_NAME} on Keras (slower start, "
          "TensorFlow)",
          file=sys.stderr, flush=True)
    return KerasPredictor(run / MODEL_NAME)
