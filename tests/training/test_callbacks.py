"""Training callbacks: BatchNormalization recalibration and where it sits among the others."""

import keras
import numpy as np

from age_estimation.config import load_config
from age_estimation.training.callbacks import RecalibrateBatchNorm, batch_norm_layers, make_callbacks
from tests.conftest import TINY_CONFIG


def bn_model(momentum: float = 0.9) -> keras.Model:
    inner = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.5)], name="inner")
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(momentum=momentum, name="outer_bn")(inputs)
    x = keras.layers.Dense(3, kernel_initializer="ones")(x)
    return keras.Model(inputs, inner(x))


def test_finds_batch_norm_layers_in_nested_models():
    assert sorted(layer.momentum for layer in batch_norm_layers(bn_model())) == [0.5, 0.9]


def test_statistics_become_the_plain_average_over_the_batches():
    rng = np.random.default_rng(0)
    batches = [(rng.normal(loc=i, scale=1 + i, size=(16, 4)).astype("float32"), None) for i in range(3)]
    model = bn_model()
    callback = RecalibrateBatchNorm(batches, count=3)
    callback.set_model(model)
    callback.on_test_begin()

    bn = model.get_layer("outer_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b, _ in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b, _ in batches], 0), rtol=1e-4)
    assert [layer.momentum for layer in batch_norm_layers(model)] == [0.9, 0.5], "momentum must be restored"


def test_a_finite_dataset_is_started_again():
    batches = [(np.full((2, 4), 7.0, "float32"), None)]
    model = bn_model()
    callback = RecalibrateBatchNorm(batches, count=3)
    callback.set_model(model)
    callback.on_test_begin()
    np.testing.assert_allclose(model.get_layer("outer_bn").moving_mean.numpy(), 7.0)


def test_recalibration_runs_after_the_ema_swap_and_before_the_checkpoint(tmp_path):
    cfg = load_config(TINY_CONFIG, ["train.bn_recalibration_batches=4"])
    kinds = [type(c).__name__ for c in make_callbacks(cfg.train, tmp_path, 10, False, train_batches=[])[0]]
    assert kinds.index("SwapEMAWeights") < kinds.index("RecalibrateBatchNorm") < kinds.index("ModelCheckpoint")
    off = load_config(TINY_CONFIG, ["train.bn_recalibration_batches=0"])
    assert "RecalibrateBatchNorm" not in [type(c).__name__ for c in make_callbacks(off.train, tmp_path, 10, False, [])[0]]


def test_a_synchronise_hook_runs_after_each_recalibration():
    calls = []
    model = bn_model()
    callback = RecalibrateBatchNorm([(np.ones((2, 4), "float32"), None)], count=1,
                                    synchronise=lambda: calls.append(model.get_layer("outer_bn").moving_mean.numpy()))
    callback.set_model(model)
    callback.on_test_begin()
    assert len(calls) == 1 and np.allclose(calls[0], 1.0), "the hook must see the recalibrated statistics"


def test_the_plateau_schedule_adds_a_logged_learning_rate_and_backup_can_be_replaced(tmp_path):
    cfg = load_config(TINY_CONFIG, ["train.schedule=plateau"])
    backup = keras.callbacks.Callback()
    kinds = [type(c).__name__ for c in make_callbacks(cfg.train, tmp_path, 10, False, backup=backup)[0]]
    assert kinds.index("ReduceLROnPlateau") < kinds.index("CSVLogger"), "the CSV log must carry the learning rate"
    assert "BackupAndRestore" not in kinds and kinds[1] == "Callback"
    assert "ReduceLROnPlateau" not in [type(c).__name__ for c in make_callbacks(
        load_config(TINY_CONFIG).train, tmp_path, 10, False)[0]]
