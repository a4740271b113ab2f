"""Export clips: cache clips for calibration and parity (held-out first), random ones without a cache;
the landmark stream where the model reads it."""

import numpy as np
import pytest

from age_estimation.config import load_config
from age_estimation.export.clips import cache_clips, parity_clips
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import make_landmark_cache
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


def test_a_cache_of_another_crop_size_is_not_the_runs_data(tmp_path):
    make_tiny_cache(tmp_path / "cache")  # CROP px crops
    other = load_config(None, TINY_OVERRIDES + [f"data.cache_dir={tmp_path / 'cache'}", f"align.crop_size={2 * CROP}"])
    clips, ages, _, source = parity_clips(other, 2 * CROP)
    assert ages is None and clips[0]["frames"].shape[2] == 2 * CROP
    assert f"holds {CROP} px crops and the run reads {2 * CROP} px ones" in source
    with pytest.raises(FileNotFoundError, match="int8 calibration needs clips of this run's data"):
        cache_clips(other, 2, "int8 calibration")


def test_clips_carry_the_landmark_stream_for_a_model_that_reads_it(tmp_path):
    make_landmark_cache(tmp_path / "cache", subjects=4)
    cfg = load_config(None, TINY_OVERRIDES + [f"data.cache_dir={tmp_path / 'cache'}", "export.parity_clips=3"])
    clips, _, _, source = parity_clips(cfg, CROP, LANDMARK_COUNT)
    assert source.startswith("cache") and len(clips) == 3
    assert set(clips[0]) == {"frames", "mask", "landmarks", "landmark_mask"}
    assert clips[0]["landmarks"].shape == (1, CLIP, LANDMARK_COUNT, 2) and clips[0]["landmarks"].dtype == np.float32
    assert clips[0]["landmark_mask"].shape == (1, CLIP) and set(np.unique(clips[0]["landmark_mask"])) <= {0.0, 1.0}
    assert set(cache_clips(cfg, 1, "calibration")[0][0]) == {"frames", "mask"}  # pixels only unless asked
    cfg.data.cache_dir = str(tmp_path / "missing")
    clips, ages, _, source = parity_clips(cfg, CROP, LANDMARK_COUNT)
    assert ages is None and source.startswith("random clips")
    assert clips[0]["landmarks"].shape == (1, CLIP, LANDMARK_COUNT, 2) and clips[0]["landmark_mask"].all()
