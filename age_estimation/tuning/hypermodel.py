"""SIAM as a Keras Tuner HyperModel: a trial's config builds, compiles and fits the model ``train`` would."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from age_estimation.config import PipelineConfig
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import SplitData, build_dataset, steps_per_epoch
from age_estimation.models.siam.model import build_siam
from age_estimation.training.callbacks import weight_averaging_callbacks
from age_estimation.training.optim import make_loss, make_optimizer
from age_estimation.training.task import age_prior, age_targets, age_view, crop_size_of
from age_estimation.tuning.space import apply_values, declare, search_space

OBJECTIVE = "val_age_mae"
# A trial's metrics keep only its best epoch's values; this one (same value every epoch) counts the epochs run.
EPOCHS_METRIC = "epochs"


class SiamHyperModel(kt.HyperModel):
    """``build`` compiles the age view of the trial's model, ``fit`` batches with the trial's size."""

    def __init__(self, cfg: PipelineConfig, split: SplitData):
        super().__init__(name="siam")
        index = read_index(split.cache_dir)
        self.cfg, self.split = cfg, split
        self.crop_size = crop_size_of(index)
        self.prior = age_prior(np.array([index["videos"][v]["age"] for v in split.train_ids], float))
        self.space = search_space(cfg, self.crop_size)

    def trial_config(self, hp: kt.HyperParameters) -> PipelineConfig:
        """The pipeline config of the trial ``hp`` describes."""
        return apply_values(self.cfg, declare(hp, self.space))

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        trial = self.trial_config(hp)
        # The schedule spans the search's epoch budget, not the final training's.
        schedule = dataclasses.replace(trial.train, epochs=self.cfg.tune.max_epochs)
        model = age_view(build_siam(trial.model, crop_size=self.crop_size, age_prior=self.prior))
        model.compile(
            optimizer=make_optimizer(schedule, steps_per_epoch(len(self.split.train_ids), trial.data.batch_size)),
            loss=make_loss(trial.train),
            metrics=[keras.metrics.MeanAbsoluteError(name="age_mae")],
        )
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        trial = self.trial_config(hp)
        data, landmarks = trial.data, trial.model.reads_landmarks
        seed = self.cfg.runtime.seed if (self.cfg.runtime.deterministic or self.cfg.data.deterministic) else None
        cache, split = self.split.cache_dir, self.split
        train = build_dataset(cache, split.train_ids, data, training=True, seed=seed, landmarks=landmarks)
        val = build_dataset(cache, split.val_ids, data, training=False, landmarks=landmarks)
        kwargs.setdefault("shuffle", False)  # the tf.data pipeline shuffles
        # Score the weights a trained run would keep (EMA, recalibrated BN), as train's checkpoint does.
        averaging = weight_averaging_callbacks(self.cfg.train, age_targets(train, model))
        kwargs["callbacks"] = averaging + list(kwargs.get("callbacks") or [])
        history = model.fit(age_targets(train, model), validation_data=age_targets(val, model), **kwargs)
        history.history[EPOCHS_METRIC] = [float(len(history.epoch))] * len(history.epoch)
        return history
