"""SIAM on the pretrained face-age backbone: it builds, round-trips through its config, freezes, and exports
to SavedModel and TFLite float32 / float16 with parity, and the exported file predicts without TensorFlow's
Keras model (the edge runtime)."""

from __future__ import annotations

import numpy as np
import pytest

from age_estimation.config import load_config, save_config
from age_estimation.export.clips import random_clips
from age_estimation.export.run import export_run
from age_estimation.inference.runtimes import KerasPredictor, open_predictor
from age_estimation.models.siam.model import Siam, build_siam

pytestmark = pytest.mark.slow  # TFLite conversions of a 660k-parameter model

BACKBONE = [
    "model.backbone.name=FaceAgeResNet10",
    "model.backbone.weights=face-age-v1",
    "model.backbone.attention_layer=block3",
    "model.backbone.trainable=false",
    "align.framing=dlib_chip",
    "model.rnn_units=12",
    "model.temporal_attention_units=6",
    "model.embedding_units=16",
    "data.clip_length=6",
    "inference.window_span=6",
    "export.representative_clips=4",
    "export.latency_runs=2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbone")
    cfg = load_config(None, [*BACKBONE, f"export.directory={root / 'exported'}",
                             f"data.cache_dir={root / 'no-cache'}"])
    run = root / "runs" / "backbone"
    run.mkdir(parents=True)
    build_siam(cfg.model, crop_size=64, age_prior=(33.0, 12.0)).save(run / "model.keras")
    save_config(cfg, run / "config.yaml")
    return run


def test_the_backbone_model_is_frozen_attends_on_its_map_and_round_trips():
    cfg = load_config(None, BACKBONE)
    model = build_siam(cfg.model, crop_size=64)
    backbone = model.get_layer("face_age_backbone")
    assert not backbone.trainable and model.spatial_grid == (7, 7) and model.normalization == "raw"
    assert not any(v.path.startswith("face_age_backbone/") for v in model.trainable_variables)
    copy = Siam.from_config(model.get_config())
    assert copy.get_config() == model.get_config()
    np.testing.assert_array_equal(copy.get_layer("face_age_backbone").stem_conv.kernel.numpy(),
                                  backbone.stem_conv.kernel.numpy())  # the pretrained weights, loaded again


def test_the_backbone_model_exports_with_parity(run):
    result = export_run(run, variants=["float32", "float16"])
    saved, report = result["savedmodel"], result["tflite"]["report"]
    variants = report["variants"]
    print("backbone parity", saved["max_abs_diff_years"],
          {name: v["max_abs_diff_years"] for name, v in variants.items()})
    assert saved["max_abs_diff_years"] <= 1e-4
    assert variants["float32"]["max_abs_diff_years"] <= 0.01 and variants["float16"]["max_abs_diff_years"] <= 0.1
    cfg = load_config(run / "config.yaml")
    keras_model = KerasPredictor(run / "model.keras")
    clip = random_clips(1, cfg.data.clip_length, 64, keras_model.landmark_points, seed=5)[0]
    inputs = {"frames": clip["frames"], "mask": clip["mask"], "landmarks": clip.get("landmarks"),
              "landmark_mask": clip.get("landmark_mask")}
    expected = keras_model.predict(**inputs)["age"]
    for name in ("float32", "float16"):
        edge = open_predictor(result["tflite"]["variants"][name])
        tolerance = 0.01 if name == "float32" else 0.1
        np.testing.assert_allclose(edge.predict(**inputs)["age"], expected, atol=tolerance)
