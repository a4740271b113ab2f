"""The bench runner: a quick smoke run on the tiny dataset measures every section and writes its table."""

import json

import pytest

from age_estimation.bench.measure import QUICK
from age_estimation.bench.report import format_bench
from age_estimation.bench.suite import bench
from age_estimation.config import VARIANTS


@pytest.mark.slow
def test_quick_bench_measures_every_section(tiny_config, tmp_path):
    results = bench(tiny_config(), quick=True, out=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved) >= {"prepare", "input", "training", "inference", "memory", "machine"}
    assert saved["prepare"]["decode_fps"]["n"] == QUICK.repeats
    assert saved["prepare"]["rejected"] == 0, "the dataset's videos the bench picks are those that prepared"
    assert saved["prepare"]["jitter"]["crop_jitter_px"] >= 0 and saved["prepare"]["jitter_face_mesh"]["frames"] > 0
    assert 0 < saved["input"]["ratio"] and saved["training"]["clips_per_second"] > 0
    assert [row["variant"] for row in saved["training"]["variants"]] == list(VARIANTS)
    runtimes = saved["inference"]["runtimes"]
    assert {"keras", "savedmodel", "tflite_float32@1", "tflite_float32@2"} <= set(runtimes)
    assert all(entry["size_bytes"] > 0 for entry in runtimes.values())
    # the predict process with --run takes the runtime a user's trained run gives: its TFLite export
    assert saved["inference"]["predict_process"]["default"]["runtime"] == "tflite"
    assert all(entry["exit_code"] == 0 and entry["peak_rss_mib"] > 50 for entry in saved["memory"].values())
    table = (tmp_path / "bench.md").read_text()
    assert table == format_bench(results) and "| peak RSS, train |" in table
    assert "| model frame_average forward" in table and "| still-head crop jitter, face mesh" in table
