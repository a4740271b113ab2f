"""Loss, optimiser and learning-rate schedule from the train section."""

import keras
import numpy as np
import pytest

from age_estimation.config import TrainConfig
from age_estimation.training.optim import make_loss, make_optimizer, make_schedule


@pytest.mark.parametrize(("name", "expected"), [("mae", 2.0), ("mse", 4.0), ("huber", 0.5 * 2.0**2)])
def test_each_loss_scores_an_error_of_two_years(name, expected):
    loss = make_loss(TrainConfig(loss=name, huber_delta=3.0))
    assert float(loss(np.array([[30.0]]), np.array([[32.0]]))) == pytest.approx(expected)


def test_huber_turns_linear_beyond_its_delta():
    loss = make_loss(TrainConfig(loss="huber", huber_delta=1.0))
    assert float(loss(np.array([[0.0]]), np.array([[5.0]]))) == pytest.approx(5.0 - 0.5)


def test_cosine_warms_up_then_decays_to_a_floor():
    schedule = make_schedule(TrainConfig(schedule="cosine", learning_rate=1e-2, epochs=10, warmup_epochs=1), 5)
    rates = [float(schedule(step)) for step in (0, 5, 25, 50)]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[1] == pytest.approx(1e-2)
    assert rates[1] > rates[2] > rates[3] >= 1e-2 * 0.02 * 0.99


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_constant_and_plateau_start_at_the_configured_rate(schedule):
    assert make_schedule(TrainConfig(schedule=schedule, learning_rate=3e-4), 10) == 3e-4


@pytest.mark.parametrize(("name", "kind"), [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
                                            ("sgd", keras.optimizers.SGD)])
def test_optimizers_clip_and_average_as_configured(name, kind):
    optimizer = make_optimizer(TrainConfig(optimizer=name, ema=True, ema_momentum=0.9), 10)
    assert type(optimizer) is kind and optimizer.clipnorm == 5.0
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    assert not make_optimizer(TrainConfig(optimizer=name, ema=False), 10).use_ema
