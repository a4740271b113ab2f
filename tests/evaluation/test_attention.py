"""Cue usage against the tiny synthetic dataset's ground truth: known predictions give known answers."""

import types
from pathlib import Path

import numpy as np
import pytest

from age_estimation.data.cache import read_index
from age_estimation.evaluation.attention import cue_usage, load_ground_truth, truth_rows


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
