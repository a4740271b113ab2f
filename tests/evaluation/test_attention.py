"""Cue usage against the tiny synthetic dataset's ground truth: known predictions give known answers."""

import types
from pathlib import Path

import numpy as np
import pytest

from age_estimation.data.cache import read_index
from age_estimation.evaluation.attention import cue_usage, load_ground_truth, slope_share, truth_rows


def predictions_from(cfg, predict) -> types.SimpleNamespace:
    """Predictions for every cached video, ``predict(ground-truth record) -> age``."""
    truth = load_ground_truth(Path(cfg.data.path))
    ids = sorted(read_index(cfg.data.cache_dir)["videos"])
    probe = types.SimpleNamespace(video_ids=ids, pred=np.zeros(len(ids)))
    records = dict(truth_rows(probe.video_ids, truth, Path(cfg.data.path), cfg.data.cache_dir))
    probe.pred = np.array([predict(records[row]) for row in range(len(ids))])
    return probe


def test_a_model_that_is_the_oracle_reads_the_cues_as_the_oracle_does(tiny_config):
    cfg = tiny_config()
    usage = cue_usage(predictions_from(cfg, lambda v: v["oracle_age"]), Path(cfg.data.path), cfg.data.cache_dir)
    assert set(usage) == set(load_ground_truth(Path(cfg.data.path))["cue_model"])
    for cue, figures in usage.items():
        assert figures["model"] == pytest.approx(figures["oracle"]), cue
        assert figures["slope_share"] == pytest.approx(1.0), cue
    assert np.mean([f["oracle"] for f in usage.values()]) > 0.05  # the oracle follows the cues' noise


def test_a_model_driven_by_one_cue_correlates_with_that_cue_only(tiny_config):
    cfg = tiny_config()
    truth = load_ground_truth(Path(cfg.data.path))
    low, high = truth["generator"]["min_age"], truth["generator"]["max_age"]
    exponent = truth["cue_model"]["hair_grey"]["exponent"]

    def hair_only(video: dict) -> float:
        t = (video["age"] - low) / (high - low)
        return video["age"] + 30.0 * (video["cues"]["hair_grey"] - t**exponent)

    usage = cue_usage(predictions_from(cfg, hair_only), Path(cfg.data.path), cfg.data.cache_dir)
    assert usage["hair_grey"]["model"] == pytest.approx(1.0, abs=1e-3)
    assert max(abs(f["model"]) for cue, f in usage.items() if cue != "hair_grey") < 0.99


def test_half_the_oracles_error_plus_unrelated_noise_has_slope_share_one_half(tiny_config):
    cfg = tiny_config()
    truth = load_ground_truth(Path(cfg.data.path))
    low, high = truth["generator"]["min_age"], truth["generator"]["max_age"]
    ids = sorted(read_index(cfg.data.cache_dir)["videos"])
    records = dict(truth_rows(ids, truth, Path(cfg.data.path), cfg.data.cache_dir))
    rows = [records[row] for row in range(len(ids))]
    t = np.array([(v["age"] - low) / (high - low) for v in rows])
    # Noise with no part along a constant or any cue's residual, three times the oracle's error in spread.
    basis = np.column_stack([np.ones(len(rows))] + [[v["cues"][cue] for v in rows] - t ** spec["exponent"]
                                                    for cue, spec in truth["cue_model"].items()])
    noise = np.random.default_rng(0).normal(size=len(rows))
    noise -= basis @ np.linalg.lstsq(basis, noise, rcond=None)[0]
    oracle_error = np.array([v["oracle_age"] - v["age"] for v in rows])
    noise *= 3.0 * oracle_error.std() / noise.std()
    ages = np.array([v["age"] for v in rows])
    probe = types.SimpleNamespace(video_ids=ids, pred=ages + 0.5 * oracle_error + noise)
    usage = cue_usage(probe, Path(cfg.data.path), cfg.data.cache_dir)
    for cue, figures in usage.items():
        assert figures["slope_share"] == pytest.approx(0.5), cue
        assert abs(figures["model"]) < 0.25 * abs(figures["oracle"]), cue  # the correlation is diluted


def test_slope_share_is_the_models_slope_over_the_oracles_and_none_when_undefined():
    rng = np.random.default_rng(1)
    residual = rng.normal(size=20000)
    oracle_error = 4.0 * residual + rng.normal(size=residual.size)
    model_error = 0.5 * 4.0 * residual + 3.0 * rng.normal(size=residual.size)  # half the cue, other errors
    assert slope_share(model_error, oracle_error, residual) == pytest.approx(0.5, abs=0.02)
    assert np.corrcoef(model_error, residual)[0, 1] < 0.6 * np.corrcoef(oracle_error, residual)[0, 1]
    assert slope_share(-model_error, oracle_error, residual) == pytest.approx(-0.5, abs=0.02)
    assert slope_share(rng.normal(size=residual.size), oracle_error, residual) == pytest.approx(0.0, abs=0.02)
    assert slope_share(model_error[:2], oracle_error[:2], residual[:2]) is None  # too few rows
    assert slope_share(model_error, np.full(residual.size, 2.0), residual) is None  # the oracle ignores it
    assert slope_share(model_error, oracle_error, np.ones(residual.size)) is None  # the cue has no noise


def test_videos_outside_the_ground_truth_are_a_clear_error(tiny_config, tmp_path):
    cfg = tiny_config()
    (tmp_path / "ground_truth.json").write_text('{"videos": {}, "generator": {}, "cue_model": {}}')
    probe = predictions_from(cfg, lambda v: v["age"])
    with pytest.raises(ValueError, match="none of the evaluated videos is in the ground truth"):
        cue_usage(probe, tmp_path, cfg.data.cache_dir)


def test_the_ground_truth_is_found_through_a_linked_data_folder_from_any_directory(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config()
    ids = sorted(read_index(cfg.data.cache_dir)["videos"])
    truth = load_ground_truth(Path(cfg.data.path))
    direct = truth_rows(ids, truth, Path(cfg.data.path), cfg.data.cache_dir)
    link = tmp_path / "linked_videos"
    link.symlink_to(Path(cfg.data.path).resolve(), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert truth_rows(ids, truth, link, cfg.data.cache_dir) == direct
