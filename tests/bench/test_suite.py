"""The bench runner: a quick smoke run on the tiny dataset measures every section and writes its table."""

import dataclasses
import functools
import json

import pytest

from age_estimation.bench import memory, suite
from age_estimation.bench.measure import QUICK
from age_estimation.bench.report import format_bench
from age_estimation.bench.suite import bench
from age_estimation.config import VARIANTS

# Smaller than QUICK (the CI bench, 2 minutes here): every section still runs, each measurement once, on
# fewer and shorter videos, with one TFLite variant.
SMOKE = dataclasses.replace(QUICK, videos=2, repeats=1, train_steps=1, latency_runs=2, predict_seconds=0.5,
                            variants=("float32",), long_video_seconds=2.0, hd_video_frames=12)


@pytest.mark.slow
def test_quick_bench_measures_every_section(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "QUICK", SMOKE)
    # the long-video memory figures' 1080p clip: 20 frames, not 250 (writing and preparing those is 10 s here)
    monkeypatch.setattr(memory, "long_video_memory", functools.partial(memory.long_video_memory, clip_frames=20))
    # no BN recalibration or test-time flip in the train and predict processes measured: no figure checked needs them
    results = bench(tiny_config("train.bn_recalibration_batches=0", "inference.test_time_flip=false"), quick=True,
                    out=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved) >= {"prepare", "input", "training", "inference", "memory", "machine"}
    assert saved["sizes"]["videos"] == SMOKE.videos and saved["prepare"]["videos"] == SMOKE.videos
    assert saved["prepare"]["decode_fps"]["n"] == SMOKE.repeats
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
    assert {"prepare, 1080p 0.8 s clip", "predict, 1080p 2 s video"} <= set(saved["memory"])
    table = (tmp_path / "bench.md").read_text()
    assert table == format_bench(results) and "| peak RSS, train |" in table
    assert "| model frame_average forward" in table and "| still-head crop jitter, face mesh" in table
