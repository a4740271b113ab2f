"""The regression task every training path shares: the age-only view that is trained, its targets, its prior,
and its loss and metric (compiled once, read by ``fit`` and by the multi-worker step alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from age_estimation.config import TrainConfig
from age_estimation.training.optim import make_loss, make_optimizer

AGE_METRIC = "age_mae"  # the training metric; validation logs it as ``val_age_mae``


class TrainingError(RuntimeError):
    """Training could not produce a model (for example the loss was NaN from the first epoch)."""


def no_model_error(run_dir: Path) -> TrainingError:
    """The error for a run in which no epoch left a checkpoint to keep."""
    return TrainingError(f"{run_dir}: no epoch reached a finite validation MAE, so there is no model to save")


def age_view(model: keras.Model) -> keras.Model:
    """The model with only its ``age`` output, sharing all weights: what ``fit`` trains and checkpoints.

    Attention maps need no targets, and Keras 3 asks for a target per output of a dict-output model.
    """
    return keras.Model(model.input, model.get_layer("age").output, name=f"{model.name}_age")


def age_targets(ds: Any, model: keras.Model) -> Any:
    """Map ``(inputs, {"age": y})`` batches to ``(inputs the model takes, y)`` for the single-output view.

    A batch may carry inputs the model does not read (the frames, for ``dynamics_only``); Keras would match a
    dict with extra keys to the model's inputs by position, so they are dropped here.
    """
    names = set(model.input)
    return ds.map(lambda inputs, targets: ({k: v for k, v in inputs.items() if k in names}, targets["age"]))


def crop_size_of(index: dict[str, Any]) -> int:
    """The aligned crop size the cache was prepared with."""
    return int(index["align"]["crop_size"])


def age_prior(train_ages: np.ndarray) -> tuple[float, float]:
    """Mean and spread of the training ages: the head starts at the mean instead of at zero."""
    if train_ages.size == 0:
        raise TrainingError("no training videos")
    return float(train_ages.mean()), float(max(train_ages.std(), 1.0))


def compile_task(fitted: keras.Model, train: TrainConfig, steps_per_epoch: int) -> None:
    """Compile the age view with the configured optimizer, loss and the ``age_mae`` metric (inside a strategy scope).

    With a ``mixed_float16`` policy Keras wraps the optimizer in a ``LossScaleOptimizer``.
    """
    fitted.compile(
        optimizer=make_optimizer(train, steps_per_epoch),
        loss=make_loss(train),
        metrics=[keras.metrics.MeanAbsoluteError(name=AGE_METRIC)],
    )
