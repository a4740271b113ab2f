"""export_run: a finished run -> SavedModel + TFLite + report, with parity figures; clear errors; a run
moved with its export still predicts with it."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from age_estimation.config import load_config, save_config
from age_estimation.export.run import export_run
from age_estimation.inference.run_exports import RUN_LINK, exported_tflite
from age_estimation.inference.runtimes import KerasPredictor, open_predictor
from age_estimation.inference.spec import DeploymentSpec, read_spec, run_link
from age_estimation.models.siam.model import build_siam
from age_estimation.runs import EXPORTS_NAME, model_sha256
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference import write_video
from tests.inference.dynamics_run import DYNAMICS_OVERRIDES, dynamics_export
from tests.tiny_run import (
    CLIP,
    CROP,
    TINY_OVERRIDES,
    load_tiny_run,
    make_tiny_cache,
    make_tiny_run,
    write_run_facts,
)

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
    cfg = load_config(None, [*TINY_OVERRIDES, *DYNAMICS_OVERRIDES, "model.variant=dynamics_only",
                             f"export.directory={tmp_path / 'exported'}"])
    run = tmp_path / "runs" / "dynamics-only"
    run.mkdir(parents=True)
    build_siam(cfg.model, crop_size=CROP).save(run / "model.keras")  # refused by its variant: no need to train it
    save_config(cfg, run / "config.yaml")
    with pytest.raises(ValueError, match="variant dynamics_only is an ablation model; export a model with frames"):
        export_run(run)
    assert not (tmp_path / "exported").exists()


# predict in a fresh interpreter: its JSON lines, then whether TensorFlow was imported
PREDICT = """
import json, sys
from age_estimation.cli.main import main
code = main(["predict", *sys.argv[1:], "--json"])
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A tiny run exported (float32) under one root, then that root moved whole: (the run, its export)."""
    before = tmp_path_factory.mktemp("before") / "project"
    after = tmp_path_factory.mktemp("after") / "project"
    run = make_tiny_run(before)
    write_run_facts(run)
    tflite = Path(export_run(run, variants=["float32"], report=False)["tflite"]["variants"]["float32"])
    shutil.move(before, after)
    return after / "runs" / run.name, after / tflite.relative_to(before)


def test_exports_json_links_the_export_to_the_model_checksum(moved):
    run, tflite = moved
    record = json.loads((run / EXPORTS_NAME).read_text())
    sidecar = json.loads(tflite.with_suffix(".json").read_text())
    assert record["model_sha256"] == sidecar[RUN_LINK]["model_sha256"] == model_sha256(run)
    assert record["from_run"]["tflite"]["float32"] == "../../exported/tflite/siam/1/float32.tflite"
    assert not Path(record["tflite"]["float32"]).exists()  # the absolute path went with the move


def test_a_moved_run_predicts_with_its_export_without_tensorflow(moved, tmp_path):
    run, tflite = moved
    assert exported_tflite(run) == tflite
    video = write_video(tmp_path / "face.mp4", "F" * 16)
    done = subprocess.run([sys.executable, "-c", PREDICT, str(video), "--run", str(run), "--stride", "4"],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).parents[2])
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["code"] == 0, done.stderr[-3000:]
    assert lines[0]["runtime"] == "tflite" and lines[-1]["tensorflow"] is False
    assert "on Keras" not in done.stderr  # no fallback line


def test_an_export_of_another_model_or_none_falls_back_to_keras_in_one_line(moved, capsys):
    run, tflite = moved
    sidecar = tflite.with_suffix(".json")
    saved = sidecar.read_text()
    raw = json.loads(saved)
    raw[RUN_LINK]["model_sha256"] = "0" * 64  # the export was made from another model.keras
    sidecar.write_text(json.dumps(raw))
    try:
        assert isinstance(open_predictor(run_dir=run), KerasPredictor)
    finally:
        sidecar.write_text(saved)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tflite}) was made from another model.keras" in err
    assert "predicting with its model.keras on Keras" in err

    aside = tflite.parent.with_name("aside")
    tflite.parent.rename(aside)  # the export is gone
    try:
        assert isinstance(open_predictor(run_dir=run), KerasPredictor)
    finally:
        aside.rename(tflite.parent)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its export is gone: not at " in err and str(tflite) in err
    assert exported_tflite(run) == tflite
