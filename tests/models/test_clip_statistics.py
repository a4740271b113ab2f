"""MaskedStatistics and MaskedQuantiles: clip statistics over the marked steps only, serialization."""

import numpy as np
import pytest

from age_estimation.models.siam.clip_statistics import MaskedQuantiles, MaskedStatistics

RNG = np.random.default_rng(0)


def _features(shape):
    return RNG.normal(size=shape).astype("float32")


def test_masked_statistics_pool_the_marked_steps_only():
    x = _features((2, 6, 3))
    marks = np.array([[1, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]], "float32")
    out = np.asarray(MaskedStatistics()(x, marks))
    assert out.shape == (2, 9)
    kept = x[0, marks[0] > 0]
    np.testing.assert_allclose(out[0, :3], kept.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0, 3:6], kept.std(axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out[0, 6:], kept.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out[1], np.zeros(9), atol=1e-2)  # nothing marked: zeros, not -1e9
    changed = x.copy()
    changed[0, 2] += 100.0  # an unmarked step reaches no statistic
    np.testing.assert_allclose(MaskedStatistics()(changed, marks), out, atol=1e-6)


def test_masked_quantiles_are_the_marked_steps_quantiles_rescaled_to_their_range():
    x = _features((3, 7, 2))
    marks = np.array([[1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0]], "float32")
    levels = 4
    out = np.asarray(MaskedQuantiles(levels)(x, marks))
    assert out.shape == (3, (2 * levels + 1) * 2)
    for row in range(2):
        kept = np.sort(x[row, marks[row] > 0], axis=0)
        at = (np.arange(levels) + 0.5) / levels * len(kept) - 0.5
        expected = np.stack([np.interp(at, np.arange(len(kept)), kept[:, d]) for d in range(2)], axis=1)
        spread = expected[-1] - expected[0]
        np.testing.assert_allclose(out[row, : 2 * levels].reshape(levels, 2), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[row, 2 * levels : 4 * levels].reshape(levels, 2),
                                   (expected - expected[0]) / np.maximum(spread, 1e-2), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[row, -2:], spread, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[2], 0.0)  # nothing marked: zeros, not the 1e9 filler
    changed = x.copy()
    changed[1, 4] += 100.0  # an unmarked step reaches no quantile
    np.testing.assert_allclose(MaskedQuantiles(levels)(changed, marks), out, atol=1e-6)
    clone = MaskedQuantiles.from_config(MaskedQuantiles(levels, min_range=0.5).get_config())
    assert (clone.levels, clone.min_range) == (levels, 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        MaskedQuantiles(1)
