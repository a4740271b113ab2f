"""The search space: its first point is the base config, every choice maps onto a config that builds."""

import keras_tuner as kt

from age_estimation.config import load_config, to_dict
from age_estimation.models.siam.model import build_siam
from age_estimation.tuning.space import apply_values, declare, search_space
from tests.conftest import TINY_CONFIG


def test_the_first_point_of_the_space_is_the_base_config():
    for path in (TINY_CONFIG, TINY_CONFIG.parent / "default.yaml"):
        cfg = load_config(path)
        values = declare(kt.HyperParameters(), search_space(cfg, crop_size=cfg.align.crop_size))
        assert to_dict(apply_values(cfg, values)) == to_dict(cfg), path


def test_every_choice_maps_onto_a_valid_config_that_builds():
    cfg = load_config(TINY_CONFIG)
    space = search_space(cfg, crop_size=32)
    assert space.depths == [1, 2, 3] and space.widths == [4, 8, 16] and space.batch_sizes == [2, 4, 8]
    for depth in space.depths:
        for block in range(depth):
            hp = kt.HyperParameters()
            hp.values.update({"conv_depth": depth, "conv_width": 16, f"attention_block_d{depth}": block,
                              "rnn": "gru", "attention_normalization": "sigmoid", "attention_mode": "plain",
                              "batch_size": 8, "learning_rate": 1e-3})
            tuned = apply_values(cfg, declare(hp, space))
            assert tuned.model.conv_filters == [16 * (i + 1) for i in range(depth)]
            assert tuned.model.attention_after_block == block
            assert (tuned.model.rnn, tuned.model.attention_normalization, tuned.model.attention_mode) == (
                "gru", "sigmoid", "plain")
            assert tuned.data.batch_size == 8 and tuned.train.learning_rate == 1e-3
    model = build_siam(tuned.model, crop_size=32)
    assert model.spatial_grid == (32 // 2**block,) * 2  # the attention map sits after the tuned conv block
    assert cfg.model.conv_filters == [8, 16], "the base config must not be modified"


def test_the_depth_range_respects_a_small_crop():
    cfg = load_config(TINY_CONFIG, ["model.conv_filters=[8, 8, 8, 8]", "model.attention_after_block=0"])
    assert search_space(cfg, crop_size=16).depths == [3]


def test_the_landmark_stream_is_a_choice_where_the_cache_holds_it():
    cfg = load_config(TINY_CONFIG)
    space = search_space(cfg, crop_size=32)
    assert cfg.align.landmarks and space.dynamics == [False, True] and space.defaults["dynamics"] is False
    for choice in (True, False):
        hp = kt.HyperParameters()
        hp.values["dynamics"] = choice
        assert apply_values(cfg, declare(hp, space)).model.dynamics is choice
    tuned = load_config(TINY_CONFIG, ["model.dynamics=true"])
    assert declare(kt.HyperParameters(), search_space(tuned, 32))["dynamics"] is True  # the base config first
    pixels = load_config(TINY_CONFIG, ["align.landmarks=false"])
    assert search_space(pixels, 32).dynamics == [False]  # a cache without the stream cannot feed it
    model = build_siam(apply_values(cfg, {**declare(kt.HyperParameters(), space), "dynamics": True}).model, 32)
    assert model.reads_landmarks


def test_random_trials_choose_the_stream_reproducibly():
    hp = kt.HyperParameters()
    declare(hp, search_space(load_config(TINY_CONFIG), crop_size=32))
    (choice,) = [p for p in hp.space if p.name == "dynamics"]
    draws = [choice.random_sample(seed) for seed in range(16)]  # what the seeded oracle draws
    assert draws == [choice.random_sample(seed) for seed in range(16)] and set(draws) == {False, True}
