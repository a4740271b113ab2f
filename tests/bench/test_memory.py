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
