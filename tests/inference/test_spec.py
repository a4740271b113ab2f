"""DeploymentSpec: JSON round trip, the model's facts, reading older or partial specs, clear errors."""

import dataclasses
import json

import pytest

from age_estimation.config import AlignConfig, load_config
from age_estimation.inference.spec import DeploymentSpec, read_spec
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.tiny_run import CLIP, CROP, TINY_OVERRIDES


class Facts:
    """What a Siam model tells the spec, without building one."""

    crop_size, clip_length, batch_size, variant, normalization, spatial_grid = CROP, 8, 1, "siam", "raw", (4, 4)
    reads_landmarks, landmark_points = False, LANDMARK_COUNT


class DynamicsFacts(Facts):
    """A model that reads the landmark stream."""

    reads_landmarks = True


def test_json_round_trip_keeps_every_field():
    spec = DeploymentSpec.from_config(load_config(None, TINY_OVERRIDES), Facts())
    spec = dataclasses.replace(spec, tflite_variant="int8", quantization="q", signature="serving_default", ops=["ADD"])
    raw = json.loads(json.dumps(spec.to_json()))
    again = DeploymentSpec.from_json(raw, origin="x.json")
    assert again == spec and isinstance(again.align, AlignConfig) and again.origin == "x.json"
    assert raw["align"]["crop_size"] == CROP and raw["normalization"].startswith("inside the model: none")


def test_from_config_takes_model_facts_and_config_settings():
    cfg = load_config(None, TINY_OVERRIDES + ["inference.test_time_flip=false", "export.model_name=edge"])
    spec = DeploymentSpec.from_config(cfg, Facts())
    assert (spec.model_name, spec.window, spec.window_span, spec.test_time_flip) == ("edge", CLIP, CLIP, False)
    assert (spec.crop_size, spec.clip_length, spec.batch_size) == (CROP, 8, 1)
    assert spec.inputs["frames"]["shape"] == [1, 8, CROP, CROP, 3]
    assert spec.outputs["spatial_attention"]["shape"] == [1, 8, 4, 4]
    assert "tflite_variant" not in spec.to_json()
    without_model = DeploymentSpec.from_config(cfg)
    assert without_model.crop_size == CROP and without_model.inputs is None
    assert spec.landmark_points == without_model.landmark_points == 0 and set(spec.inputs) == {"frames", "mask"}


def test_a_model_that_reads_the_landmark_stream_describes_it():
    spec = DeploymentSpec.from_config(load_config(None, TINY_OVERRIDES), DynamicsFacts())
    assert spec.landmark_points == LANDMARK_COUNT
    assert spec.inputs["landmarks"]["shape"] == [1, 8, LANDMARK_COUNT, 2]
    assert spec.inputs["landmark_mask"] == {"dtype": "float32", "shape": [1, 8], "meaning":
                                            "1 = the face mesh found the face in that frame, 0 = not found or padding"}
    assert DeploymentSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    for override in ("model.dynamics=true", "model.variant=dynamics_only"):  # the config alone says so too
        assert DeploymentSpec.from_config(load_config(None, TINY_OVERRIDES + [override])).landmark_points == \
            LANDMARK_COUNT


def test_older_spec_reads_with_missing_fields_and_require_names_the_file(tmp_path):
    path = tmp_path / "assets.extra" / "input_spec.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"format": 1, "crop_size": CROP, "retired_key": 3}))
    spec = read_spec(tmp_path)
    assert spec.crop_size == CROP and spec.align is None and spec.test_time_flip is None
    assert spec.require("crop_size") is spec
    with pytest.raises(ValueError, match=r"input_spec\.json: lacks align, window; re-export"):
        spec.require("align", "window")
    empty = read_spec(tmp_path / "nowhere")
    assert empty == DeploymentSpec() and "nowhere" in empty.origin


def test_updated_and_filled_from():
    spec = DeploymentSpec(crop_size=CROP).updated({"test_time_flip": True, "align": {"crop_size": CROP}})
    assert spec.test_time_flip is True and spec.align == AlignConfig(crop_size=CROP)
    with pytest.raises(ValueError, match="not deployment spec fields"):
        spec.updated({"crop": 3})
    filled = spec.filled_from(DeploymentSpec(crop_size=99, window=5, test_time_flip=False))
    assert (filled.crop_size, filled.window, filled.test_time_flip) == (CROP, 5, True)


def test_interval_and_model_card_travel_with_the_spec(tmp_path):
    from age_estimation.inference.interval import IntervalCalibration
    from age_estimation.inference.model_card import ModelCard
    from tests.tiny_run import write_run_facts

    (tmp_path / "config.yaml").write_text("data:\n  clip_length: 4\n")
    interval, card = write_run_facts(tmp_path)
    spec = DeploymentSpec.from_config(load_config(None, TINY_OVERRIDES)).with_run_files(tmp_path)
    assert spec.interval == interval and spec.model_card == card and spec.min_face_fraction == 0.2
    raw = json.loads(json.dumps(spec.to_json()))
    assert raw["interval"]["coverage"] == 0.9 and raw["model_card"]["synthetic"] is True
    again = DeploymentSpec.from_json(raw, origin="x.json")
    assert isinstance(again.interval, IntervalCalibration) and isinstance(again.model_card, ModelCard)
    assert again.model_card == card and again.interval.bounds(30.0) == pytest.approx(interval.bounds(30.0), abs=1e-3)
    # another model's interval and card never fill in a spec that lacks them
    assert DeploymentSpec().filled_from(spec).interval is None
    assert DeploymentSpec().filled_from(spec).model_card is None


def test_old_specs_have_no_interval_and_a_bad_one_names_the_file(tmp_path):
    assert DeploymentSpec.from_json({"crop_size": CROP}).interval is None
    assert DeploymentSpec().with_run_files(tmp_path) == DeploymentSpec()
    with pytest.raises(ValueError, match=r"x\.json: interval: .*lacks quantile"):
        DeploymentSpec.from_json({"interval": {"coverage": 0.9}}, origin="x.json")
    (tmp_path / "model_card.json").write_text("{}")
    with pytest.raises(ValueError, match=r"model_card\.json: model_card: model card lacks"):
        DeploymentSpec().with_run_files(tmp_path)
