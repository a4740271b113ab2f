"""Bench sizes and the median-with-range summary of repeats."""

from age_estimation.bench.measure import FULL, QUICK, median_spread, repeat


def test_median_spread():
    assert median_spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_repeat_calls_the_measure_each_time():
    values = iter([5.0, 1.0, 3.0])
    assert repeat(lambda: next(values), 3) == {"median": 3.0, "min": 1.0, "max": 5.0, "n": 3}


def test_quick_sizes_are_smaller_than_full():
    assert QUICK.videos < FULL.videos and QUICK.latency_runs < FULL.latency_runs
    assert set(QUICK.variants) <= set(FULL.variants)
