"""Every runtime reads the one DeploymentSpec: Keras (model + run config), SavedModel, TFLite, Serving."""

import dataclasses

import keras
import numpy as np
import pytest

from age_estimation.export.savedmodel import export_savedmodel
from age_estimation.export.tflite import export_tflite
from age_estimation.inference.runtimes import (
    KerasPredictor,
    SavedModelPredictor,
    ServingPredictor,
    TFLitePredictor,
    open_predictor,
    run_spec,
)
from age_estimation.inference.spec import DeploymentSpec
from tests.tiny_run import CLIP, CROP, load_tiny_run, make_tiny_run, random_clips


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


def test_savedmodel_and_tflite_read_the_exported_spec(setup):
    _, cfg, model = setup
    saved = SavedModelPredictor(export_savedmodel(model, cfg).parent)  # the model folder: newest version
    assert saved.spec == DeploymentSpec.from_config(cfg, model)
    tflite = TFLitePredictor(export_tflite(model, cfg, variants=["float32"])[0].path, num_threads=1)
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
