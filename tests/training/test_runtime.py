"""Process-wide settings: seeding makes runs repeat, the dtype policy, the strategies fit runs under, verbosity."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from age_estimation.config import RuntimeConfig
from age_estimation.training.runtime import configure_runtime, make_strategy, progress_verbosity


def test_the_same_seed_gives_the_same_draws():
    configure_runtime(RuntimeConfig(seed=7))
    first = (np.random.rand(), keras.random.uniform((3,)).numpy())
    configure_runtime(RuntimeConfig(seed=7))
    second = (np.random.rand(), keras.random.uniform((3,)).numpy())
    assert first[0] == second[0] and np.array_equal(first[1], second[1])


def test_mixed_precision_sets_the_policy_and_float32_restores_it():
    try:
        configure_runtime(RuntimeConfig(mixed_precision=True))
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        configure_runtime(RuntimeConfig())
    assert keras.mixed_precision.global_policy().name == "float32"


def test_strategies_for_fit():
    assert make_strategy(RuntimeConfig()) is tf.distribute.get_strategy()
    assert isinstance(make_strategy(RuntimeConfig(strategy="mirrored")), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError, match="multi_worker"):
        make_strategy(RuntimeConfig(strategy="multi_worker"))


def test_auto_verbosity_is_the_bar_on_a_terminal_and_a_line_per_epoch_elsewhere(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert progress_verbosity("auto") == 1
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert progress_verbosity("auto") == 2
    assert progress_verbosity(0) == 0 and progress_verbosity(1) == 1
