"""Loss, optimiser and learning-rate schedule from the ``train`` section of a pipeline config."""

from __future__ import annotations

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
    """
    rate = make_schedule(train, steps_per_epoch)
    common = {"clipnorm": 5.0, "use_ema": train.ema, "ema_momentum": train.ema_momentum}
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=train.weight_decay, **common)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, **common)
    return keras.optimizers.Adam(rate, **common)
