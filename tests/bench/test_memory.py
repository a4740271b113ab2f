"""Peak memory is measured per process, not inherited from the bench's own big process."""

import sys

from age_estimation.bench.memory import peak_rss_mib


def test_peak_rss_is_the_child_s_own_not_inherited_from_this_process():
    import tensorflow  # noqa: F401  (this process is big, as the bench's is)

    small = peak_rss_mib([sys.executable, "-c", "pass"])
    big = peak_rss_mib([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3)"])
    assert small["exit_code"] == big["exit_code"] == 0
    assert small["peak_rss_mib"] < 100
    assert 300 <= big["peak_rss_mib"] < 450


def test_long_video_memory_measures_prepare_on_a_clip_and_a_longer_video(tmp_path):
    from age_estimation.bench.memory import long_video_memory
    from age_estimation.config import load_config, save_config

    config = str(tmp_path / "config.yaml")
    save_config(load_config(None, ["align.crop_size=32"]), config)
    figures = long_video_memory(tmp_path, config, frames=60, clip_frames=20, size=(320, 180))
    clip, long = figures.values()
    assert list(figures) == ["prepare, 180p 0.8 s clip", "prepare, 180p 2.4 s video"]
    assert clip["exit_code"] == long["exit_code"] == 0 and (clip["frames"], long["frames"]) == (20, 60)
    assert 50 < clip["peak_rss_mib"] < 2000 and long["ratio_to_clip"] == long["peak_rss_mib"] / clip["peak_rss_mib"]
    assert not list(tmp_path.glob("*.mp4"))  # the videos are removed once measured
