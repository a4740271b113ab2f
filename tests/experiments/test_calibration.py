"""The calibration comparison's table: a row per run and calibration, then the mean and lowest coverage."""

from __future__ import annotations

from age_estimation.experiments.calibration import LEVELS, markdown


def result(run: str, covered: float, width: float) -> dict:
    scores = {name: {level: {"empirical_coverage": covered * level / 0.9, "mean_width": width * level}
                     for level in LEVELS} for name in ("held back", "whole fold")}
    return {"run": f"runs/x/{run}", "heldout_mae": 5.0, "calibration_mae": 4.5, "scores": scores}


def test_rows_per_run_and_a_mean_with_the_lowest_fold():
    text = markdown([result("fold0", 0.8, 20.0), result("fold1", 0.94, 18.0)], "python -m x runs")
    assert text.startswith("<!-- written by: python -m x runs on ")
    assert "| fold0 | 5.00 | 4.50 | held back | 44.4% (10.0) | 80.0% (18.0) | 84.4% (19.0) |" in text
    assert "| mean of 2 | | | whole fold | 48.3% (9.5), lowest 44.4% | 87.0% (17.1), lowest 80.0% |" in text
