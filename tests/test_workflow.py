"""The main job end to end on the tiny dataset: prepare -> train one epoch -> attention scores, no export."""

from __future__ import annotations

import json

import pytest

from age_estimation.runs import METRICS_NAME, MODEL_NAME
from age_estimation.workflow import run_pipeline


@pytest.mark.slow
def test_run_pipeline_trains_scores_attention_and_skips_export(tiny_config) -> None:
    cfg = tiny_config("train.epochs=1", "train.bn_recalibration_batches=1", "inference.test_time_flip=false")
    outcome = run_pipeline(cfg, progress=False, export=False)
    assert (outcome.run_dir / MODEL_NAME).is_file() and outcome.export is None
    assert set(outcome.timings) == {"data", "train"}
    assert outcome.prepare_report["rejected"] == []
    written = json.loads((outcome.run_dir / METRICS_NAME).read_text())
    assert written["heldout"]["mae"] == pytest.approx(outcome.metrics["heldout"]["mae"])
    attention = written["attention"]
    assert attention["frames"]["informative"] > 0 and attention["heldout_oracle_mae"] >= 0
    assert set(written["cue_usage"]) >= {"hair_grey", "smile_onset"}
    assert 0.0 <= written["interval"]["empirical_coverage"] <= 1.0  # kept when the attention scores are added
    assert (outcome.run_dir / "interval.json").is_file() and (outcome.run_dir / "model_card.json").is_file()
