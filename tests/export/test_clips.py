"""Export clips: cache clips for calibration and parity (held-out first), random ones without a cache."""

import numpy as np
import pytest

from age_estimation.config import load_config
from age_estimation.export.clips import cache_clips, parity_clips
from tests.tiny_run import CLIP, CROP, TINY_OVERRIDES, make_tiny_cache


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cache = tmp_path_factory.mktemp("clips") / "cache"
    make_tiny_cache(cache)
    return load_config(None, TINY_OVERRIDES + [f"data.cache_dir={cache}", "export.parity_clips=4"])


def test_cache_clips_are_batch_one_clips_with_ages(cfg):
    clips, ages, heldout = cache_clips(cfg, 3, "calibration")
    assert len(clips) == len(ages) == 3 and heldout == 0
    assert clips[0]["frames"].shape == (1, CLIP, CROP, CROP, 3) and clips[0]["frames"].dtype == np.uint8
    assert clips[0]["mask"].dtype == np.float32 and all(10 <= a <= 70 for a in ages)


def test_parity_takes_heldout_first_and_falls_back_to_random(cfg, tmp_path):
    clips, ages, heldout, source = parity_clips(cfg, CROP)
    assert len(clips) == 4 and 1 <= heldout < 4 and source.startswith("cache")
    cfg.data.cache_dir = str(tmp_path / "missing")
    clips, ages, heldout, source = parity_clips(cfg, CROP)
    assert ages is None and heldout == 0 and len(clips) == 4 and source.startswith("random clips (parity needs")
    with pytest.raises(FileNotFoundError, match="int8 calibration needs clips"):
        cache_clips(cfg, 2, "int8 calibration")
