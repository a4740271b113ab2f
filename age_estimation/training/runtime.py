"""Process-wide training settings: seeds, op determinism, mixed precision, the strategy and Keras' verbosity."""

from __future__ import annotations

import sys

import keras
import tensorflow as tf

from age_estimation.config import RuntimeConfig


def configure_runtime(runtime: RuntimeConfig) -> None:
    """Seed every RNG, make ops deterministic when asked, and set the dtype policy."""
    keras.utils.set_random_seed(runtime.seed)
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if runtime.mixed_precision else "float32")


def make_strategy(runtime: RuntimeConfig) -> tf.distribute.Strategy:
    """The strategy ``model.fit`` runs under: default, or MirroredStrategy over the local GPUs (or CPU).

    Multi-worker training does not go through ``fit`` (keras-team/keras#20585 on TF 2.21); it uses the
    custom loop in ``age_estimation.training.multi_worker``, which makes its own strategy from ``TF_CONFIG``.
    """
    if runtime.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if runtime.strategy == "multi_worker":
        raise ValueError("runtime.strategy multi_worker runs through age_estimation.training.multi_worker, not model.fit")
    return tf.distribute.get_strategy()


def progress_verbosity(verbose: int | str) -> int | str:
    """Keras' ``verbose`` for training: ``"auto"`` is the step bar on a terminal, one line per epoch elsewhere.

    Off a terminal (CI, ``make train > log``) the bar's carriage returns would leave a line per step.
    """
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() else 2
