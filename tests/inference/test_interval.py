"""The split-conformal interval: coverage on fresh data, widths that follow the noise, JSON, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from age_estimation.inference.interval import IntervalCalibration, fit_interval, interval_report


def heteroscedastic(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True ages 10..70 and predictions whose error grows with age (1 year at 10, 10 years at 70)."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(10, 70, count)
    return true, true + rng.normal(0.0, 1.0 + 0.15 * (true - 10))


def test_coverage_on_fresh_samples_is_near_nominal():
    calibration = fit_interval(*heteroscedastic(400, seed=0), coverage=0.9)
    covered = [interval_report(calibration, *heteroscedastic(2000, seed=s))["empirical_coverage"] for s in range(1, 11)]
    assert abs(np.mean(covered) - 0.9) < 0.03
    assert calibration.calibration_videos == 400


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.95])
def test_other_coverages_hold_too(coverage):
    calibration = fit_interval(*heteroscedastic(600, seed=3), coverage=coverage)
    report = interval_report(calibration, *heteroscedastic(5000, seed=4))
    assert abs(report["empirical_coverage"] - coverage) < 0.04
    assert report["coverage"] == coverage


def test_widths_follow_the_noise():
    calibration = fit_interval(*heteroscedastic(800, seed=5))
    low, high = calibration.bounds(np.array([15.0, 40.0, 65.0]))
    widths = high - low
    assert widths[0] < widths[1] < widths[2]
    assert widths[2] > 2 * widths[0]
    groups = {"10-29": (10, 29), "50-70": (50, 70)}
    by_group = interval_report(calibration, *heteroscedastic(2000, seed=6), groups=groups)["by_age_group"]
    assert by_group["10-29"]["mean_width"] < by_group["50-70"]["mean_width"]
    assert sum(g["count"] for g in by_group.values()) < 2000


def test_constant_noise_gives_one_width_and_the_interval_holds_the_prediction():
    rng = np.random.default_rng(7)
    true = rng.uniform(10, 70, 500)
    calibration = fit_interval(true, true + rng.normal(0, 3, 500))
    low, high = calibration.bounds(np.array([20.0, 60.0]))
    assert np.allclose(high - low, (high - low)[0], rtol=0.35)
    one_low, one_high = calibration.bounds(30.0)
    assert isinstance(one_low, float) and one_low < 30.0 < one_high


def test_low_bound_is_never_negative_and_outer_bins_extend():
    calibration = fit_interval(*heteroscedastic(200, seed=8))
    low, high = calibration.bounds(np.array([0.5, 200.0]))
    assert low[0] == 0.0 and high[1] > 200.0


def test_small_bins_cannot_explode_or_vanish():
    """Twenty videos, one with a huge error: no bin scale leaves a factor 4 of the overall one."""
    true = np.linspace(10, 70, 20)
    pred = true + 1.0
    pred[0] += 60.0
    calibration = fit_interval(true, pred, bins=4)
    overall = np.abs(true - pred).mean()
    assert max(calibration.bin_scales) <= 4 * overall + 1e-9
    assert min(calibration.bin_scales) >= overall / 4 - 1e-9


def test_few_videos_use_the_largest_residual():
    true, pred = np.array([20.0, 30.0, 40.0]), np.array([22.0, 29.0, 45.0])
    calibration = fit_interval(true, pred, coverage=0.9)
    report = interval_report(calibration, true, pred)
    assert report["empirical_coverage"] == 1.0 and len(calibration.bin_scales) == 1


def test_json_round_trip():
    calibration = fit_interval(*heteroscedastic(300, seed=9))
    data = json.loads(json.dumps(calibration.to_json()))
    again = IntervalCalibration.from_json(data)
    ages = np.array([12.0, 33.0, 68.0])
    assert np.allclose(again.bounds(ages), calibration.bounds(ages), atol=1e-3)
    assert again.coverage == 0.9 and again.calibration_videos == 300
    assert again.calibration_mae == pytest.approx(calibration.calibration_mae)


def test_report_sets_the_heldout_mae_beside_the_calibration_mae():
    true, pred = heteroscedastic(300, seed=11)
    calibration = fit_interval(true, pred)
    assert calibration.calibration_mae == pytest.approx(np.abs(true - pred).mean())
    harder_true, harder_pred = true, pred + np.where(pred > true, 3.0, -3.0)
    report = interval_report(calibration, harder_true, harder_pred)
    assert report["mae"] == pytest.approx(calibration.calibration_mae + 3.0)
    assert report["calibration_mae"] == calibration.calibration_mae
    assert report["empirical_coverage"] < 0.85


@pytest.mark.parametrize(
    ("true", "pred", "coverage", "message"),
    [
        ([], [], 0.9, "at least one video"),
        ([1.0, 2.0], [1.0], 0.9, "differ in length"),
        ([1.0, 2.0], [1.0, 2.0], 1.0, "strictly between 0 and 1"),
        ([1.0, 2.0], [1.0, 2.0], 0.0, "strictly between 0 and 1"),
        ([1.0, np.nan], [1.0, 2.0], 0.9, "finite"),
    ],
)
def test_bad_input_is_a_clear_value_error(true, pred, coverage, message):
    with pytest.raises(ValueError, match=message):
        fit_interval(np.array(true), np.array(pred), coverage=coverage)


def test_bad_json_is_a_clear_value_error():
    with pytest.raises(ValueError, match="lacks quantile"):
        IntervalCalibration.from_json({"coverage": 0.9, "bin_edges": [0, 1], "bin_scales": [1]})
    with pytest.raises(ValueError, match="k \\+ 1 bin edges"):
        IntervalCalibration.from_json({"coverage": 0.9, "quantile": 1, "bin_edges": [0], "bin_scales": [1]})


def test_scales_from_one_set_and_the_quantile_from_another():
    """The quantile is taken on the calibration videos alone: scales fitted elsewhere do not move it to
    cover those videos' own residuals any better, and coverage on fresh videos stays nominal."""
    scale_set, quantile_set = heteroscedastic(300, seed=11), heteroscedastic(300, seed=12)
    calibration = fit_interval(*quantile_set, coverage=0.9, scale_data=scale_set)
    assert calibration.calibration_videos == 300
    assert calibration.calibration_mae == pytest.approx(np.abs(quantile_set[0] - quantile_set[1]).mean())
    same_scales = fit_interval(*scale_set, coverage=0.9)
    assert calibration.bin_scales == same_scales.bin_scales and calibration.quantile != same_scales.quantile
    covered = [interval_report(calibration, *heteroscedastic(2000, seed=s))["empirical_coverage"] for s in range(20, 30)]
    assert abs(np.mean(covered) - 0.9) < 0.03


def test_the_widest_interval_takes_the_largest_scale_at_every_age():
    calibration = fit_interval(*heteroscedastic(800, seed=5))
    low, high = calibration.bounds(np.array([15.0, 65.0]), widest=True)
    assert np.allclose(high - np.array([15.0, 65.0]), calibration.quantile * max(calibration.bin_scales))
    narrow_low, narrow_high = calibration.bounds(15.0)
    assert narrow_high - narrow_low < high[0] - low[0]
