"""Model figures: every variant has parameters and a forward latency, fed the inputs it reads."""

from age_estimation.bench.model import variant_figures
from age_estimation.config import VARIANTS, load_config
from tests.conftest import TINY_CONFIG


def test_model_figures_cover_every_variant():
    cfg = load_config(TINY_CONFIG)
    rows = variant_figures(cfg, cfg.align.crop_size, runs=2)
    assert [row["variant"] for row in rows] == list(VARIANTS)
    assert all(row["params"] > 0 and 0 < row["ms_min"] <= row["ms_median"] <= row["ms_max"] for row in rows)
    params = {row["variant"]: row["params"] for row in rows}
    assert params["frame_average"] < params["siam"] and params["no_spatial"] < params["siam"]


def test_model_figures_feed_the_landmark_stream_to_a_dynamics_config():
    cfg = load_config(TINY_CONFIG, ["model.dynamics=true"])
    rows = variant_figures(cfg, cfg.align.crop_size, runs=1)
    pixels = {row["variant"]: row["params"] for row in variant_figures(load_config(TINY_CONFIG), 32, runs=1)}
    assert all(row["params"] > pixels[row["variant"]] for row in rows if row["variant"] != "dynamics_only")
