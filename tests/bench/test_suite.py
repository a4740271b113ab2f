"""The bench: honest memory measurement, summaries, and a quick smoke run on the tiny dataset."""

import json
import sys

import pytest

from age_estimation.bench.suite import QUICK, bench, format_bench, median_spread, peak_rss_mib


def test_peak_rss_is_the_child_s_own_not_inherited_from_this_process():
    import tensorflow  # noqa: F401  (this process is big, as the bench's is)

    small = peak_rss_mib([sys.executable, "-c", "pass"])
    big = peak_rss_mib([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3)"])
    assert small["exit_code"] == big["exit_code"] == 0
    assert small["peak_rss_mib"] < 100
    assert 300 <= big["peak_rss_mib"] < 450


def test_median_spread():
    assert median_spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


@pytest.mark.slow
def test_quick_bench_measures_every_section(tiny_config, tmp_path):
    results = bench(tiny_config(), quick=True, out=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved) >= {"prepare", "input", "training", "inference", "memory", "machine"}
    assert saved["prepare"]["decode_fps"]["n"] == QUICK.repeats
    assert 0 < saved["input"]["ratio"] and saved["training"]["clips_per_second"] > 0
    runtimes = saved["inference"]["runtimes"]
    assert {"keras", "savedmodel", "tflite_float32@1", "tflite_float32@2"} <= set(runtimes)
    assert all(entry["size_bytes"] > 0 for entry in runtimes.values())
    assert all(entry["exit_code"] == 0 and entry["peak_rss_mib"] > 50 for entry in saved["memory"].values())
    table = (tmp_path / "bench.md").read_text()
    assert table == format_bench(results) and "| peak RSS, train |" in table


def test_model_figures_cover_every_variant():
    from age_estimation.bench.model import VARIANTS, variant_figures
    from age_estimation.config import load_config
    from tests.conftest import TINY_CONFIG

    rows = variant_figures(load_config(TINY_CONFIG), runs=2)
    assert [row["variant"] for row in rows] == list(VARIANTS)
    assert all(row["params"] > 0 and 0 < row["ms_min"] <= row["ms_median"] <= row["ms_max"] for row in rows)
    params = {row["variant"]: row["params"] for row in rows}
    assert params["frame_average"] < params["siam"] and params["no_spatial"] < params["siam"]
