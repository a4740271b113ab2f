"""The parity / size / latency report: figures against Keras, the printed table, the saved file."""

import json

import numpy as np
import pytest

from age_estimation.export import report
from age_estimation.export.tflite import TFLiteArtifact
from tests.tiny_run import random_clips


def clip_list(count):
    frames = random_clips(count, seed=7)
    return [{"frames": f[None], "mask": np.ones((1, f.shape[0]), np.float32)} for f in frames]


@pytest.mark.slow
def test_report_measures_parity_latency_and_mae_change(tiny_export):
    model, tflite, sidecar = tiny_export.model, tiny_export.tflite, tiny_export.tflite.with_suffix(".json")
    ops = json.loads(sidecar.read_text())["ops"]
    artifacts = [TFLiteArtifact("float32", tflite, sidecar, tflite.stat().st_size, ops)]
    clips = clip_list(3)
    keras_ages = report.keras_ages(model, clips)
    ages = list(keras_ages + 1.0)  # Keras is 1 year off on each clip
    result = report.export_report(model, artifacts, clips, ages, heldout=2, threads=(1,), runs=2)
    entry = result["variants"]["float32"]
    assert result["keras_heldout_mae"] == pytest.approx(1.0, abs=1e-4)
    assert entry["max_abs_diff_years"] <= 0.01 and abs(entry["mae_change_years"]) <= 0.01
    assert entry["size_bytes"] == artifacts[0].size_bytes and set(entry["latency_ms"]) == {"1"}
    without_truth = report.export_report(model, artifacts, clips, threads=(1,), runs=1)
    assert "keras_heldout_mae" not in without_truth and "mae_change_years" not in without_truth["variants"]["float32"]


def test_table_and_saved_report(tmp_path):
    result = {"variants": {
        "float32": {"size_bytes": 2048, "max_abs_diff_years": 1e-5, "latency_ms": {"1": 1.5, "2": 1.0}},
        "int8": {"size_bytes": 1024, "max_abs_diff_years": 0.2, "mae_change_years": -0.05,
                 "latency_ms": {"1": 0.5, "2": 0.25}},
    }}
    lines = report.format_table(result).splitlines()
    assert lines[0].split() == ["variant", "size", "KiB", "max|diff|", "y", "MAE", "change", "y", "ms", "@1", "thr",
                                "ms", "@2", "thr"]
    assert lines[1].split() == ["float32", "2.0", "1e-05", "-", "1.50", "1.00"]
    assert lines[2].split() == ["int8", "1.0", "0.2", "-0.050", "0.50", "0.25"]
    path = report.write_report(tmp_path, result)
    assert path == tmp_path / "report.json" and json.loads(path.read_text()) == result
