"""The calibration comparison's table: a summary per calibration over the runs, then a row per run."""

from __future__ import annotations

from age_estimation.experiments.calibration import LEVELS, markdown


def result(run: str, covered: float, width: float, names=("whole fold, one bin", "held back")) -> dict:
    scores = {name: {level: {"empirical_coverage": covered * level / 0.9, "mean_width": width * level}
                     for level in LEVELS} for name in names}
    at_18 = {name: {"false_positive_rate": 0.05 if covered < 0.9 else None} for name in names}
    return {"run": f"runs/x/{run}", "heldout_mae": 5.0, "calibration_mae": 4.5, "scores": scores, "at_18": at_18}


def test_summary_per_calibration_then_rows_per_run():
    text = markdown([result("fold0", 0.8, 20.0), result("fold1", 0.94, 18.0, names=("whole fold, one bin",))],
                    "python -m x runs")
    assert text.startswith("<!-- written by: python -m x runs on ")
    # the summary: mean coverage (width) per level, spread, lowest and runs under 85% at 90%
    # and the share of under-18s passed at 18 over the runs that had any (fold1's had none)
    assert ("| whole fold, one bin | 2 | 48.3% (9.5) | 87.0% (17.1) | 91.8% (18.0) | 7.0% | 80.0% | 1 | 5.0% |"
            in text)
    # a calibration a run could not fit (no held-back subjects) is summarised over the runs that have it
    assert "| held back | 1 | 44.4% (10.0) | 80.0% (18.0) | 84.4% (19.0) | 0.0% | 80.0% | 1 | 5.0% |" in text
    assert "| x/fold0 | 5.00 | 4.50 | held back | 44.4% (10.0) | 80.0% (18.0) | 84.4% (19.0) |" in text
    assert "| x/fold1 | 5.00 | 4.50 | held back |" not in text
