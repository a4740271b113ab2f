"""Every runtime reads the one DeploymentSpec: Keras (model + run config), SavedModel, TFLite, Serving."""

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from age_estimation.config import load_config, save_config
from age_estimation.export.savedmodel import export_savedmodel
from age_estimation.export.tflite import export_tflite
from age_estimation.inference.runtimes import (
    KerasPredictor,
    SavedModelPredictor,
    ServingPredictor,
    TFLitePredictor,
    find_tflite_export,
    open_predictor,
    run_spec,
)
from age_estimation.inference.spec import DeploymentSpec, run_link
from age_estimation.models.siam.model import build_siam
from age_estimation.runs import EXPORTS_NAME, exports_record, model_sha256
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import dynamics_export
from tests.tiny_run import (
    CLIP,
    CROP,
    TINY_OVERRIDES,
    load_tiny_run,
    make_tiny_run,
    random_clips,
    random_landmarks,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtimes")
    run = make_tiny_run(root)
    cfg, model = load_tiny_run(run)
    return run, cfg, model


def test_keras_spec_joins_model_facts_and_run_config(setup):
    run, cfg, _ = setup
    predictor = KerasPredictor(run / "model.keras")
    assert predictor.spec == DeploymentSpec.from_config(cfg, predictor.model)
    assert (predictor.crop_size, predictor.clip_length, predictor.spec.window) == (CROP, None, CLIP)
    assert predictor.spec.align == cfg.align and predictor.spec.test_time_flip is True
    assert predictor.model.age_prior == (33.0, 12.0)


def test_keras_predictor_takes_a_model_and_spec_changes(setup):
    _, _, model = setup
    predictor = KerasPredictor(model, {"test_time_flip": False})
    assert predictor.spec.test_time_flip is False and predictor.crop_size == CROP and predictor.spec.align is None
    with pytest.raises(ValueError, match=f"needs {CROP}x{CROP}"):
        predictor.predict(np.zeros((1, 2, CROP + 2, CROP + 2, 3), np.uint8))
    plain = KerasPredictor(keras.Model(model.input, model.output))  # no facts: no crop check, still runs
    assert plain.crop_size is None and plain.predict(random_clips(1))["age"].shape == (1,)


def test_keras_file_without_run_config_uses_the_model_facts(setup, tmp_path):
    _, _, model = setup
    model.save(tmp_path / "alone.keras")
    predictor = KerasPredictor(tmp_path / "alone.keras")
    assert predictor.crop_size == CROP and predictor.spec.window is None
    with pytest.raises(ValueError, match=r"config\.yaml: lacks window; re-export"):
        predictor.spec.require("window")


def test_savedmodel_and_tflite_read_the_exported_spec(tiny_export):
    run, cfg, model = tiny_export.run, tiny_export.cfg, tiny_export.model
    saved = SavedModelPredictor(tiny_export.savedmodel.parent)  # the model folder: newest version
    written = DeploymentSpec.from_config(cfg, model).with_run_files(run)  # what export_run writes
    assert saved.spec == dataclasses.replace(written, run=run_link(run, "model.keras"))
    assert saved.spec.interval is not None and saved.spec.model_card is not None
    tflite = TFLitePredictor(tiny_export.tflite, num_threads=1)
    assert (tflite.crop_size, tflite.clip_length, tflite.spec.batch_size) == (CROP, CLIP, 1)
    assert tflite.spec.tflite_variant == "float32" and tflite.spec.align == cfg.align
    expected = dataclasses.replace(saved.spec, clip_length=CLIP, batch_size=1)
    assert dataclasses.replace(tflite.spec, tflite_variant=None, quantization=None, signature=None, ops=None,
                               inputs=expected.inputs, outputs=expected.outputs) == expected
    clips = random_clips(2, seed=3)
    keras_ages = KerasPredictor(model).predict(clips, test_time_flip=False)["age"]
    np.testing.assert_allclose(saved.predict(clips, test_time_flip=False)["age"], keras_ages, atol=1e-4)
    np.testing.assert_allclose(tflite.predict(clips, test_time_flip=False)["age"], keras_ages, atol=1e-2)


def test_serving_and_open_predictor_read_the_run_config(setup):
    run, _, _ = setup
    served = open_predictor(server="http://localhost:1", run_dir=run)
    assert isinstance(served, ServingPredictor) and served.spec == run_spec(run)
    assert served.crop_size == CROP and served.spec.window == CLIP and served.client.crop_size == CROP
    assert ServingPredictor("http://localhost:1", spec={"crop_size": 7}).client.crop_size == 7
    assert isinstance(open_predictor(run_dir=run), KerasPredictor)
    with pytest.raises(ValueError, match="not a .keras file"):
        open_predictor(model=run / "config.yaml")


def _fake_export(root: Path, record: bool = True) -> tuple[Path, Path]:
    """A run (config + model bytes) under ``root/runs`` and a float32 file under ``root/exported`` whose
    sidecar links it to the run, as export writes them, with the run's exports.json when ``record``. No
    TFLite model: finding an export reads only the sidecars."""
    run, tflite = root / "runs" / "r-1", root / "exported" / "tflite" / "siam" / "1" / "float32.tflite"
    run.mkdir(parents=True)
    tflite.parent.mkdir(parents=True)
    save_config(load_config(None, [f"export.directory={root / 'exported'}"]), run / "config.yaml")
    (run / "model.keras").write_bytes(b"weights")
    tflite.write_bytes(b"not read")
    sha = model_sha256(run)
    link = {"path": str(run.resolve()), "model_sha256": sha}
    tflite.with_suffix(".json").write_text(json.dumps({"run": link}))
    if record:
        (run / EXPORTS_NAME).write_text(json.dumps(exports_record(run, sha, root / "exported", tflite.parent,
                                                                   {"float32": tflite})))
    return run, tflite


def test_a_run_moved_with_its_export_finds_it_by_the_model_checksum(tmp_path):
    run, tflite = _fake_export(tmp_path / "old")
    assert find_tflite_export(run).path == tflite
    shutil.move(tmp_path / "old", tmp_path / "new")  # the absolute paths and the config's directory are gone
    moved = tmp_path / "new" / "runs" / run.name
    assert find_tflite_export(moved).path == tmp_path / "new" / tflite.relative_to(tmp_path / "old")
    (moved / "model.keras").write_bytes(b"retrained")  # another model: the export is not its
    found = find_tflite_export(moved)
    assert found.path is None and "was made from another model.keras" in found.reason


def test_without_exports_json_a_copy_does_not_take_the_originals_export_but_a_moved_run_does(tmp_path):
    run, tflite = _fake_export(tmp_path, record=False)
    copy = tmp_path / "elsewhere" / run.name
    shutil.copytree(run, copy)
    assert find_tflite_export(run).path == tflite  # the config's export directory, linked to this run
    assert find_tflite_export(copy).path is None  # the export's run still holds that model
    shutil.rmtree(run)  # now the copy is where the run went
    assert find_tflite_export(copy).path == tflite


def test_why_no_export_is_used_is_one_line(tmp_path):
    run, tflite = _fake_export(tmp_path)
    shutil.rmtree(tflite.parent)
    gone = find_tflite_export(run).reason
    assert gone.startswith(f"its export is gone: not at {tflite}") and "\n" not in gone
    (run / EXPORTS_NAME).unlink()
    assert find_tflite_export(run).reason.startswith("it has no TFLite export")


@pytest.mark.slow
def test_every_runtime_takes_the_landmark_stream_with_parity(tmp_path_factory):
    shared = dynamics_export(tmp_path_factory)
    keras = KerasPredictor(shared.run / "model.keras")
    saved = SavedModelPredictor(shared.savedmodel)
    lite = TFLitePredictor(shared.tflite("float32"), num_threads=1)
    assert keras.landmark_points == saved.landmark_points == lite.landmark_points == LANDMARK_COUNT
    assert keras.spec.landmark_points == run_spec(shared.run).landmark_points == LANDMARK_COUNT
    frames = random_clips(3, seed=3)
    landmarks, found = random_landmarks(3, seed=4)
    mask = np.ones((3, CLIP), np.float32)
    mask[1, 5:] = 0  # a padded clip: SavedModel gets lengths, TFLite the mask
    stream = {"landmarks": landmarks, "landmark_mask": found}
    expected = keras.predict(frames, mask, **stream)  # with the test-time flip of the spec
    for predictor in (saved, lite):
        got = predictor.predict(frames, mask, **stream)
        print(predictor.name, "parity with landmarks", float(np.max(np.abs(got["age"] - expected["age"]))))
        np.testing.assert_allclose(got["age"], expected["age"], atol=1e-4 if predictor is saved else 1e-2)
        np.testing.assert_allclose(got["temporal_attention"], expected["temporal_attention"], atol=1e-4)
    # A padding frame has no landmarks, whatever landmark_mask says there.
    claimed = keras.predict(frames, mask, landmarks=landmarks, landmark_mask=np.ones_like(found))
    padded_only = keras.predict(frames, mask, landmarks=landmarks, landmark_mask=np.where(mask > 0, 1.0, 0.0))
    np.testing.assert_allclose(claimed["age"], padded_only["age"], atol=1e-5)
    moved = keras.predict(frames, mask, landmarks=landmarks + 0.3, landmark_mask=found)
    assert not np.allclose(moved["age"], expected["age"], atol=1e-3)  # the landmarks are really read
    for predictor in (keras, saved, lite):
        with pytest.raises(ValueError, match="reads the landmark stream"):
            predictor.predict(frames)
        with pytest.raises(ValueError, match=r"landmarks must be \(B, T, K, 2\)"):
            predictor.predict(frames, landmarks=landmarks[:, :, :5])


def test_dynamics_only_predicts_with_keras_and_is_not_exported(tmp_path):
    cfg = load_config(None, TINY_OVERRIDES + ["model.variant=dynamics_only", "model.dynamics_units=8",
                                              f"export.directory={tmp_path}"])
    model = build_siam(cfg.model, crop_size=CROP)
    assert "frames" not in model.input
    predictor = KerasPredictor(model)
    assert predictor.landmark_points == LANDMARK_COUNT and predictor.spec.variant == "dynamics_only"
    landmarks, found = random_landmarks(2, seed=5)
    out = predictor.predict(random_clips(2, seed=6), landmarks=landmarks, landmark_mask=found)
    other_frames = predictor.predict(random_clips(2, seed=7), landmarks=landmarks, landmark_mask=found)
    np.testing.assert_allclose(out["age"], other_frames["age"])  # the frames are not read
    assert out["age"].shape == (2,) and out["temporal_attention"].shape == (2, CLIP)
    assert "spatial_attention" not in out
    message = "variant dynamics_only is an ablation model; export a model with frames"
    with pytest.raises(ValueError, match=message):
        export_savedmodel(model, cfg)
    with pytest.raises(ValueError, match=message):
        export_tflite(model, cfg, variants=["float32"])
    assert not any(tmp_path.iterdir())
