"""The k-fold ablation: its table on hand-made predictions, resuming with a stand-in trainer, and (slow) a
real run on the tiny prepared dataset."""

from types import SimpleNamespace

import pytest
import yaml

from age_estimation.config import load_config, save_config, with_changes
from age_estimation.experiments import ablation as experiments
from age_estimation.experiments.ablation import (
    ABLATION_VARIANTS,
    FoldPredictions,
    ablation,
    ablation_markdown,
    ablation_plan,
    ablation_table,
    difference_from,
    floor_ratio,
)
from age_estimation.runs import CONFIG_NAME, PREDICTIONS_NAME

# Held-out videos per fold; the subject is the first two characters of the id.
FOLD_VIDEOS = {0: [("s1a", 30.0), ("s1b", 30.0), ("s2a", 60.0)], 1: [("s3a", 20.0), ("s4a", 50.0)]}


def _predictions(run_dir, rows):
    """Write a predictions CSV of (video id, true age, predicted age) rows into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = ["video_id,subject,label,age,predicted,abs_error,fold"]
    lines += [f"{vid},{vid[:2]},posed,{age},{pred},{abs(pred - age)}," for vid, age, pred in rows]
    (run_dir / PREDICTIONS_NAME).write_text("\n".join(lines) + "\n")
    return run_dir


def _variant(root, name, errors, slope_shares=None):
    """Hand-made runs of one variant: fold -> signed error per video of ``FOLD_VIDEOS[fold]``; fold -> the
    hair_grey slope share in ``slope_shares`` (a fold left out has a record without one)."""
    runs, dirs = [], {}
    for fold, signed in errors.items():
        rows = [(vid, age, age + e) for (vid, age), e in zip(FOLD_VIDEOS[fold], signed)]
        dirs[fold] = _predictions(root / f"{name}-fold{fold}", rows)
        usage = {"model": 0.1 * (fold + 1), "oracle": 0.2 + 0.2 * fold}
        if fold in (slope_shares or {}):
            usage["slope_share"] = slope_shares[fold]
        runs.append({"variant": name, "fold": fold, "mae": sum(abs(e) for e in signed) / len(signed),
                     "mean_predictor_mae": 10.0 + fold, "temporal_ratio": 2.0 + fold, "spatial_ratio": None,
                     "cue_usage": {"hair_grey": usage}})
    return runs, FoldPredictions.read(dirs)


def test_table_picks_the_lowest_pooled_mae_and_pairs_the_others_with_it(tmp_path):
    a_runs, a = _variant(tmp_path, "a", {0: [1, 0, -2], 1: [1, -1]}, {0: 0.5})  # pooled MAE 5 / 5 = 1.0
    b_runs, b = _variant(tmp_path, "b", {0: [2, 0, 2], 1: [0, 0]}, {0: 0.6, 1: 1.0})  # 4 / 5 = 0.8: the best
    c_runs, c = _variant(tmp_path, "c", {0: [3, -3, 3]})  # one fold done, 3.0, no slope share recorded
    oracle = {vid: 0.5 for fold in FOLD_VIDEOS.values() for vid, _ in fold}
    table = ablation_table(a_runs + b_runs + c_runs, {"a": a, "b": b, "c": c}, oracle, folds_planned=2)
    a_row, b_row, c_row = table
    assert [row["best"] for row in table] == [False, True, False] and b_row["minus_best"] is None
    assert (b_row["folds"], b_row["mae_per_fold"]) == ([0, 1], [pytest.approx(4 / 3), 0.0])
    assert b_row["mae_mean"] == pytest.approx(2 / 3) and b_row["mae_std"] == pytest.approx(2 / 3)
    assert b_row["pooled_mae"] == pytest.approx(0.8) and b_row["oracle_mae"] == pytest.approx(0.5)
    assert b_row["floor_ratio"]["ratio"] == pytest.approx(1.6)
    assert b_row["floor_ratio"]["low"] <= 1.6 <= b_row["floor_ratio"]["high"]
    # a minus b per video: -1, 0, 0 | +1, +1 -> +0.2 over both folds
    assert a_row["minus_best"]["difference"] == pytest.approx(0.2) and a_row["minus_best"]["folds"] == 2
    assert a_row["minus_best"]["low"] <= 0.2 <= a_row["minus_best"]["high"]
    # c against b on fold 0 only (the one both have done): +1, +3, +1
    assert c_row["minus_best"]["difference"] == pytest.approx(5 / 3) and c_row["minus_best"]["folds"] == 1
    assert c_row["mae_std"] is None and c_row["folds_planned"] == 2
    assert (a_row["temporal_ratio"], a_row["temporal_ratio_min"]) == ([2.0, 3.0], 2.0)
    assert (a_row["spatial_ratio"], a_row["spatial_ratio_min"]) == ([None, None], None)
    assert a_row["cue_usage"]["hair_grey"] == {"model": pytest.approx(0.15), "oracle": pytest.approx(0.3),
                                               "slope_share": pytest.approx(0.5)}
    assert b_row["cue_usage"]["hair_grey"]["slope_share"] == pytest.approx(0.8)
    assert c_row["cue_usage"]["hair_grey"]["slope_share"] is None
    assert a_row["mean_predictor_mae"] == pytest.approx(10.5)
    markdown = ablation_markdown(table)
    assert "| minus b [95% CI] |" in markdown and "| b | 2/2 | 0.67 ± 0.67 | 1.33 / 0.00 | 0.80 | 1.60x [" in markdown
    assert "| c | 1/2 | 3.00 | 3.00 | 3.00 | 6.00x [" in markdown and "| best |" in markdown
    assert "| 2.00 / 3.00 (min 2.00) | n/a |" in markdown and "| oracle | +0.30 |" in markdown
    assert "Oracle floor on the held-out videos of 2 folds: 0.50 years" in markdown
    shares = markdown[markdown.index("Slope share, mean over the folds"):].splitlines()
    assert shares[2:7] == ["| variant | hair_grey |", "|---|---|", "| a | +0.50 |", "| b | +0.80 |",
                           "| c | n/a |"]


def test_cue_records_without_a_slope_share_render_without_its_table(tmp_path):
    runs, a = _variant(tmp_path, "a", {0: [1, 0, -2], 1: [1, -1]})
    markdown = ablation_markdown(ablation_table(runs, {"a": a}))
    assert "| a | +0.15 |" in markdown and "| oracle | +0.30 |" in markdown
    assert "Slope share" not in markdown


def test_a_partial_best_is_compared_over_its_folds_only(tmp_path):
    a_runs, a = _variant(tmp_path, "a", {0: [1, 0, -2], 1: [1, -1]})
    d_runs, d = _variant(tmp_path, "d", {0: [0, 0, 0]})  # the best so far, with one fold done
    a_row, d_row = ablation_table(a_runs + d_runs, {"a": a, "d": d})
    assert d_row["best"] and a_row["minus_best"]["difference"] == pytest.approx(1.0)
    assert a_row["floor_ratio"] is None and (a_row["folds_planned"], d_row["folds_planned"]) == (2, 2)
    assert "| +1.00 [" in ablation_markdown([a_row, d_row]) and "(over 1 fold) |" in ablation_markdown([a_row, d_row])
    assert difference_from(a, d) == difference_from(a.on_folds([0]), d)
    assert difference_from(a.on_folds([1]), d) is None


def test_fold_predictions_refuse_overlapping_folds_and_mismatched_videos(tmp_path):
    one = _predictions(tmp_path / "one", [("s1a", 30.0, 31.0)])
    again = _predictions(tmp_path / "again", [("s1a", 30.0, 33.0)])
    with pytest.raises(ValueError, match="again: video s1a is also held out by .*one"):
        FoldPredictions.read({0: one, 1: again})
    elsewhere = FoldPredictions.read({0: _predictions(tmp_path / "elsewhere", [("s9a", 30.0, 30.0)])})
    with pytest.raises(ValueError, match="elsewhere: its held-out videos differ from those of .*one"):
        difference_from(elsewhere, FoldPredictions.read({0: one}))
    with pytest.raises(ValueError, match="one: 1 held-out videos .*s1a.* no oracle error"):
        floor_ratio(FoldPredictions.read({0: one}), {})


def _stand_in_trainer(calls, fail_at=None):
    """A ``train`` that writes each fold's held-out predictions (error 1 year + the variant's rank) at once."""

    def fake_train(cfg, run_dir, verbose):
        calls.append((cfg.model.variant, cfg.model.dynamics, cfg.data.heldout_fold, cfg.export.after_training))
        if len(calls) == fail_at:
            raise KeyboardInterrupt("stopped")
        run_dir.mkdir(parents=True)
        save_config(cfg, run_dir / CONFIG_NAME)
        offset = 1.0 + list(ABLATION_VARIANTS.values()).index(
            {"variant": cfg.model.variant, "dynamics": cfg.model.dynamics})
        _predictions(run_dir, [(vid, age, age + offset) for vid, age in FOLD_VIDEOS[cfg.data.heldout_fold]])
        return SimpleNamespace(run_dir=run_dir, heldout=None,
                               metrics={"heldout": {"mae": offset, "mean_predictor_mae": 12.0}})

    return fake_train


def test_ablation_resumes_and_rewrites_the_table_after_every_run(tmp_path, monkeypatch):
    cfg = load_config(None, ["data.source=csv", "data.folds=2"])  # not synthetic: no oracle, no attention
    calls, out = [], tmp_path / "abl"
    monkeypatch.setattr(experiments, "train", _stand_in_trainer(calls, fail_at=3))
    with pytest.raises(KeyboardInterrupt):
        ablation(cfg, out, variants=("siam", "dynamics_only"))
    # folds are the outer loop: both variants finished fold 0 before the interruption
    assert calls == [("siam", False, 0, False), ("dynamics_only", True, 0, False), ("siam", False, 1, False)]
    partial = experiments.json.loads((out / "ablation.json").read_text())
    assert [(row["variant"], row["folds"]) for row in partial["table"]] == [("siam", [0]), ("dynamics_only", [0])]
    assert "| siam | 1/2 |" in (out / "ablation.md").read_text()

    calls.clear()
    monkeypatch.setattr(experiments, "train", _stand_in_trainer(calls))
    summary = ablation(cfg, out, variants=("siam", "dynamics_only"))
    assert calls == [("siam", False, 1, False), ("dynamics_only", True, 1, False)]
    assert [(r["variant"], r["fold"]) for r in summary["runs"]] == [
        ("siam", 0), ("dynamics_only", 0), ("siam", 1), ("dynamics_only", 1)]
    siam, dynamics_only = summary["table"]
    assert siam["best"] and siam["pooled_mae"] == pytest.approx(2.0) and siam["folds"] == [0, 1]
    assert dynamics_only["minus_best"]["difference"] == pytest.approx(4.0)
    assert (out / "ablation.md").read_text() == ablation_markdown(summary["table"])

    calls.clear()
    assert ablation(cfg, out, variants=("siam", "dynamics_only")) == summary and calls == []
    # a run recorded before a config key existed (the key at its default), or while a since removed
    # option was off, is still this configuration
    recorded = out / "siam-fold0" / CONFIG_NAME
    older = yaml.safe_load(recorded.read_text())
    del older["model"]["batch_norm_momentum"]
    older["model"].update(landmark_frame="template", dynamics_quantiles=0)
    recorded.write_text(yaml.safe_dump(older))
    assert ablation(cfg, out, variants=("siam",), folds=[0])["table"][0]["folds"] == [0, 1] and calls == []
    with pytest.raises(ValueError, match="siam-fold0: holds a run of another configuration"):
        ablation(with_changes(cfg, train={"epochs": 3}), out, variants=("siam",))
    # an interrupted run (config written, no result) of another configuration is refused as well
    (out / "no_spatial-fold0").mkdir()
    save_config(with_changes(cfg, train={"epochs": 3}), out / "no_spatial-fold0" / CONFIG_NAME)
    with pytest.raises(ValueError, match="no_spatial-fold0: holds a run of another configuration"):
        ablation(cfg, out, variants=("no_spatial",), folds=[0])
    assert calls == []


def test_an_ablation_run_a_fold_at_a_time_ends_with_one_table(tmp_path, monkeypatch):
    cfg = load_config(None, ["data.source=csv", "data.folds=2"])
    calls, out = [], tmp_path / "abl"
    monkeypatch.setattr(experiments, "train", _stand_in_trainer(calls))
    ablation(cfg, out, variants=("siam", "dynamics_only"), folds=[1])
    summary = ablation(cfg, out, variants=("siam", "dynamics_only"), folds=[0])
    assert [(v, f) for v, _, f, _ in calls] == [("siam", 1), ("dynamics_only", 1), ("siam", 0), ("dynamics_only", 0)]
    assert [(row["variant"], row["folds"]) for row in summary["table"]] == [("siam", [0, 1]), ("dynamics_only", [0, 1])]
    assert "| siam | 2/2 |" in (out / "ablation.md").read_text()
    assert ablation(cfg, out, variants=("siam",), folds=[0])["table"][0]["folds"] == [0, 1] and len(calls) == 4


def test_plan_defaults_to_every_variant_and_fold_and_checks_them():
    cfg = load_config(None, ["data.folds=3"])
    assert ablation_plan(cfg) == (list(ABLATION_VARIANTS), [0, 1, 2])
    assert ablation_plan(cfg, ["siam", "siam"], [2, 0, 2]) == (["siam"], [2, 0])
    with pytest.raises(ValueError, match=r"fold\(s\) \[3\] outside \[0, 3\)"):
        ablation_plan(cfg, ["siam"], [0, 3])
    with pytest.raises(ValueError, match="unknown ablation variant"):
        ablation_plan(cfg, ["bigger"])
    with pytest.raises(ValueError, match="at least one variant and one fold"):
        ablation_plan(cfg, ["siam"], [])


@pytest.mark.slow
def test_ablation_trains_each_variant_on_each_held_out_fold(tiny_config, tmp_path):
    # four trainings: no BN recalibration and no test-time flip (none of the figures checked needs them)
    cfg = tiny_config("train.epochs=1", "train.bn_recalibration_batches=0", "inference.test_time_flip=false")
    summary = ablation(cfg, tmp_path / "abl", variants=("siam", "siam_dynamics"), folds=[0, 1])
    assert [(r["variant"], r["fold"]) for r in summary["runs"]] == [
        ("siam", 0), ("siam_dynamics", 0), ("siam", 1), ("siam_dynamics", 1)]
    folds = {fold: FoldPredictions.read({fold: tmp_path / "abl" / f"siam-fold{fold}"}) for fold in (0, 1)}
    assert not set(folds[0].subjects) & set(folds[1].subjects)  # each fold holds out other subjects
    siam = summary["table"][0]
    assert siam["folds"] == [0, 1] and len(siam["temporal_ratio"]) == 2 and siam["spatial_ratio_min"] is not None
    assert siam["pooled_mae"] == pytest.approx(FoldPredictions.read(
        {fold: tmp_path / "abl" / f"siam-fold{fold}" for fold in (0, 1)}).mae())
    assert "smile_amplitude" in siam["cue_usage"] and siam["cue_usage"]["hair_grey"]["oracle"] is not None
    assert siam["floor_ratio"]["low"] <= siam["floor_ratio"]["ratio"] <= siam["floor_ratio"]["high"]
    assert sum(row["best"] for row in summary["table"]) == 1
    markdown = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| siam | 2/2 |" in markdown and "| siam_dynamics | 2/2 |" in markdown and "| oracle | " in markdown
    assert markdown == ablation_markdown(summary["table"])


def test_an_ablation_config_sets_the_entry_and_fold_without_touching_the_original():
    cfg = load_config(None)
    changed = experiments.ablation_config(cfg, "no_temporal", 2)
    assert (changed.model.variant, changed.model.dynamics, changed.data.heldout_fold) == ("no_temporal", True, 2)
    assert changed.export.after_training is False
    assert experiments.ablation_config(cfg, "siam", 2).model.dynamics is False  # the paper's pixel-only model
    assert (cfg.model.variant, cfg.model.dynamics, cfg.data.heldout_fold) == ("siam", True, -1)
