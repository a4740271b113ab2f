"""TFLite export of face-age-v1 (``export/face_age.py``): both variants and sidecars, parity vs Keras on random
and real face chips, the report, ``export --model face-age-v1`` and ``predict`` on the exported file.

The network's ONNX asset is needed (``age-estimation assets``, which ``make test`` runs first); a run without
it fails and says so rather than skipping, like tests/models/test_face_age.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from age_estimation.cli.main import main
from age_estimation.export import face_age
from age_estimation.export.report import format_table
from age_estimation.inference.face_age import FACE_AGE_VALUES
from age_estimation.inference.runtimes import FaceAgePredictor, open_predictor
from age_estimation.inference.spec import DeploymentSpec
from age_estimation.models.face_age.resnet import AGE_VALUES
from age_estimation.video.face_models import FACE_AGE, AssetError, asset_path

pytestmark = pytest.mark.slow  # two TFLite conversions of a 10 MiB network: about 25 s on a loaded 2-core machine

SOFTMAX_TOLERANCE = 1e-4  # float32
AGE_TOLERANCE = 0.01  # years, float32
FLOAT16_SOFTMAX = 0.02  # measured 0.0041 (random chips) and 0.0016 (astronaut)
FLOAT16_YEARS = 0.5  # measured 0.035 (random) and 0.023 (astronaut) years


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """``age-estimation export --model face-age-v1 --out DIR --json``: its printed summary."""
    try:
        asset_path(FACE_AGE)
    except AssetError as err:
        pytest.fail(f"the face-age model is missing; run `age-estimation assets` first ({err})")
    out = tmp_path_factory.mktemp("face-age-export")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["export", "--model", "face-age-v1", "--out", str(out), "--set", "export.latency_runs=5",
                     "--json"])
    assert code == 0, printed.getvalue()
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def keras_predictor() -> FaceAgePredictor:
    return FaceAgePredictor()


def expected(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities, np.float64) @ np.asarray(AGE_VALUES)


def litert(path: str, chips: np.ndarray) -> dict[str, np.ndarray]:
    """LiteRT on the file alone, one chip per call: its ``probabilities`` and ``age`` outputs."""
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serving_default")
    outs = [runner(chips=chip[None]) for chip in chips]
    return {name: np.concatenate([o[name] for o in outs]) for name in ("probabilities", "age")}


def test_both_variants_are_written_with_sidecars_and_report(exported: dict) -> None:
    tfl = exported["tflite"]
    folder = Path(tfl["path"])
    assert exported["model"] == "face-age-v1" and folder.parent.name == "face-age-v1" and folder.name == "1"
    assert sorted(tfl["variants"]) == ["float16", "float32"]
    for variant, path in tfl["variants"].items():
        assert Path(path) == folder / f"{variant}.tflite" and Path(path).stat().st_size > 1_000_000
        spec = DeploymentSpec.read(folder / f"{variant}.json")
        assert (spec.model_name, spec.tflite_variant, spec.crop_size, spec.clip_length) == (
            "face-age-v1", variant, 64, None)
        assert list(spec.inputs) == ["chips"] and list(spec.outputs) == ["probabilities", "age"]
        assert spec.interval is None and "per-frame face-age network" in spec.model_card.description
        assert "CONV_2D" in spec.ops and ("DEQUANTIZE" in spec.ops) == (variant == "float16")
    saved = json.loads((folder / "report.json").read_text())
    report = tfl["report"]
    assert saved["variants"] == report["variants"] and saved["parity_sets"] == {"random": 16, "astronaut": 8}
    assert "astronaut" in report["parity_source"]
    table = format_table(report)
    assert "max|diff| p" in table.splitlines()[0] and len(table.splitlines()) == 3
    for entry in report["variants"].values():
        assert set(entry["latency_ms"]) == {"1", "2"} and all(0 < ms < 1000 for ms in entry["latency_ms"].values())


def test_float32_parity_on_random_and_real_chips(exported: dict, keras_predictor: FaceAgePredictor) -> None:
    entry = exported["tflite"]["report"]["variants"]["float32"]
    for parity in entry["parity"].values():
        assert parity["max_abs_diff_softmax"] <= SOFTMAX_TOLERANCE
        assert parity["max_abs_diff_years"] <= AGE_TOLERANCE
    # the file alone, on chips the report never saw, against the Keras predictor
    chips = np.concatenate([face_age.random_chips(6, seed=7), face_age.astronaut_chips()[[0, 5]]])
    ours, theirs = litert(entry["path"], chips), keras_predictor.frame_probabilities(chips)
    assert np.abs(ours["probabilities"] - theirs).max() <= SOFTMAX_TOLERANCE
    assert np.abs(expected(ours["probabilities"]) - expected(theirs)).max() <= AGE_TOLERANCE
    np.testing.assert_allclose(ours["age"], expected(ours["probabilities"]), atol=1e-3)  # its own age head


def test_float16_parity_is_reported_and_small(exported: dict) -> None:
    entry = exported["tflite"]["report"]["variants"]["float16"]
    assert set(entry["parity"]) == {"random", "astronaut"}
    for parity in entry["parity"].values():
        assert 0 < parity["max_abs_diff_softmax"] <= FLOAT16_SOFTMAX
        assert 0 < parity["max_abs_diff_years"] <= FLOAT16_YEARS
    assert entry["max_abs_diff_years"] == max(p["max_abs_diff_years"] for p in entry["parity"].values())


def test_predict_runs_the_exported_file(exported: dict, keras_predictor: FaceAgePredictor) -> None:
    """``open_predictor`` on the .tflite gives the face-age predictor on LiteRT: per-frame ages and window
    ages as Keras gives them, with the sidecar's spec."""
    path = exported["tflite"]["variants"]["float32"]
    predictor = open_predictor(model=path)
    assert isinstance(predictor, FaceAgePredictor) and predictor.name == "face-age-v1-tflite-float32"
    assert predictor.spec.window == keras_predictor.spec.window and predictor.spec.align == keras_predictor.spec.align
    chips = face_age.astronaut_chips()
    np.testing.assert_allclose(predictor.frame_ages(chips), keras_predictor.frame_ages(chips), atol=AGE_TOLERANCE)
    assert (predictor.frame_ages(chips) > 15).all()  # an adult
    clips = np.stack([chips[:5], chips[3:]])
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], np.float32)
    ours, theirs = predictor.predict(clips, mask), keras_predictor.predict(clips, mask)
    np.testing.assert_allclose(ours["age"], theirs["age"], atol=AGE_TOLERANCE)
    np.testing.assert_allclose(ours["temporal_attention"], mask / mask.sum(axis=1, keepdims=True))


def test_predict_on_the_file_loads_no_tensorflow(exported: dict) -> None:
    code = (
        "import sys, numpy as np\n"
        "from age_estimation.inference.runtimes import open_predictor\n"
        f"p = open_predictor(model={exported['tflite']['variants']['float16']!r})\n"
        "p.predict(np.zeros((1, 4, 64, 64, 3), np.uint8))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow loaded'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_age_values_match_the_network() -> None:
    assert FACE_AGE_VALUES == AGE_VALUES


def test_bad_requests_are_refused_before_any_conversion(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="int8"):
        face_age.export_face_age_tflite(tmp_path, ["float32", "int8"])
    assert main(["export", "--model", "face-age-v1", "--out", str(tmp_path), "--no-tflite"]) == 2
    assert "only TFLite" in capsys.readouterr().err
    assert not (tmp_path / "tflite").exists()
