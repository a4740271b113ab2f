"""SavedModel export in TF Serving's versioned layout (``<directory>/<model_name>/<version>/``).

Signatures (all method ``tensorflow/serving/predict``; TF Serving has no optional inputs, so padding
gets its own signature instead of an optional argument):

- ``serving_default``: ``frames`` uint8 (B, T, S, S, 3) aligned RGB crops, every frame real.
- ``padded``: ``frames`` as above plus ``lengths`` int32 (B,): frames at or after ``lengths[b]`` are padding.
- ``jpeg`` (when ``export.jpeg_signature``): ``jpeg_frames`` string (B, T) of JPEG-encoded S x S aligned
  crops decoded in the graph; an empty string marks a padding frame. Keeps REST payloads small.

A model that reads the landmark stream (``model.dynamics``) takes, in each signature beside its frames,
``landmarks`` float32 (B, T, K, 2) and ``landmark_mask`` float32 (B, T) (1 = the face mesh found the face;
a padding frame counts as not found whatever is sent: the model masks it by ``mask``). Pixel-only models take frames alone. The
``dynamics_only`` ablation (no frames input) is not exported: ``check_exportable`` refuses it.

Each returns ``age`` float32 (B,), ``temporal_attention`` float32 (B, T) and, unless the model variant
has no spatial attention, ``spatial_attention`` float32 (B, T, h, w). Wrong dtypes are rejected by the
signatures' TensorSpecs; bad lengths or JPEG sizes fail with a message naming the problem.
``assets.extra/input_spec.json`` in each version holds the model's ``DeploymentSpec`` (input spec,
normalisation, alignment template, the calibrated interval and the model card).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import tensorflow as tf
from keras.export import ExportArchive

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import PipelineConfig
from age_estimation.inference.spec import SPEC_DIR, SPEC_NAME, DeploymentSpec
from age_estimation.models.siam.model import Siam


def next_version(base: str | Path) -> int:
    """The next TF Serving version number under ``base``: one more than the largest integer folder."""
    base = Path(base)
    versions = (
        [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    )
    return max(versions, default=0) + 1


def export_savedmodel(
    model: Siam, cfg: PipelineConfig, directory: str | Path | None = None, spec: DeploymentSpec | None = None
) -> Path:
    """Write ``model`` as the next version under ``<directory>/<model_name>/`` and return that folder.

    ``spec`` (default: ``cfg``'s) is the deployment spec to store, with the model's facts added; a run's
    spec (``DeploymentSpec.with_run_files``) brings its interval and model card.

    The version is written to a hidden temporary folder first and renamed into place, so TF Serving never
    sees a half-written version and an existing version is never overwritten.
    """
    check_exportable(model)
    base = Path(directory or cfg.export.directory) / cfg.export.model_name
    base.mkdir(parents=True, exist_ok=True)
    archive = ExportArchive()
    archive.track(model)
    for name, (fn, signature) in serving_functions(model, model.crop_size, cfg.export.jpeg_signature).items():
        archive.add_endpoint(name, fn, input_signature=signature)
    version = next_version(base)
    tmp = base / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        archive.write_out(str(tmp), verbose=False)
        stored = (spec or DeploymentSpec.from_config(cfg)).with_model(model)
        write_json_atomic(tmp / SPEC_DIR / SPEC_NAME, stored.to_json())
        return _publish(tmp, base, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_exportable(model: Any) -> None:
    """A ``ValueError`` before any work for a model the deployment formats cannot carry: one without frames."""
    if "frames" not in model.input:
        raise ValueError(f"variant {getattr(model, 'variant', model.name)} is an ablation model; "
                         "export a model with frames")


def serving_functions(model: Any, crop_size: int, jpeg: bool = True) -> dict[str, tuple[Any, list[Any]]]:
    """Signature name -> (function, input signature) for the serving endpoints of ``model``.

    Each function takes the landmark stream as trailing arguments; their specs join every signature only
    for a model that reads it, so a pixel-only model's signatures take frames alone.
    """
    frames_spec = tf.TensorSpec((None, None, crop_size, crop_size, 3), tf.uint8, name="frames")
    has_spatial = "spatial_attention" in model.output_names
    stream = landmark_specs(model)

    def run(
        frames: tf.Tensor, mask: tf.Tensor, landmarks: tf.Tensor | None, landmark_mask: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        inputs = {"frames": frames, "mask": mask}
        if landmarks is not None:
            checks = [
                tf.debugging.assert_equal(tf.shape(landmarks)[:2], tf.shape(mask),
                                          message="landmarks must be (B, T, K, 2) with the B and T of the frames"),
                tf.debugging.assert_equal(tf.shape(landmark_mask), tf.shape(mask),
                                          message="landmark_mask must be (B, T) with the B and T of the frames"),
            ]
            with tf.control_dependencies(checks):
                inputs.update(landmarks=tf.identity(landmarks), landmark_mask=tf.identity(landmark_mask))
        out = model(inputs, training=False)
        result = {"age": out["age"][:, 0], "temporal_attention": out["temporal_attention"]}
        if has_spatial:
            result["spatial_attention"] = out["spatial_attention"]
        return result

    def default(
        frames: tf.Tensor, landmarks: tf.Tensor | None = None, landmark_mask: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        return run(frames, tf.ones(tf.shape(frames)[:2], tf.float32), landmarks, landmark_mask)

    def padded(
        frames: tf.Tensor,
        lengths: tf.Tensor,
        landmarks: tf.Tensor | None = None,
        landmark_mask: tf.Tensor | None = None,
    ) -> dict[str, tf.Tensor]:
        steps = tf.shape(frames)[1]
        checks = [
            tf.debugging.assert_equal(
                tf.shape(lengths)[0],
                tf.shape(frames)[0],
                message="lengths must have one entry per clip in frames",
            ),
            tf.debugging.assert_greater_equal(lengths, 1, message="every clip needs lengths >= 1"),
            tf.debugging.assert_less_equal(lengths, steps, message="lengths must not exceed the T of frames"),
        ]
        with tf.control_dependencies(checks):
            mask = tf.sequence_mask(lengths, steps, dtype=tf.float32)
        return run(frames, mask, landmarks, landmark_mask)

    def from_jpeg(
        jpeg_frames: tf.Tensor, landmarks: tf.Tensor | None = None, landmark_mask: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        frames = decode_jpeg_frames(jpeg_frames, crop_size)
        mask = tf.cast(tf.strings.length(jpeg_frames) > 0, tf.float32)
        check = tf.debugging.assert_positive(
            tf.reduce_sum(mask, axis=1), message="every clip needs at least one non-empty JPEG frame"
        )
        with tf.control_dependencies([check]):
            return run(tf.identity(frames), mask, landmarks, landmark_mask)

    functions = {
        "serving_default": (default, [frames_spec, *stream]),
        "padded": (padded, [frames_spec, tf.TensorSpec((None,), tf.int32, name="lengths"), *stream]),
    }
    if jpeg:
        functions["jpeg"] = (from_jpeg, [tf.TensorSpec((None, None), tf.string, name="jpeg_frames"), *stream])
    return functions


def landmark_specs(model: Any) -> list[Any]:
    """The ``landmarks`` and ``landmark_mask`` TensorSpecs of a model that reads the stream; [] for one that does not."""
    if not getattr(model, "reads_landmarks", False):
        return []
    return [
        tf.TensorSpec((None, None, model.landmark_points, 2), tf.float32, name="landmarks"),
        tf.TensorSpec((None, None), tf.float32, name="landmark_mask"),
    ]


def decode_jpeg_frames(jpeg_frames: Any, crop_size: int) -> Any:
    """Decode a (B, T) string tensor of JPEG crops into (B, T, S, S, 3) uint8; empty strings become zeros."""
    def decode(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(data, channels=3)
        size_ok = tf.debugging.assert_equal(
            tf.shape(image)[:2],
            [crop_size, crop_size],
            message=f"each JPEG frame must be an aligned {crop_size}x{crop_size} crop",
        )
        with tf.control_dependencies([size_ok]):
            return tf.reshape(image, (crop_size, crop_size, 3))

    def one(data: tf.Tensor) -> tf.Tensor:
        return tf.cond(
            tf.strings.length(data) > 0,
            lambda: decode(data),
            lambda: tf.zeros((crop_size, crop_size, 3), tf.uint8),
        )

    flat = tf.reshape(jpeg_frames, [-1])
    decoded = tf.map_fn(one, flat, fn_output_signature=tf.TensorSpec((crop_size, crop_size, 3), tf.uint8))
    return tf.reshape(decoded, tf.concat([tf.shape(jpeg_frames), [crop_size, crop_size, 3]], axis=0))


def _publish(tmp: Path, base: Path, version: int) -> Path:
    """Rename ``tmp`` to the first free version folder from ``version`` on (never replacing one)."""
    while True:
        target = base / str(version)
        try:
            if target.exists():
                raise FileExistsError(target)
            os.rename(tmp, target)
            return target
        except (FileExistsError, OSError) as err:
            if not target.exists():
                raise RuntimeError(f"{target}: could not publish the export: {err}") from err
            version += 1
