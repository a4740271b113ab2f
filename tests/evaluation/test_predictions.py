"""Held-out predictions: the evaluation clip of every video, with and without the test-time flip."""

import numpy as np

import age_estimation.models.siam.layers  # noqa: F401
from age_estimation.data.cache import read_index
from age_estimation.evaluation.predictions import collect_predictions
from age_estimation.models.siam.model import build_siam


def test_test_time_flip_averages_the_age_of_each_clip_and_its_mirror_image(tiny_config):
    cfg = tiny_config()
    ids = sorted(read_index(cfg.data.cache_dir)["videos"])[:5]
    model = build_siam(cfg.model, crop_size=cfg.align.crop_size)
    plain = collect_predictions(model, cfg.data.cache_dir, ids, cfg.data, keep_frames=5)
    flipped = collect_predictions(model, cfg.data.cache_dir, ids, cfg.data, test_time_flip=True)

    mirror = np.asarray(model({"frames": plain.frames[:, :, :, ::-1], "mask": plain.mask}, training=False)["age"])
    np.testing.assert_allclose(flipped.pred, (plain.pred + mirror[:, 0]) / 2, atol=1e-4)
    assert np.abs(flipped.pred - plain.pred).max() > 1e-4  # an untrained model is not mirror-symmetric
    np.testing.assert_array_equal(flipped.temporal, plain.temporal)
    assert plain.video_ids == flipped.video_ids == ids
