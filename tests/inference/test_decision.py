"""Age-threshold decisions from the interval, and their rates on held-out videos."""

from __future__ import annotations

import numpy as np
import pytest

from age_estimation.inference.decision import age_decision, threshold_rates


@pytest.mark.parametrize(("low", "high", "answer"), [
    (18.0, 30.0, "yes"), (19.5, 30.0, "yes"), (10.0, 17.9, "no"), (15.0, 22.0, "cannot tell"),
])
def test_yes_only_when_the_whole_interval_is_at_or_above(low, high, answer):
    assert age_decision(low, high, 18) == answer


def test_rates_count_passed_minors_refused_adults_and_undecided():
    true = np.array([15.0, 16.0, 17.0, 20.0, 30.0, 40.0])
    low = np.array([19.0, 10.0, 12.0, 14.0, 25.0, 10.0])
    high = np.array([25.0, 17.0, 20.0, 17.0, 35.0, 50.0])
    rates = threshold_rates(true, low, high, thresholds=[18])["18"]
    assert rates["under"] == 3 and rates["over"] == 3
    assert rates["false_positive_rate"] == pytest.approx(1 / 3)  # the 15-year-old passed
    assert rates["under_undecided_rate"] == pytest.approx(1 / 3)
    assert rates["over_refused_rate"] == pytest.approx(1 / 3)  # the 20-year-old refused
    assert rates["over_undecided_rate"] == pytest.approx(1 / 3)
    assert rates["undecided_rate"] == pytest.approx(2 / 6)


def test_a_side_without_videos_has_no_rate():
    rates = threshold_rates([30.0, 40.0], [25.0, 35.0], [35.0, 45.0], thresholds=[13])["13"]
    assert rates["under"] == 0 and rates["false_positive_rate"] is None and rates["over_refused_rate"] == 0.0
    with pytest.raises(ValueError, match="one interval per true age"):
        threshold_rates([1.0], [1.0, 2.0], [3.0])
