"""k-fold cross-validation on the tiny prepared dataset (1 epoch per training)."""

import csv
import json

import pytest

from age_estimation.experiments.crossval import cross_validate

pytestmark = pytest.mark.slow


def test_cross_validation_reports_every_fold(tiny_config, tmp_path):
    # two trainings: no BN recalibration and no test-time flip (none of the figures checked needs them)
    cfg = tiny_config("train.epochs=1", "train.bn_recalibration_batches=0", "inference.test_time_flip=false")
    summary = cross_validate(cfg, tmp_path / "cv", folds=[0, 1])
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert summary["val_mae_std"] >= 0 and summary["val_mae_mean"] > 0
    assert summary["pooled_val"]["count"] == sum(f["val"]["count"] for f in summary["folds"])
    assert 0.0 <= summary["pooled_val"]["cs5"] <= 1.0
    assert json.loads((tmp_path / "cv" / "crossval.json").read_text())["folds"][1]["fold"] == 1
    with open(tmp_path / "cv" / "crossval_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["fold"] for row in rows} == {"0", "1"}
    assert len({row["video_id"] for row in rows}) == len(rows), "a video validated in two folds"
    for name in ("crossval_predicted_vs_true.png", "crossval_error_by_age_group.png"):
        assert (tmp_path / "cv" / name).stat().st_size > 1000
