"""Age-regression metrics and the subject-bootstrap interval."""

import numpy as np
import pytest

from age_estimation.evaluation.metrics import cumulative_score, regression_report, subject_bootstrap_interval


def test_regression_report_figures():
    report = regression_report(np.array([10.0, 30.0, 65.0]), np.array([12.0, 36.0, 65.0]), train_mean=40.0)
    assert report["mae"] == pytest.approx(8 / 3) and report["cs5"] == pytest.approx(2 / 3)
    assert report["mean_predictor_mae"] == pytest.approx((30 + 10 + 25) / 3)
    assert report["age_groups"]["60+"] == {"mae": 0.0, "count": 1}
    assert cumulative_score(np.array([1.0]), np.array([7.0])) == 0.0


def test_bootstrap_interval_resamples_subjects_not_videos():
    # subject a: 9 videos at 0; subject b: 1 video at 10. Resampling videos would keep the mean near 1;
    # resampling subjects gives means of 0 (a, a), 10 (b, b) or 1 (a, b): the interval spans them.
    values = np.array([0.0] * 9 + [10.0])
    subjects = np.array(["a"] * 9 + ["b"])
    assert subject_bootstrap_interval(values, subjects) == (0.0, 10.0)
    # a constant difference has no spread; a mean shift moves the interval with it
    assert subject_bootstrap_interval(np.full(6, 0.5), np.arange(6)) == (0.5, 0.5)
    rng = np.random.default_rng(3)
    noise, people = rng.normal(size=400), np.repeat(np.arange(100), 4)
    low, high = subject_bootstrap_interval(noise, people)
    shifted = subject_bootstrap_interval(noise + 2.0, people)
    assert low < noise.mean() < high and shifted == pytest.approx((low + 2.0, high + 2.0))
    assert 0.1 < high - low < 0.6  # about 4 standard errors of 1/sqrt(400)


def test_bootstrap_interval_of_a_ratio_of_means():
    floor = np.array([1.0, 3.0, 2.0, 2.0])
    assert subject_bootstrap_interval(1.5 * floor, np.array(["a", "a", "b", "c"]), denominator=floor) == (1.5, 1.5)
    # subject a: errors 4 over a floor of 2 (2x); subject b: 1 over 1 (1x): the ratio spans 1x .. 2x
    low, high = subject_bootstrap_interval(np.array([4.0, 1.0]), np.array(["a", "b"]), denominator=np.array([2.0, 1.0]))
    assert (low, high) == (1.0, 2.0)


def test_bootstrap_interval_needs_a_subject_and_a_denominator_per_value():
    with pytest.raises(ValueError, match="one subject per value"):
        subject_bootstrap_interval(np.ones(3), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="one denominator per value"):
        subject_bootstrap_interval(np.ones(2), np.array(["a", "b"]), denominator=np.ones(3))
