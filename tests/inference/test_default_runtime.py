"""The default ``predict`` answers with the run's own float32 TFLite export, without importing TensorFlow."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from age_estimation.config import load_config, save_config
from age_estimation.export.run import export_run
from age_estimation.inference.run_exports import RUN_LINK, exported_tflite
from age_estimation.runs import EXPORTS_NAME
from tests.inference import write_video

pytestmark = pytest.mark.slow  # predict processes and one float32 TFLite export

PREDICT = """
import json, sys
from age_estimation.cli.main import main
code = main(["predict", *sys.argv[1:], "--json"])
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.fixture(scope="module")
def exported(tiny_export, tmp_path_factory):
    """The session's tiny export (the run, its float32 TFLite file) and a face video."""
    video = write_video(tmp_path_factory.mktemp("default") / "face.mp4", "F" * 16)
    return tiny_export.run, tiny_export.tflite, video


def predict(*argv):
    done = subprocess.run([sys.executable, "-c", PREDICT, *map(str, argv)], capture_output=True, text=True,
                          check=False, cwd=Path(__file__).parents[2])
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["code"] == 0, done.stderr[-3000:]
    return lines[0], lines[-1]["tensorflow"]


def test_default_predict_uses_the_runs_tflite_without_tensorflow(exported):
    run, tflite, video = exported
    assert exported_tflite(run) == tflite
    default, tensorflow = predict(video, "--run", run, "--stride", "4")
    assert default["runtime"] == "tflite" and not tensorflow
    keras, tensorflow = predict(video, "--model", run / "model.keras", "--stride", "4")
    assert keras["runtime"] == "keras" and tensorflow
    assert default["window_starts"] == keras["window_starts"]
    assert default["age"] == pytest.approx(keras["age"], abs=1e-3)
    assert default["interval"] == pytest.approx(keras["interval"], abs=1e-3)
    assert default["model_card"] == keras["model_card"] is not None


def test_an_export_of_another_model_is_not_used(exported, tmp_path):
    run, tflite, _ = exported
    other = tmp_path / "runs" / run.name
    other.mkdir(parents=True)
    for name in ("config.yaml", "model.keras"):
        (other / name).write_bytes((run / name).read_bytes())
    assert exported_tflite(other) is None  # the link names another run directory
    (run / "model.keras").touch()
    assert exported_tflite(run) == tflite
    sidecar = tflite.with_suffix(".json")
    saved = sidecar.read_text()  # the shared export: put back as it was
    raw = json.loads(saved)
    raw[RUN_LINK]["model_sha256"] = "0" * 64  # the model was replaced after the export
    sidecar.write_text(json.dumps(raw))
    try:
        assert exported_tflite(run) is None
    finally:
        sidecar.write_text(saved)


def test_the_export_is_found_from_another_working_directory(exported, tmp_path, monkeypatch):
    run, _, _ = exported
    project = tmp_path / "project"
    copy = project / "runs" / run.name
    copy.mkdir(parents=True)
    (copy / "model.keras").write_bytes((run / "model.keras").read_bytes())
    save_config(load_config(run / "config.yaml", ["export.directory=exported"]), copy / "config.yaml")
    monkeypatch.chdir(project)  # export.directory is relative to where export runs
    exported_to = export_run(copy, variants=["float32"], report=False)["tflite"]["variants"]["float32"]
    tflite = Path(exported_to).resolve()
    assert json.loads((copy / EXPORTS_NAME).read_text())["tflite"]["float32"] == str(tflite)
    monkeypatch.chdir(tmp_path)
    assert not Path("exported").exists()
    assert exported_tflite(copy) == tflite
