"""The shared task: the age-only view, its targets, the prior, the compiled loss and metric."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from age_estimation.config import TrainConfig
from age_estimation.training.task import (
    AGE_METRIC,
    TrainingError,
    age_prior,
    age_targets,
    age_view,
    compile_task,
    crop_size_of,
    no_model_error,
)


def two_outputs() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, {"age": keras.layers.Dense(1, name="age")(inputs),
                                "attention": keras.layers.Dense(2, name="attention")(inputs)})


def test_the_age_view_shares_the_weights_and_has_one_output():
    model = two_outputs()
    view = age_view(model)
    assert view.output.shape == (None, 1)
    view.get_layer("age").kernel.assign(np.ones((3, 1), "float32"))
    assert np.array_equal(model.get_layer("age").kernel.numpy(), np.ones((3, 1)))


def test_targets_keep_only_the_age_and_the_inputs_the_model_takes():
    x = keras.Input((1,), name="x")
    model = keras.Model({"x": x}, keras.layers.Dense(1)(x))
    ds = tf.data.Dataset.from_tensors(({"frames": [[7.0]], "x": [[1.0]]}, {"age": [30.0], "other": [0.0]}))
    inputs, ages = next(iter(age_targets(ds, model)))
    assert float(ages[0]) == 30.0 and set(inputs) == {"x"} and float(inputs["x"][0, 0]) == 1.0


def test_the_prior_is_the_mean_and_a_spread_of_at_least_one_year():
    assert age_prior(np.array([20.0, 40.0])) == (30.0, 10.0)
    assert age_prior(np.array([25.0, 25.0])) == (25.0, 1.0)
    with pytest.raises(TrainingError, match="no training videos"):
        age_prior(np.array([]))


def test_crop_size_and_the_no_model_error():
    assert crop_size_of({"align": {"crop_size": 48}}) == 48
    assert "no epoch reached a finite validation MAE" in str(no_model_error("runs/x"))


def test_compile_task_gives_the_configured_loss_and_the_age_metric():
    view = age_view(two_outputs())
    compile_task(view, TrainConfig(loss="mae", optimizer="sgd", ema=False), steps_per_epoch=4)
    view.get_layer("age").kernel.assign(np.zeros((3, 1), "float32"))
    x, y = np.ones((4, 3), "float32"), np.full((4, 1), 2.0, "float32")
    logs = view.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(2.0) and logs[AGE_METRIC] == pytest.approx(2.0)
    assert isinstance(view.optimizer, keras.optimizers.SGD)
