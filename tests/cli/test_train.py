"""The lines ``train`` prints: the interval, and the warning when held-out videos were harder."""

from __future__ import annotations

from age_estimation.cli.train import interval_line


def interval(mae: float, calibration_mae: float | None) -> dict:
    return {"coverage": 0.9, "empirical_coverage": 0.815, "mean_width": 16.6, "mae": mae,
            "calibration_mae": calibration_mae}


def test_a_harder_heldout_set_is_said():
    line = interval_line(interval(5.14, 4.43))
    assert line.startswith("interval: 90% nominal, 81.5% of held-out ages inside, mean width 16.6 years")
    assert "harder than the validation fold" in line and "MAE 5.14 vs 4.43" in line


def test_a_comparable_heldout_set_gives_one_line():
    assert "\n" not in interval_line(interval(4.6, 4.43))
    assert "\n" not in interval_line(interval(5.0, None))  # interval.json from before calibration_mae
