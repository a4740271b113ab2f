"""SIAM's custom Keras layers, written with ``keras.ops`` only so they run on any Keras backend.

- ``SpatialAttention``: spatially-indexed attention; every position (i, j) of an aligned face's
  feature map owns its scoring parameters, so the map says which facial region matters.
- ``TemporalAttention``: one weight per frame from the recurrent states, masked for padding.
- ``LandmarkDynamics``: per-frame features of the landmark motion stream (positions, motion about
  the clip's mean, frame-to-frame differences), unchanged by a horizontal flip.
- ``MaskedTemporalPooling``: the parameter-free pooling of the ablations (last valid state or mean).
- ``FrameNormalization``, ``FoldTime``, ``UnfoldTime``, ``ValidFrames``: the plumbing that runs a
  per-frame CNN on (B, T, H, W, C) clips by folding time into the batch. Keras 3.15's
  ``TimeDistributed`` is not used: with an unknown T in graph mode it loops over the batch size instead
  of the time steps and silently corrupts ``predict``, SavedModel and TFLite outputs.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

PACKAGE = "age_estimation"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialAttention(keras.layers.Layer):
    """Spatially-indexed attention over a (H, W, C) feature map of an aligned face.

    The score of position (i, j) is ``<tanh(x_ij P + b), v_ij> + c_ij``: the projection ``P`` is shared
    (optional), but ``v_ij`` and ``c_ij`` belong to that position alone, unlike a convolution whose
    kernel is shared by all positions. Scores are normalised over positions (softmax with a
    temperature, or an independent sigmoid) into the attention map ``a``, which re-weights the
    features: ``x * m`` ("plain") or ``x * (1 + m)`` ("residual"), where ``m = a * H * W`` for softmax
    (mean 1, so the feature scale is kept) and ``m = a`` for sigmoid.

    Args:
        projection: int. Width of the shared tanh projection before the per-position scoring; 0 scores
            the raw features.
        normalization: str. "softmax" (the map sums to 1 over positions) or "sigmoid".
        temperature: float. Initial softmax temperature.
        learn_temperature: bool. Whether the temperature is trained (as a log-temperature).
        mode: str. "residual" or "plain" re-weighting.
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: (B, H, W, C) features with static H, W and C.

    Returns:
        ``(weighted, attention)``: the re-weighted (B, H, W, C) features and the (B, H, W) map.

    Example:
        >>> features, attention = SpatialAttention(projection=8)(keras.ops.ones((2, 8, 8, 16)))
        >>> tuple(attention.shape)
        (2, 8, 8)

    Reference:
        Pei et al., "Attended End-to-end Architecture for Age Estimation from Facial Expression
        Videos", arXiv 1711.08690 (spatially-indexed attention).
    """

    def __init__(
        self,
        projection: int = 16,
        normalization: str = "softmax",
        temperature: float = 1.0,
        learn_temperature: bool = True,
        mode: str = "residual",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if normalization not in ("softmax", "sigmoid"):
            raise ValueError(f"normalization must be 'softmax' or 'sigmoid', got {normalization!r}")
        if mode not in ("residual", "plain"):
            raise ValueError(f"mode must be 'residual' or 'plain', got {mode!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.projection = int(projection)
        self.normalization = normalization
        self.temperature = float(temperature)
        self.learn_temperature = bool(learn_temperature)
        self.mode = mode

    def build(self, input_shape: tuple) -> None:
        _, height, width, channels = input_shape
        if None in (height, width, channels):
            raise ValueError(f"SpatialAttention needs static H, W and C, got input shape {input_shape}")
        score_dim = channels
        if self.projection > 0:
            self.projection_kernel = self.add_weight(
                name="projection_kernel", shape=(channels, self.projection), initializer="glorot_uniform"
            )
            self.projection_bias = self.add_weight(
                name="projection_bias", shape=(self.projection,), initializer="zeros"
            )
            score_dim = self.projection
        self.position_kernel = self.add_weight(
            name="position_kernel",
            shape=(height, width, score_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(score_dim)),
        )
        self.position_bias = self.add_weight(name="position_bias", shape=(height, width), initializer="zeros")
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.temperature)),
            trainable=self.learn_temperature and self.normalization == "softmax",
        )
        self.num_positions = height * width

    def call(self, inputs: Any) -> tuple[Any, Any]:
        features = inputs
        if self.projection > 0:
            features = ops.tanh(ops.matmul(inputs, self.projection_kernel) + self.projection_bias)
        scores = ops.sum(features * self.position_kernel, axis=-1) + self.position_bias
        scores = ops.cast(scores, "float32")
        if self.normalization == "softmax":
            flat = ops.reshape(scores, (-1, self.num_positions)) / ops.exp(self.log_temperature)
            attention = ops.reshape(ops.softmax(flat, axis=-1), ops.shape(scores))
            multiplier = attention * float(self.num_positions)
        else:
            attention = ops.sigmoid(scores)
            multiplier = attention
        multiplier = ops.cast(multiplier, inputs.dtype)[..., None]
        weighted = inputs * multiplier if self.mode == "plain" else inputs * (1.0 + multiplier)
        return weighted, attention

    def compute_output_shape(self, input_shape: tuple) -> tuple[tuple, tuple]:
        return tuple(input_shape), tuple(input_shape[:3])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            projection=self.projection,
            normalization=self.normalization,
            temperature=self.temperature,
            learn_temperature=self.learn_temperature,
            mode=self.mode,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemporalSummary(keras.layers.Layer):
    """Base of the layers that reduce (B, T, D) states to a (B, D) summary and (B, T) frame weights.

    It takes a Keras mask of valid frames and returns none (the summary has no time axis). Subclasses
    implement ``call(inputs, mask=None) -> (summary, weights)``.

    Args:
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: tuple) -> tuple[tuple, tuple]:
        return (input_shape[0], input_shape[2]), (input_shape[0], input_shape[1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemporalAttention(TemporalSummary):
    """Attention over time: a weight per frame from its recurrent state, zero for padded frames.

    ``score_t = <tanh(h_t W + b), v>``, shared across time; ``weights = softmax(score)`` over the valid
    frames only (padded frames get exactly 0 and the rest sum to 1); the summary is ``sum_t w_t h_t``.

    Args:
        units: int. Width of the scoring network.
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: (B, T, D) recurrent states.
        mask: optional (B, T) boolean or 0/1 mask of valid frames (a Keras mask is used when given).

    Returns:
        ``(summary, weights)`` of shapes (B, D) and (B, T).

    Example:
        >>> summary, weights = TemporalAttention(8)(keras.ops.ones((2, 5, 4)))
        >>> tuple(weights.shape)
        (2, 5)

    Reference:
        Pei et al., "Attended End-to-end Architecture for Age Estimation from Facial Expression
        Videos", arXiv 1711.08690 (temporal attention).
    """

    def __init__(self, units: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape: tuple) -> None:
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"TemporalAttention needs a static feature size, got input shape {input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=(dim, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units,), initializer="glorot_uniform"
        )

    def call(self, inputs: Any, mask: Any = None) -> tuple[Any, Any]:
        hidden = ops.tanh(ops.matmul(inputs, self.kernel) + self.bias)
        scores = ops.cast(ops.sum(hidden * self.score_vector, axis=-1), "float32")
        weights = masked_softmax(scores, mask)
        return weighted_summary(inputs, weights), weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units)
        return config


