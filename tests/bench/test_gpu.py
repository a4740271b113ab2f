"""The GPU check's pure helpers, on the TensorFlow side: no JAX and no Keras-on-JAX needed."""

import argparse
import json

import numpy as np
import pytest

from age_estimation.bench.gpu import (
    load_clips,
    missing_wheels,
    model_inputs,
    parity_figures,
    parse_sizes,
    rate_figures,
    summary_lines,
    tiled_batch,
    time_calls,
    wheel_module,
    write_report,
)


def test_parse_sizes():
    assert parse_sizes("8,64,256") == [8, 64, 256]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_sizes("8,0")


def test_wheels_map_to_modules_and_only_missing_ones_are_installed(tmp_path):
    names = ["keras-3.15.1-py3-none-any.whl", "optree-0.20.0-cp312-cp312-manylinux_2_17_x86_64.whl",
             "PyYAML-6.0.4-cp312-cp312-manylinux_2_17_x86_64.whl", "no_such_module_xyz-1.0-py3-none-any.whl"]
    for name in names:
        (tmp_path / name).touch()
    assert [wheel_module(tmp_path / name) for name in names] == ["keras", "optree", "yaml", "no_such_module_xyz"]
    assert [path.name for path in missing_wheels(tmp_path)] == ["no_such_module_xyz-1.0-py3-none-any.whl"]


def test_clips_are_checked_and_tiled_up_to_the_batch(tmp_path):
    frames = np.arange(3 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(3, 2, 4, 4, 3)
    np.savez(tmp_path / "clips.npz", frames=frames, mask=np.ones((3, 2), np.float32), ages=np.array([10., 20., 30.]))
    clips = load_clips(tmp_path / "clips.npz")
    inputs, ages = tiled_batch(clips, 7)
    assert inputs["frames"].shape == (7, 2, 4, 4, 3) and inputs["mask"].dtype == np.float32
    assert ages[:, 0].tolist() == [10, 20, 30, 10, 20, 30, 10]
    np.testing.assert_array_equal(inputs["frames"][3], frames[0])
    np.savez(tmp_path / "bad.npz", frames=frames, mask=np.ones((3, 5)), ages=np.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        load_clips(tmp_path / "bad.npz")


def test_clips_with_the_landmark_stream_are_checked_and_tiled(tmp_path):
    frames = np.zeros((2, 3, 4, 4, 3), np.uint8)
    stream = {"landmarks": np.arange(2 * 3 * 5 * 2, dtype=np.float64).reshape(2, 3, 5, 2),
              "landmark_mask": np.ones((2, 3))}
    np.savez(tmp_path / "clips.npz", frames=frames, mask=np.ones((2, 3)), ages=np.array([10.0, 20.0]), **stream)
    inputs, _ = tiled_batch(load_clips(tmp_path / "clips.npz"), 3)
    assert set(inputs) == {"frames", "mask", "landmarks", "landmark_mask"}
    assert inputs["landmarks"].dtype == np.float32 and inputs["landmarks"].shape == (3, 3, 5, 2)
    np.testing.assert_array_equal(inputs["landmarks"][2], stream["landmarks"][0])
    np.savez(tmp_path / "bad.npz", frames=frames, mask=np.ones((2, 3)), ages=np.zeros(2), landmarks=stream["landmarks"])
    with pytest.raises(ValueError, match="landmark_mask"):
        load_clips(tmp_path / "bad.npz")
    reader = type("Model", (), {"input": {"frames": None, "mask": None, "landmarks": None}})
    assert set(model_inputs(reader, inputs)) == {"frames", "mask", "landmarks"}
    inputs.pop("landmarks")
    with pytest.raises(ValueError, match=r"takes \['landmarks'\] .* write the bundle again"):
        model_inputs(reader, inputs)


def test_time_calls_syncs_the_last_result_and_rates_follow():
    synced = []
    per_call = time_calls(lambda: len(synced), calls=4, repeats=3, sync=synced.append)
    assert len(per_call) == 3 and synced == [0, 1, 2] and min(per_call) >= 0
    rates = rate_figures(64, first_call_s=2.5, per_call_s=[0.5, 0.25, 1.0])
    assert rates["steps_per_second"] == 2.0 and rates["clips_per_second"] == 128.0
    assert rates["clips_per_second_range"] == [64.0, 256.0] and rates["compile_seconds"] == 2.0


def test_parity_reports_the_largest_difference():
    figures = parity_figures(np.array([30.0, 40.0005]), np.array([30.0, 40.0]), tolerance=1e-3)
    assert figures["equal"] and figures["max_abs_diff"] == pytest.approx(5e-4) and figures["clips"] == 2
    assert not parity_figures(np.array([31.0]), np.array([30.0]))["equal"]
    with pytest.raises(ValueError):
        parity_figures(np.zeros(2), np.zeros(3))


def test_report_is_json_and_summarised(tmp_path):
    parity = {**parity_figures(np.zeros(2), np.zeros(2)), "default_matmul_precision": parity_figures(np.zeros(2), np.zeros(2))}
    row = {"precision": "mixed_bfloat16", **rate_figures(8, 1.0, [0.1])}
    report = {"device_kind": "cpu", "platform": "cpu", "jax": "0", "keras": "3", "parity": parity,
              "train": [row], "predict": [row]}
    path = write_report(tmp_path / "out", report)
    assert json.loads(path.read_text()) == report
    lines = summary_lines(report)
    assert "max |diff| 0 years over 2 clips (equal" in lines[1] and "mixed_bfloat16 batch    8" in lines[2]
