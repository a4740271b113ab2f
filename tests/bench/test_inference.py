"""The bench's predict figures: start-up, whole process and decode + detect of the same video; predict time."""

import dataclasses
from pathlib import Path

import pytest

from age_estimation.bench.inference import bench_predict, bench_predict_process
from age_estimation.bench.measure import QUICK
from age_estimation.export.run import export_run
from tests.tiny_run import load_tiny_run, make_tiny_run

pytestmark = pytest.mark.slow  # a tiny run, its float32 export and two predict processes


def test_predict_process_figures_are_produced(tmp_path):
    run = make_tiny_run(tmp_path)
    tflite = Path(export_run(run, variants=["float32"], report=False)["tflite"]["variants"]["float32"])
    cfg, _ = load_tiny_run(run)
    sizes = dataclasses.replace(QUICK, repeats=1, predict_seconds=0.5)
    artifact = type("Artifact", (), {"variant": "float32", "path": tflite})
    out = bench_predict_process(cfg, sizes, tmp_path, run, [artifact])
    assert out["video_frames"] == 15 and out["decode_detect_s"]["median"] > 0
    assert set(out) >= {"default", "tflite_float32"}
    for name in ("default", "tflite_float32"):
        figures = out[name]
        assert figures["runtime"] == "tflite"
        assert 0 < figures["startup_to_decode_s"]["median"] < figures["whole_s"]["median"]
        assert figures["ratio_to_decode_detect"] > 0
    timed = bench_predict(cfg, sizes, tmp_path, run, [artifact])
    # A pixel-only model is also timed with the landmark stream tracked anyway: what following the model saves.
    assert set(timed) == {"video_seconds", "fps", "keras", "tflite_float32", "keras, align.landmarks on (unused)"}
    assert all(timed[name]["median"] > 0 for name in ("keras", "keras, align.landmarks on (unused)"))
