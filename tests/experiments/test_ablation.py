"""The ablation on the tiny prepared dataset (1 epoch per training)."""


import pytest

from age_estimation.config import with_changes
from age_estimation.experiments import ablation as experiments
from age_estimation.experiments.ablation import (
    SeedPredictions,
    ablation,
    ablation_markdown,
    difference_from,
    floor_ratio,
    seed_ensemble_mae,
)
from age_estimation.runs import PREDICTIONS_NAME

pytestmark = pytest.mark.slow


def test_ablation_table_covers_variants_and_seeds(tiny_config, tmp_path):
    cfg = tiny_config("train.epochs=1")
    summary = ablation(cfg, tmp_path / "abl", seeds=[0, 1], variants=("siam", "frame_average"))
    assert [(r["variant"], r["seed"]) for r in summary["runs"]] == [
        ("siam", 0), ("siam", 1), ("frame_average", 0), ("frame_average", 1)]
    siam = summary["table"][0]
    assert siam["seeds"] == 2 and siam["temporal_ratio"] is not None and siam["spatial_ratio"] is not None
    assert "smile_amplitude" in siam["cue_usage"] and "oracle" in siam["cue_usage"]["hair_grey"]
    assert siam["seed_ensemble_mae"] == pytest.approx(seed_ensemble_mae(SeedPredictions.read(
        [tmp_path / "abl" / f"siam-seed{seed}" for seed in (0, 1)])))
    markdown = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| siam | 2 |" in markdown and "| frame_average | 2 |" in markdown
    assert "| oracle | " in markdown and "smile_onset" in markdown and "| seed ensemble |" in markdown
    assert siam["floor_ratio"]["low"] <= siam["floor_ratio"]["ratio"] <= siam["floor_ratio"]["high"]
    assert siam["minus_siam"] is None and summary["table"][1]["minus_siam"]["low"] <= summary["table"][1][
        "minus_siam"]["high"]
    assert markdown == ablation_markdown(summary["table"])


def test_ablation_resumes_without_retraining_finished_runs(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("train.epochs=1")
    first = ablation(cfg, tmp_path / "abl", seeds=[0], variants=("frame_average",))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished ablation run was trained again")

    monkeypatch.setattr(experiments, "train", no_training)
    assert ablation(cfg, tmp_path / "abl", seeds=[0], variants=("frame_average",)) == first
    with pytest.raises(ValueError, match="frame_average-seed0: holds a finished run of another configuration"):
        ablation(tiny_config("train.epochs=2"), tmp_path / "abl", seeds=[0], variants=("frame_average",))


def test_with_changes_copies_without_touching_the_original(tiny_config):
    cfg = tiny_config()
    changed = with_changes(cfg, model={"variant": "no_spatial"}, runtime={"seed": 7})
    assert (changed.model.variant, changed.runtime.seed) == ("no_spatial", 7)
    assert (cfg.model.variant, cfg.runtime.seed) == ("siam", 0)


def _predictions(run_dir, rows):
    run_dir.mkdir(parents=True)
    lines = ["video_id,subject,label,age,predicted,abs_error,fold"]
    lines += [f"{vid},{vid[:2]},posed,{age},{pred},{abs(pred - age)}," for vid, age, pred in rows]
    (run_dir / PREDICTIONS_NAME).write_text("\n".join(lines) + "\n")
    return run_dir


def test_seed_ensemble_scores_the_averaged_predictions(tmp_path):
    one = _predictions(tmp_path / "a", [("v1", 30.0, 34.0), ("v2", 50.0, 44.0)])
    two = _predictions(tmp_path / "b", [("v2", 50.0, 52.0), ("v1", 30.0, 28.0)])
    # per video: (34 + 28) / 2 = 31 -> 1 year off; (44 + 52) / 2 = 48 -> 2 years off
    assert seed_ensemble_mae(SeedPredictions.read([one, two])) == pytest.approx(1.5)
    assert seed_ensemble_mae(SeedPredictions.read([one])) is None
    other = _predictions(tmp_path / "c", [("v1", 30.0, 30.0)])
    with pytest.raises(ValueError, match="c: its held-out videos differ"):
        SeedPredictions.read([one, other])


def test_difference_from_siam_is_paired_over_the_same_videos(tmp_path):
    siam = [_predictions(tmp_path / f"siam{i}", [("s1a", 30.0, 31.0 + i), ("s1b", 30.0, 30.0), ("s2a", 60.0, 58.0)])
            for i in range(2)]  # errors per video, averaged over the seeds: 1.5, 0, 2
    other = [_predictions(tmp_path / "other", [("s1a", 30.0, 33.5), ("s1b", 30.0, 30.0), ("s2a", 60.0, 62.0)])]
    siam, other = SeedPredictions.read(siam), SeedPredictions.read(other)
    result = difference_from(other, siam)  # per video: +2, 0, 0
    assert result["difference"] == pytest.approx(2 / 3)
    # two subjects: s1 (mean +1 over its two videos) and s2 (0); resampled means lie in [0, 1]
    assert 0.0 <= result["low"] <= result["difference"] <= result["high"] <= 1.0
    assert difference_from(siam, siam) == {"difference": 0.0, "low": 0.0, "high": 0.0}
    elsewhere = [_predictions(tmp_path / "elsewhere", [("s9a", 30.0, 30.0)])]
    with pytest.raises(ValueError, match="elsewhere: its held-out videos differ from those of .*siam0"):
        difference_from(SeedPredictions.read(elsewhere), siam)


def test_floor_ratio_divides_by_the_oracle_on_the_same_videos(tmp_path):
    runs = SeedPredictions.read(
        [_predictions(tmp_path / f"r{i}", [("s1a", 30.0, 33.0 + i), ("s2a", 60.0, 60.0 + i)]) for i in range(2)])
    # mean-over-seeds errors: 3.5 and 0.5 (mean 2.0); oracle errors 1.0 and 1.0
    result = floor_ratio(runs, {"s1a": 1.0, "s2a": 1.0})
    assert result["ratio"] == pytest.approx(2.0) and result["low"] == pytest.approx(0.5)
    assert result["high"] == pytest.approx(3.5)
    with pytest.raises(ValueError, match="r0: 1 held-out videos .*s2a.* no oracle error"):
        floor_ratio(runs, {"s1a": 1.0})
