"""The lines ``train`` prints: the interval, and the warning when held-out videos were harder."""

from __future__ import annotations

from age_estimation.cli.train import atypicality_line, interval_line, threshold_line


def interval(mae: float, calibration_mae: float | None) -> dict:
    return {"coverage": 0.9, "empirical_coverage": 0.815, "mean_width": 16.6, "mae": mae,
            "calibration_mae": calibration_mae}


def test_a_harder_heldout_set_is_said():
    line = interval_line(interval(5.14, 4.43))
    assert line.startswith("interval: 90% nominal, 81.5% of held-out ages inside, mean width 16.6 years")
    assert "harder than the videos the interval is calibrated on" in line and "MAE 5.14 vs 4.43" in line


def test_a_comparable_heldout_set_gives_one_line():
    assert "\n" not in interval_line(interval(4.6, 4.43))
    assert "\n" not in interval_line(interval(5.0, None))  # interval.json from before calibration_mae


def test_the_other_levels_follow_the_nominal_one():
    levels = {"0.5": {"empirical_coverage": 0.52, "mean_width": 6.1}, "0.9": {"empirical_coverage": 0.815,
              "mean_width": 16.6}, "0.95": {"empirical_coverage": 0.93, "mean_width": 21.0}}
    line = interval_line({**interval(4.6, 4.43), "levels": levels})
    assert line.endswith("; 50%: 52.0% (width 6.1), 95%: 93.0% (width 21.0)")


def test_the_threshold_line_gives_the_rates_at_18():
    rates = {"13": {}, "18": {"false_positive_rate": 0.0, "over_refused_rate": 0.021, "undecided_rate": 0.2}}
    assert threshold_line(rates) == ("at least 18? held out: under-18s passed 0.0%, over-18s refused 2.1%, "
                                     "undecided 20.0% (13, 21, 25 in metrics.json)")


def test_the_atypicality_line_gives_each_bin_and_the_limit_or_why_there_is_none():
    widening = {"videos": 40, "copies_answered": 420, "edges": [3.2, 6.5], "factors": [1.4, 2.1], "limit": 19.0}
    assert atypicality_line(widening) == ("atypical input: interval widened 1.40x from 3.2, 2.10x from 6.5, refused "
                                          "beyond 19.0 (420 answered copies of 40 validation videos)")
    assert "never refused" in atypicality_line({**widening, "edges": [], "factors": [], "limit": None})
    assert atypicality_line({"skipped": "no clean validation video got an age"}) == (
        "atypical input: not calibrated (no clean validation video got an age)")
