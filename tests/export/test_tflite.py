"""TFLite export: the four variants, sidecar spec, op lists, parity vs Keras, the report, and LiteRT runs."""

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from age_estimation.export import report, tflite
from age_estimation.export.clips import cache_clips
from age_estimation.inference.runtimes import KerasPredictor, TFLitePredictor
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import dynamics_export
from tests.tiny_run import (
    CLIP,
    CROP,
    load_tiny_run,
    make_tiny_cache,
    make_tiny_run,
    random_clips,
    random_landmarks,
)

pytestmark = pytest.mark.slow  # four TFLite conversions per model: about 30 s on an idle 2-core machine


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    run = make_tiny_run(root, [f"data.cache_dir={root / 'cache'}"])
    make_tiny_cache(root / "cache")
    cfg, model = load_tiny_run(run)
    artifacts = tflite.export_tflite(model, cfg)  # int8 calibrates on the cache
    return model, cfg, {a.variant: a for a in artifacts}


def test_every_variant_written_with_sidecar(setup):
    _, cfg, artifacts = setup
    assert list(artifacts) == list(tflite.VARIANTS)
    for name, artifact in artifacts.items():
        assert artifact.path == tflite.tflite_dir(cfg) / "1" / f"{name}.tflite"
        assert artifact.size_bytes == artifact.path.stat().st_size > 0
        spec = json.loads(artifact.sidecar.read_text())
        assert spec["tflite_variant"] == name
        assert spec["inputs"]["frames"] == {
            "dtype": "uint8",
            "shape": [1, CLIP, CROP, CROP, 3],
            "layout": "RGB face crops aligned by the template below",
        }
        assert spec["inputs"]["mask"]["shape"] == [1, CLIP]
        assert "127.5" in spec["normalization"]
        assert set(spec["outputs"]) == {"age", "temporal_attention", "spatial_attention"}
        assert (
            spec["align"]["crop_size"] == CROP and spec["template_eyes"][0][1] == spec["template_eyes"][1][1]
        )
        assert spec["ops"] == artifact.ops
        assert list(spec)[-4:] == ["tflite_variant", "quantization", "signature", "ops"]


def test_unrolled_graph_has_no_while_loop_and_int8_is_quantized(setup):
    _, _, artifacts = setup
    for artifact in artifacts.values():  # the flatbuffer's op list is what the interpreter runs
        interpreter = Interpreter(model_path=str(artifact.path))
        assert artifact.ops == sorted({op["op_name"] for op in interpreter._get_ops_details()})
    for artifact in artifacts.values():
        assert "CONV_2D" in artifact.ops and "WHILE" not in artifact.ops
    assert "QUANTIZE" in artifacts["int8"].ops and "QUANTIZE" not in artifacts["float32"].ops
    assert artifacts["float16"].size_bytes < artifacts["float32"].size_bytes


def test_parity_report_meets_targets(setup):
    model, cfg, artifacts = setup
    clips, ages, heldout = cache_clips(cfg, 50, "parity", heldout_first=True)
    assert len(clips) == 6 and 1 <= heldout < 6
    result = report.export_report(model, list(artifacts.values()), clips, ages, heldout, runs=2)
    print("parity", {name: v["max_abs_diff_years"] for name, v in result["variants"].items()})
    variants = result["variants"]
    assert variants["float32"]["max_abs_diff_years"] <= 0.01
    assert variants["float16"]["max_abs_diff_years"] <= 0.1
    for name in ("dynamic_range", "int8"):
        assert abs(variants[name]["mae_change_years"]) <= 0.5
    for entry in variants.values():
        assert set(entry["latency_ms"]) == {"1", "2"} and min(entry["latency_ms"].values()) > 0
    table = report.format_table(result)
    assert all(name in table for name in tflite.VARIANTS) and "ms @2 thr" in table


def test_predictor_pads_short_clips_and_validates(setup):
    model, _, artifacts = setup
    predictor = TFLitePredictor(artifacts["float32"].path, num_threads=1)
    short = random_clips(2, steps=5, seed=9)
    got = predictor.predict(short, test_time_flip=False)
    expected = np.asarray(model({"frames": short, "mask": np.ones((2, 5), np.float32)})["age"])[:, 0]
    np.testing.assert_allclose(got["age"], expected, atol=0.01)
    assert got["temporal_attention"].shape == (2, 5)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(short.astype(np.float32))
    with pytest.raises(ValueError, match=f"needs {CROP}x{CROP}"):
        predictor.predict(np.zeros((1, 4, CROP * 2, CROP * 2, 3), np.uint8))
    with pytest.raises(ValueError, match=f"at most T={CLIP}"):
        predictor.predict(random_clips(1, steps=CLIP + 1))


def test_int8_without_cache_fails_clearly_before_writing(setup, tmp_path):
    model, cfg, _ = setup
    cfg.data.cache_dir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"int8 calibration.*prepare"):
        tflite.export_tflite(model, cfg, variants=["float32", "int8"])
    assert sorted(p.name for p in tflite.tflite_dir(cfg).iterdir()) == ["1"]


def test_dynamics_variants_take_the_landmark_stream_with_parity(tmp_path_factory):
    shared = dynamics_export(tmp_path_factory)
    keras = KerasPredictor(shared.model)
    frames = random_clips(3, seed=9)
    landmarks, found = random_landmarks(3, seed=10)

    def ages(predictor, steps=CLIP):
        return predictor.predict(frames[:, :steps], test_time_flip=False, landmarks=landmarks[:, :steps],
                                 landmark_mask=found[:, :steps])["age"]

    expected = ages(keras)
    diffs = {}
    for name in tflite.VARIANTS:
        details = Interpreter(model_path=str(shared.tflite(name))).get_signature_runner().get_input_details()
        assert {key: (list(d["shape"]), d["dtype"]) for key, d in details.items()} == {
            "frames": ([1, CLIP, CROP, CROP, 3], np.uint8), "mask": ([1, CLIP], np.float32),
            "landmarks": ([1, CLIP, LANDMARK_COUNT, 2], np.float32), "landmark_mask": ([1, CLIP], np.float32)}
        predictor = TFLitePredictor(shared.tflite(name), num_threads=1)
        assert predictor.landmark_points == LANDMARK_COUNT
        diffs[name] = float(np.max(np.abs(ages(predictor) - expected)))
    print("dynamics TFLite parity", diffs)
    assert diffs["float32"] <= 0.01 and diffs["float16"] <= 0.1 and diffs["dynamic_range"] <= 0.1
    assert diffs["int8"] <= 1.0
    float32 = TFLitePredictor(shared.tflite("float32"), num_threads=1)
    np.testing.assert_allclose(ages(float32, steps=5), ages(keras, steps=5), atol=0.01)  # padded to T inside
    with pytest.raises(ValueError, match="reads the landmark stream"):
        float32.predict(frames)
