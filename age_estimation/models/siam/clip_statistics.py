"""Order-free clip statistics of a marked sequence, the optional poolings of the landmark stream.

- ``MaskedStatistics``: mean, standard deviation and maximum over the marked steps, which give the
  head durations and extremes of the landmark stream directly.
- ``MaskedQuantiles``: the value distribution over the marked steps (evenly spaced quantiles, also
  rescaled to the clip's own range), which says how long a signal stays near each of its levels.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from age_estimation.models.siam.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedStatistics(keras.layers.Layer):
    """Statistics pooling: per feature, the mean, standard deviation and maximum over the marked steps.

    How long a feature stays near its peak is its mean over its maximum, so these three let a small head
    read durations and extremes of a sequence that a weighted mean of recurrent states can miss. Steps
    with mask 0 are left out; a row with no marked step gives zeros.

    Call arguments:
        inputs: (B, T, D) per-step features.
        mask: (B, T) 0/1 or boolean marks of the steps to pool.

    Returns:
        (B, 3D): the means, then the standard deviations, then the maxima.

    Example:
        >>> stats = MaskedStatistics()(keras.ops.ones((2, 5, 4)), keras.ops.ones((2, 5)))
        >>> tuple(stats.shape)
        (2, 12)
    """

    def call(self, inputs: Any, mask: Any) -> Any:
        x = ops.cast(inputs, "float32")
        marks = ops.cast(mask, "float32")[..., None]
        count = ops.sum(marks, axis=1)
        mean = ops.sum(x * marks, axis=1) / ops.maximum(count, 1.0)
        variance = ops.sum(ops.square(x - mean[:, None]) * marks, axis=1) / ops.maximum(count, 1.0)
        peak = ops.max(ops.where(marks > 0, x, ops.full_like(x, -1e9)), axis=1)
        peak = ops.where(count > 0, peak, ops.zeros_like(peak))
        return ops.concatenate([mean, ops.sqrt(variance + 1e-6), peak], axis=-1)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], 3 * input_shape[-1])


def _level_major(values: Any) -> Any:
    """(B, D, L) -> (B, L * D), each level's D features side by side."""
    return ops.reshape(ops.transpose(values, (0, 2, 1)), (ops.shape(values)[0], -1))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedQuantiles(keras.layers.Layer):
    """Per feature: ``levels`` quantiles over the marked steps, the same rescaled to the clip's range, the range.

    The quantiles sit at the midpoints ``(i + 0.5) / levels``, linearly interpolated between the sorted
    marked values, so a single outlying step moves them little. Rescaled, ``(q - q_first) / range`` with
    ``range = q_last - q_first`` (at least ``min_range``), they are the share of the clip a feature
    spends at each level of its own swing: a smile's apex duration, whatever its amplitude. A row with no
    marked step gives zeros.

    Call arguments:
        inputs: (B, T, D) per-step features.
        mask: (B, T) 0/1 or boolean marks of the steps to use.

    Returns:
        (B, (2 * levels + 1) * D): the quantiles (level-major), the rescaled quantiles, then the ranges.

    Example:
        >>> out = MaskedQuantiles(levels=4)(keras.ops.ones((2, 5, 3)), keras.ops.ones((2, 5)))
        >>> tuple(out.shape)
        (2, 27)
    """

    def __init__(self, levels: int = 8, min_range: float = 1e-2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(levels) < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        self.levels = int(levels)
        self.min_range = float(min_range)

    def call(self, inputs: Any, mask: Any) -> Any:
        x = ops.transpose(ops.cast(inputs, "float32"), (0, 2, 1))  # (B, D, T): sort along the last axis
        marks = ops.cast(mask, "float32")[:, None, :]
        ordered = ops.sort(ops.where(marks > 0, x, ops.full_like(x, 1e9)), axis=-1)  # unmarked steps last
        count = ops.sum(marks, axis=-1, keepdims=True)  # (B, 1, 1)
        levels = (ops.arange(self.levels, dtype="float32") + 0.5) / self.levels
        position = ops.clip(levels * count - 0.5, 0.0, ops.maximum(count - 1.0, 0.0))  # (B, 1, L)
        below = ops.floor(position)
        above = ops.minimum(below + 1.0, ops.maximum(count - 1.0, 0.0))
        index_shape = (ops.shape(x)[0], ops.shape(x)[1], self.levels)
        low = ops.take_along_axis(ordered, ops.broadcast_to(ops.cast(below, "int32"), index_shape), axis=-1)
        high = ops.take_along_axis(ordered, ops.broadcast_to(ops.cast(above, "int32"), index_shape), axis=-1)
        quantiles = low + (high - low) * (position - below)
        quantiles = ops.where(count > 0, quantiles, ops.zeros_like(quantiles))  # (B, D, L)
        spread = quantiles[..., -1:] - quantiles[..., :1]
        rescaled = (quantiles - quantiles[..., :1]) / ops.maximum(spread, self.min_range)
        return ops.concatenate([_level_major(quantiles), _level_major(rescaled), spread[..., 0]], axis=-1)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], (2 * self.levels + 1) * input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(levels=self.levels, min_range=self.min_range)
        return config
