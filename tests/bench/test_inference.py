"""The bench's predict figures: start-up, whole process and decode + detect of the same video; predict time."""

import dataclasses

import pytest

from age_estimation.bench.inference import bench_predict, bench_predict_process
from age_estimation.bench.measure import QUICK

pytestmark = pytest.mark.slow  # predict processes


def test_predict_process_figures_are_produced(tiny_export, tmp_path):
    run, tflite, cfg = tiny_export.run, tiny_export.tflite, tiny_export.cfg
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
