"""Loss, optimiser and learning-rate schedule from the ``train`` section of a pipeline config."""

from __future__ import annotations

import fnmatch
from typing import Any

import keras

from age_estimation.config import TrainConfig


def make_loss(train: TrainConfig) -> keras.losses.Loss:
    """The regression loss on age in years: MAE, Huber (delta in years) or MSE."""
    if train.loss == "mae":
        return keras.losses.MeanAbsoluteError(name="mae")
    if train.loss == "mse":
        return keras.losses.MeanSquaredError(name="mse")
    return keras.losses.Huber(delta=train.huber_delta, name="huber")


def make_schedule(train: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Cosine decay with linear warm-up over the whole run, or a constant rate ("constant"/"plateau")."""
    if train.schedule != "cosine":
        return train.learning_rate
    total = max(1, train.epochs * steps_per_epoch)
    warmup = min(total - 1, train.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=train.learning_rate * (0.1 if warmup else 1.0),
        decay_steps=max(1, total - warmup),
        alpha=0.02,
        warmup_target=train.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(train: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD with momentum, with the configured schedule, gradient clipping and weight EMA.

    With ``train.ema`` the optimizer keeps an exponential moving average of the weights (Polyak
    averaging); validation, checkpoints and the saved model use it (see ``callbacks.make_callbacks``).
    With ``train.learning_rate_scales`` the variables whose path matches a pattern step at a multiple of
    the rate (a pretrained backbone fine-tuned slowly).
    """
    rate = make_schedule(train, steps_per_epoch)
    kwargs: dict[str, Any] = {"clipnorm": 5.0, "use_ema": train.ema, "ema_momentum": train.ema_momentum}
    if train.optimizer == "adamw":
        plain, scaled, kwargs["weight_decay"] = keras.optimizers.AdamW, ScaledAdamW, train.weight_decay
    elif train.optimizer == "sgd":
        plain, scaled = keras.optimizers.SGD, ScaledSGD
        kwargs.update(momentum=0.9, nesterov=True)
    else:
        plain, scaled = keras.optimizers.Adam, ScaledAdam
    if train.learning_rate_scales:
        return scaled(rate, rate_scales=dict(train.learning_rate_scales), **kwargs)
    return plain(rate, **kwargs)


def rate_scale(path: str, scales: dict[str, float]) -> float:
    """The learning-rate multiplier of the variable at ``path``: the first matching pattern's, else 1.

    Patterns are shell-style (``fnmatch``) on the variable's path, e.g. ``"*face_age_backbone/*"``.
    """
    for pattern, scale in scales.items():
        if fnmatch.fnmatchcase(path, pattern):
            return float(scale)
    return 1.0


class _ScaledRates:
    """Mixin for a Keras optimizer: each variable steps at its ``rate_scale`` times the learning rate.

    Scaling the gradient instead would not slow Adam, whose step does not depend on the gradient's scale.
    """

    def __init__(self, *args: Any, rate_scales: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rate_scales = dict(rate_scales or {})

    def build(self, variables: list[Any]) -> None:
        super().build(variables)
        self._variable_scales = [rate_scale(variable.path, self.rate_scales) for variable in variables]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        # The backend may pass its own variable, without a path: look it up by the optimizer's index.
        scale = self._variable_scales[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, scale)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate_scales": dict(self.rate_scales)}


@keras.saving.register_keras_serializable(package="age_estimation")
class ScaledAdam(_ScaledRates, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers (``rate_scales``: path pattern -> multiplier)."""


@keras.saving.register_keras_serializable(package="age_estimation")
class ScaledAdamW(_ScaledRates, keras.optimizers.AdamW):
    """AdamW with per-variable learning-rate multipliers (``rate_scales``: path pattern -> multiplier)."""


@keras.saving.register_keras_serializable(package="age_estimation")
class ScaledSGD(_ScaledRates, keras.optimizers.SGD):
    """SGD with per-variable learning-rate multipliers (``rate_scales``: path pattern -> multiplier)."""
