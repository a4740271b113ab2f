"""The regression task every training path shares: the age-only view that is trained, its targets, its prior."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class TrainingError(RuntimeError):
    """Training could not produce a model (for example the loss was NaN from the first epoch)."""


def age_view(model: keras.Model) -> keras.Model:
    """The model with only its ``age`` output, sharing all weights: what ``fit`` trains and checkpoints.

    Attention maps need no targets, and Keras 3 asks for a target per output of a dict-output model.
    """
    return keras.Model(model.input, model.get_layer("age").output, name=f"{model.name}_age")


def age_targets(ds: Any) -> Any:
    """Map ``(inputs, {"age": y})`` batches to ``(inputs, y)`` for the single-output training view."""
    return ds.map(lambda inputs, targets: (inputs, targets["age"]))


def crop_size_of(index: dict[str, Any]) -> int:
    """The aligned crop size the cache was prepared with."""
    return int(index["align"]["crop_size"])


def age_prior(train_ages: np.ndarray) -> tuple[float, float]:
    """Mean and spread of the training ages: the head starts at the mean instead of at zero."""
    if train_ages.size == 0:
        raise TrainingError("no training videos")
    return float(train_ages.mean()), float(max(train_ages.std(), 1.0))