def weighted_summary(states: Any, weights: Any) -> Any:
    """``sum_t w_t h_t``: (B, T, D) states and (B, T) weights -> (B, D)."""
    return ops.sum(states * ops.cast(weights, states.dtype)[..., None], axis=1)


def masked_softmax(scores: Any, mask: Any = None) -> Any:
    """Softmax over the last axis that gives masked entries exactly zero weight (all-masked rows: all 0)."""
    if mask is None:
        return ops.softmax(scores, axis=-1)
    valid = ops.cast(mask, scores.dtype)
    shifted = scores - ops.max(ops.where(valid > 0, scores, ops.full_like(scores, -1e9)), axis=-1, keepdims=True)
    exp = ops.exp(ops.minimum(shifted, 0.0)) * valid
    return exp / ops.maximum(ops.sum(exp, axis=-1, keepdims=True), 1e-12)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedTemporalPooling(TemporalSummary):
    """Parameter-free temporal pooling for the ablations: the last valid state, or the mean of valid ones.

    Returns ``(summary, weights)`` like ``TemporalAttention`` so the weights (one-hot on the last valid
    frame, or uniform over valid frames) stay comparable across variants.

    Args:
        mode: str. "mean" of the valid steps or the "last" valid step.
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: (B, T, D) states.
        mask: optional (B, T) boolean or 0/1 mask of valid frames (a Keras mask is used when given);
            without one every frame is valid.

    Returns:
        ``(summary, weights)`` of shapes (B, D) and (B, T).

    Example:
        >>> pooling = MaskedTemporalPooling("last")
        >>> summary, weights = pooling(keras.ops.ones((2, 4, 3)), mask=keras.ops.ones((2, 4)))
        >>> keras.ops.convert_to_numpy(weights[0]).tolist()
        [0.0, 0.0, 0.0, 1.0]
    """

    def __init__(self, mode: str = "mean", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("mean", "last"):
            raise ValueError(f"mode must be 'mean' or 'last', got {mode!r}")
        self.mode = mode

    def call(self, inputs: Any, mask: Any = None) -> tuple[Any, Any]:
        steps = ops.shape(inputs)[1]
        valid = ops.ones(ops.shape(inputs)[:2], "float32") if mask is None else ops.cast(mask, "float32")
        if self.mode == "mean":
            weights = valid / ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        else:
            positions = ops.cast(ops.arange(steps), "float32")[None, :]
            last = ops.max(positions * valid - (1.0 - valid), axis=1, keepdims=True)
            weights = ops.cast(ops.equal(positions, last), "float32") * valid
        return weighted_summary(inputs, weights), weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class FrameNormalization(keras.layers.Layer):
    """Cast uint8 (or float 0..255) frames to the compute dtype and scale them to [-1, 1] or keep 0..255.

    Inside the model, so every runtime (Keras, SavedModel, TFLite) takes the same uint8 crops.

    Args:
        scale: str. "symmetric" (``x / 127.5 - 1``, the from-scratch CNN and MobileNetV2) or "raw"
            (0..255, for backbones that normalise inside).
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: frames of any shape, uint8 or float in 0..255.

    Example:
        >>> keras.ops.convert_to_numpy(FrameNormalization()(keras.ops.array([0, 255], "uint8"))).tolist()
        [-1.0, 1.0]
    """

    def __init__(self, scale: str = "symmetric", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if scale not in ("symmetric", "raw"):
            raise ValueError(f"scale must be 'symmetric' or 'raw', got {scale!r}")
        self.scale = scale

    def call(self, inputs: Any) -> Any:
        frames = ops.cast(inputs, self.compute_dtype)
        return frames / 127.5 - 1.0 if self.scale == "symmetric" else frames

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(scale=self.scale)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class FoldTime(keras.layers.Layer):
    """(B, T, ...) -> (B*T, ...): lets a per-frame network run on every frame of every clip at once.

    Call arguments:
        inputs: (B, T, ...) with static trailing dimensions; B and T may be unknown.

    Example:
        >>> tuple(FoldTime()(keras.ops.ones((2, 5, 4, 4, 3))).shape)
        (10, 4, 4, 3)
    """

    def call(self, inputs: Any) -> Any:
        return ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (None,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class UnfoldTime(keras.layers.Layer):
    """(B*T, ...) -> (B, T, ...), with B and T read from a reference (B, T, ...) tensor at run time.

    Call arguments:
        inputs: ``[folded, reference]``: the (B*T, ...) per-frame tensor and the (B, T, ...) clip it
            came from.

    Example:
        >>> clips = keras.ops.ones((2, 5, 4, 4, 3))
        >>> tuple(UnfoldTime()([keras.ops.ones((10, 8)), clips]).shape)
        (2, 5, 8)
    """

    def call(self, inputs: Any) -> Any:
        folded, reference = inputs
        batch, steps = ops.shape(reference)[0], ops.shape(reference)[1]
        return ops.reshape(folded, (batch, steps) + tuple(folded.shape[1:]))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        folded, reference = input_shape
        return tuple(reference[:2]) + tuple(folded[1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ValidFrames(keras.layers.Layer):
    """A 0/1 float frame mask (B, T) -> boolean mask, the form recurrent layers take.

    Call arguments:
        inputs: (B, T) float, 1 for a real frame and 0 for padding.

    Example:
        >>> keras.ops.convert_to_numpy(ValidFrames()(keras.ops.array([[1.0, 0.0]]))).tolist()
        [[True, False]]
    """

    def call(self, inputs: Any) -> Any:
        return ops.greater(inputs, 0.5)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LandmarkDynamics(keras.layers.Layer):
    """Per-frame features of the landmark stream that a horizontal flip of the face leaves unchanged.

    The K points are ``pairs`` mirror pairs (right point, left point) then midline points, in eye
    distances about the template's eye midpoint. Per pair: the mean height and the half width
    (``(x_left - x_right) / 2``); per midline point: its height. For these K geometric values per frame
    the layer returns, masked by ``landmark_mask`` (0 where the mesh found no face or for padding):
    the values, their motion about the clip's mean over found frames, their difference from the
    previous frame (0 where either frame is missing), and the mask itself: (B, T, 3K + 1).
    Motion and differences are a few hundredths of an eye distance, so they are scaled by
    ``motion_scale`` to the range of the positions.

    Args:
        pairs: int. How many mirror pairs lead the K points.
        motion_scale: float. Factor on the motion and the frame-to-frame differences.
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: ``[landmarks, landmark_mask]``, (B, T, K, 2) float and (B, T) 0/1.

    Returns:
        (B, T, 3K + 1) float32 features.

    Example:
        >>> features = LandmarkDynamics(pairs=1)([keras.ops.ones((2, 5, 3, 2)), keras.ops.ones((2, 5))])
        >>> tuple(features.shape)
        (2, 5, 10)
    """

    def __init__(self, pairs: int, motion_scale: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pairs = int(pairs)
        self.motion_scale = float(motion_scale)

    def call(self, inputs: Any) -> Any:
        points, found = inputs
        points = ops.cast(points, "float32")
        found = ops.cast(found, "float32")[..., None]
        paired, midline = points[:, :, : 2 * self.pairs], points[:, :, 2 * self.pairs :]
        right, left = paired[:, :, 0::2], paired[:, :, 1::2]
        geometry = ops.concatenate(
            [(right[..., 1] + left[..., 1]) / 2, (left[..., 0] - right[..., 0]) / 2, midline[..., 1]], axis=-1
        ) * found
        mean = ops.sum(geometry, axis=1, keepdims=True) / ops.maximum(ops.sum(found, axis=1, keepdims=True), 1.0)
        motion = (geometry - mean) * found
        both = found[:, 1:] * found[:, :-1]
        step = (geometry[:, 1:] - geometry[:, :-1]) * both
        step = ops.concatenate([ops.zeros_like(geometry[:, :1]), step], axis=1)
        return ops.concatenate([geometry, self.motion_scale * motion, self.motion_scale * step, found], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        points_shape = input_shape[0]  # two values per mirror pair, one per midline point: one per point
        return (points_shape[0], points_shape[1], 3 * points_shape[2] + 1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(pairs=self.pairs, motion_scale=self.motion_scale)
        return config
