"""The main job end to end on the tiny dataset: prepare -> train one epoch (through MirroredStrategy on the one
local device) -> attention scores, no export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from age_estimation.runs import METRICS_NAME, MODEL_NAME
from age_estimation.workflow import run_pipeline

# A run's files, whichever strategy trained it.
RUN_FILES = ("config.yaml", "model.keras", "metrics.json", "heldout_predictions.csv", "checkpoints/best.weights.h5",
             "logs/training.csv", "plots/predicted_vs_true.png")


@pytest.mark.slow
def test_run_pipeline_trains_scores_attention_and_skips_export(tiny_config, tmp_path, monkeypatch) -> None:
    # The tiny runs' face ranges come from 6 training videos and refuse the validation ones: answer every face,
    # so the widening's calibration runs through predict.
    monkeypatch.setattr("age_estimation.inference.predict.video_verdict", lambda *args: None)
    # MirroredStrategy trains through fit like the default one: this run covers it too (one training, not two)
    cfg = tiny_config("train.epochs=1", "train.bn_recalibration_batches=1", "inference.test_time_flip=false",
                      "runtime.strategy=mirrored", f"runtime.runs_dir={tmp_path}", "inference.atypicality.videos=3",
                      "inference.atypicality.corruptions=[noise]", "inference.atypicality.severities=[1]")
    outcome = run_pipeline(cfg, progress=False, export=False)
    assert (outcome.run_dir / MODEL_NAME).is_file() and outcome.export is None
    for name in RUN_FILES:
        assert (outcome.run_dir / name).is_file(), name
    assert np.isfinite(outcome.metrics["heldout"]["mae"])
    assert set(outcome.timings) == {"data", "train", "atypicality"}
    assert outcome.prepare_report["rejected"] == []
    written = json.loads((outcome.run_dir / METRICS_NAME).read_text())
    assert written["heldout"]["mae"] == pytest.approx(outcome.metrics["heldout"]["mae"])
    attention = written["attention"]
    assert attention["frames"]["informative"] > 0 and attention["heldout_oracle_mae"] >= 0
    assert set(written["cue_usage"]) >= {"hair_grey", "smile_onset"}
    assert 0.0 <= written["interval"]["empirical_coverage"] <= 1.0  # kept when the attention scores are added
    assert (outcome.run_dir / "interval.json").is_file() and (outcome.run_dir / "model_card.json").is_file()
    # The widening was calibrated through predict on 3 validation videos and their noisy copies (too few
    # atypical copies for a bin, so none; its clean reference is written all the same).
    widening = json.loads((outcome.run_dir / "interval.json").read_text())["atypicality"]
    assert widening["videos"] >= 1 and len(widening["medians"]) == len(widening["measures"])
    assert written["atypicality"]["videos"] == 3 and written["atypicality"]["copies_answered"] >= 1
