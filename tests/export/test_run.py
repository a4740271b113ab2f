"""export_run: a finished run -> SavedModel + TFLite + report, with parity figures; clear errors."""

import dataclasses
import json
from pathlib import Path

import keras
import pytest

from age_estimation.export.run import export_run
from age_estimation.inference.spec import DeploymentSpec, read_spec, run_link
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import dynamics_export, make_dynamics_run
from tests.tiny_run import CLIP, CROP, load_tiny_run, make_tiny_cache, make_tiny_run, write_run_facts

pytestmark = pytest.mark.slow  # TFLite conversions and SavedModel exports


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    make_tiny_cache(root / "cache")
    run = make_tiny_run(root, [f"data.cache_dir={root / 'cache'}", "export.latency_runs=2"])
    write_run_facts(run)
    return run


def test_export_run_writes_every_artifact_with_parity(run):
    result = export_run(run, variants=["float32"])
    cfg, model = load_tiny_run(run)
    saved = result["savedmodel"]
    assert saved["version"] == 1 and saved["max_abs_diff_years"] <= 1e-4
    stored = read_spec(saved["path"])
    expected = DeploymentSpec.from_config(cfg, model).with_run_files(run)
    assert stored == dataclasses.replace(expected, run=run_link(run, "model.keras"))
    assert stored.run["path"] == str(run.resolve())
    assert stored.interval is not None and stored.model_card.synthetic is True
    assert result["interval"] == stored.interval.to_json() and result["model_card"]["trained"] == "2025-01-01"
    report = result["tflite"]["report"]
    print("parity", saved["max_abs_diff_years"], report["variants"]["float32"]["max_abs_diff_years"])
    assert report["parity_source"].startswith("cache") and report["parity_clips"] == 6
    assert report["variants"]["float32"]["max_abs_diff_years"] <= 0.01
    assert json.loads(Path(report["report_path"]).read_text())["variants"].keys() == {"float32"}
    sidecar = json.loads(Path(result["tflite"]["variants"]["float32"]).with_suffix(".json").read_text())
    assert sidecar["inputs"]["frames"]["shape"] == [1, CLIP, CROP, CROP, 3]
    assert sidecar["interval"] == result["interval"] and sidecar["model_card"] == result["model_card"]


def test_export_run_savedmodel_only_and_overrides(run):
    result = export_run(run, overrides=["export.model_name=other"], tflite=False)
    assert "tflite" not in result and result["savedmodel"]["path"].endswith("other/1")


def test_missing_model_and_plain_functional_model_are_clear_errors(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.keras"):
        export_run(tmp_path)
    _, model = load_tiny_run(run)
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text((run / "config.yaml").read_text())
    keras.Model(model.input, model.output).save(old / "model.keras")
    with pytest.raises(ValueError, match=r"old/model\.keras: holds a plain Functional model.*retrain"):
        export_run(old, tflite=False)


def test_export_run_carries_the_landmark_stream_with_parity(tmp_path_factory):
    shared = dynamics_export(tmp_path_factory)
    result = shared.result
    saved, report = result["savedmodel"], result["tflite"]["report"]
    print("dynamics parity", saved["max_abs_diff_years"],
          {name: v["max_abs_diff_years"] for name, v in report["variants"].items()})
    assert read_spec(saved["path"]).landmark_points == LANDMARK_COUNT and saved["max_abs_diff_years"] <= 1e-4
    assert report["parity_source"].startswith("cache") and report["parity_clips"] == 6
    variants = report["variants"]
    assert variants["float32"]["max_abs_diff_years"] <= 0.01 and variants["float16"]["max_abs_diff_years"] <= 0.1
    for name in ("dynamic_range", "int8"):
        assert abs(variants[name]["mae_change_years"]) <= 1.0, name
    sidecar = json.loads(shared.tflite("int8").with_suffix(".json").read_text())
    assert sidecar["landmark_points"] == LANDMARK_COUNT
    assert sidecar["inputs"]["landmarks"]["shape"] == [1, CLIP, LANDMARK_COUNT, 2]
    assert sidecar["inputs"]["landmark_mask"]["shape"] == [1, CLIP]


def test_dynamics_only_is_refused_before_any_export(tmp_path):
    run = make_dynamics_run(tmp_path, ["model.variant=dynamics_only"])
    with pytest.raises(ValueError, match="variant dynamics_only is an ablation model; export a model with frames"):
        export_run(run)
    assert not (tmp_path / "exported").exists()
