"""The hypermodel: a trial trains and scores the weights a trained run keeps, and counts its epochs."""

import keras_tuner as kt
import pytest

from age_estimation.data.pipeline import build_split_datasets
from age_estimation.training.task import age_targets
from age_estimation.tuning.hypermodel import EPOCHS_METRIC, SiamHyperModel


@pytest.mark.slow
def test_a_trial_scores_the_averaged_weights_that_training_keeps(tiny_config):
    cfg = tiny_config("train.ema=true", "train.bn_recalibration_batches=2")
    split = build_split_datasets(cfg)
    hypermodel = SiamHyperModel(cfg, split)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, epochs=2, verbose=0)
    # fit ends holding the EMA weights; the last validation must have scored those (and their BN statistics).
    _, mae = model.evaluate(age_targets(split.val, model), verbose=0)
    assert history.history["val_age_mae"][-1] == pytest.approx(mae, rel=1e-4)
    assert history.history[EPOCHS_METRIC] == [2.0, 2.0], "every epoch's metrics say how many epochs ran"
