"""Eye-track smoothing arithmetic: the running median and the Savitzky-Golay weights."""

from __future__ import annotations

import numpy as np

from age_estimation.video.tracking import _running_median3, _savgol_weights, smooth_tracks


def test_the_running_median_is_the_median_of_each_frame_and_its_neighbours():
    rng = np.random.default_rng(0)
    for values in (rng.normal(size=(40, 4)), rng.integers(0, 3, size=(40, 4)).astype(float)):
        padded = np.pad(values, ((1, 1), (0, 0)), mode="edge")
        expected = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
        np.testing.assert_array_equal(_running_median3(values), expected)


def test_the_smoothing_weights_sum_to_one_and_keep_a_quadratic():
    weights = _savgol_weights(7)
    offsets = np.arange(-3, 4)
    assert abs(weights.sum() - 1) < 1e-12
    assert abs(weights @ (2.0 + 0.5 * offsets - 0.25 * offsets**2) - 2.0) < 1e-12


def test_a_single_frame_outlier_is_removed():
    track = np.tile(np.array([[10.0, 20.0], [30.0, 20.0]]), (15, 1, 1))
    track[7] += 25.0
    np.testing.assert_allclose(smooth_tracks(track, 5), np.tile(track[0], (15, 1, 1)))
