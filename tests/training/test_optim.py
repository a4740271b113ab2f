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


def test_a_rate_scale_matches_variable_paths_first_pattern_first():
    from age_estimation.training.optim import rate_scale

    scales = {"backbone/stem*": 0.0, "backbone/*": 0.1}
    assert rate_scale("backbone/stem_conv/kernel", scales) == 0.0
    assert rate_scale("backbone/block1/conv1/kernel", scales) == 0.1
    assert rate_scale("head_out/kernel", scales) == 1.0


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_scaled_variables_step_at_their_share_of_the_rate(name):
    """Adam's first step is the rate times the gradient's sign whatever its size, so only a scaled rate
    (not a scaled gradient) can slow it; the scaled variable moves 0.1 of the unscaled one's step."""
    train = TrainConfig(optimizer=name, schedule="constant", learning_rate=0.01, ema=False, weight_decay=0.0,
                        learning_rate_scales={"slow*": 0.1, "frozen*": 0.0})
    optimizer = make_optimizer(train, 10)
    layers = {key: keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name=key)
              for key in ("fast", "slow", "frozen")}
    for layer in layers.values():
        layer.build((None, 1))
    variables = [layer.kernel for layer in layers.values()]
    optimizer.apply([np.ones((1, 1), np.float32)] * 3, variables)
    moved = {key: 1.0 - float(np.asarray(layer.kernel)[0, 0]) for key, layer in layers.items()}
    assert moved["fast"] > 0.005  # Adam: 0.01; Nesterov SGD: 0.019
    assert moved["slow"] == pytest.approx(0.1 * moved["fast"], rel=1e-3)
    assert moved["frozen"] == 0.0
    clone = type(optimizer).from_config(optimizer.get_config())
    assert clone.rate_scales == {"slow*": 0.1, "frozen*": 0.0}


def test_without_scales_the_plain_keras_optimizer_is_used():
    assert type(make_optimizer(TrainConfig(), 10)) is keras.optimizers.Adam
