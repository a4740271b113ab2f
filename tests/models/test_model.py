"""Siam / build_siam: config round trip, self-description, the fixed twin, variable clip length, padding,
save/load in a fresh process, files saved before an option's removal, variants, and learning."""

import dataclasses
import inspect
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from age_estimation.config import ConfigError, ModelConfig, load_config
from age_estimation.config_keys import REMOVED_KEYS
from age_estimation.models.siam.model import Siam, build_siam, load_siam

CROP = 32
LENGTHS = (6, 16, 24)


def tiny_config(**overrides) -> ModelConfig:
    """A small pixel-only architecture (the paper's model); ``dynamics=True`` adds the landmark stream."""
    base = {
        "dynamics": False, "conv_filters": [8, 12], "attention_after_block": 1, "attention_projection": 4,
        "embedding_units": 16, "rnn_units": 12, "temporal_attention_units": 6, "dropout": 0.0,
    }
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_siam(tiny_config(), crop_size=CROP)


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (t, CROP, CROP, 3), dtype=np.uint8) for t in LENGTHS]


def pad_batch(clips):
    longest = max(len(c) for c in clips)
    frames = np.zeros((len(clips), longest, CROP, CROP, 3), np.uint8)
    mask = np.zeros((len(clips), longest), np.float32)
    for i, clip in enumerate(clips):
        frames[i, : len(clip)] = clip
        mask[i, : len(clip)] = 1.0
    return {"frames": frames, "mask": mask}


def single(clip):
    return {"frames": clip[None], "mask": np.ones((1, len(clip)), np.float32)}


def alone_ages(model, clips):
    return np.array([float(model(single(c))["age"][0, 0]) for c in clips])


def test_outputs_named_and_shaped(model, clips):
    out = model(pad_batch(clips))
    assert set(out) == {"age", "spatial_attention", "temporal_attention"}
    assert out["age"].shape == (3, 1)
    assert out["spatial_attention"].shape == (3, 24, CROP // 2, CROP // 2)
    assert out["temporal_attention"].shape == (3, 24)


def test_padded_batch_matches_each_clip_alone_eagerly(model, clips):
    batched = np.asarray(model(pad_batch(clips))["age"])[:, 0]
    np.testing.assert_allclose(batched, alone_ages(model, clips), atol=1e-4)


def test_same_ages_inside_tf_function_with_unknown_t(model, clips):
    spec = {"frames": tf.TensorSpec((None, None, CROP, CROP, 3), tf.uint8), "mask": tf.TensorSpec((None, None))}
    graph = tf.function(lambda x: model(x)["age"], input_signature=[spec])
    expected = alone_ages(model, clips)
    np.testing.assert_allclose(graph(pad_batch(clips))[:, 0], expected, atol=1e-4)
    for clip, age in zip(clips, expected):
        np.testing.assert_allclose(graph(single(clip))[0, 0], age, atol=1e-4)


@pytest.mark.parametrize("steps", LENGTHS)
def test_predict_matches_eager_for_each_length(model, steps):
    """Guards against Keras 3.15's TimeDistributed bug: predict must not loop over the wrong axis."""
    rng = np.random.default_rng(steps)
    batch = {"frames": rng.integers(0, 256, (2, steps, CROP, CROP, 3), dtype=np.uint8),
             "mask": np.ones((2, steps), np.float32)}
    eager = np.asarray(model(batch)["age"])
    predicted = model.predict(batch, verbose=0)["age"]
    np.testing.assert_allclose(predicted, eager, atol=1e-4)


def test_padding_gets_zero_weight_and_does_not_change_age(model, clips):
    batch = pad_batch(clips)
    out = model(batch)
    weights = np.asarray(out["temporal_attention"])
    assert np.all(weights[batch["mask"] == 0] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    spatial = np.asarray(out["spatial_attention"])
    np.testing.assert_allclose(spatial.sum(axis=(2, 3)), 1.0, rtol=1e-4)
    noisy = dict(batch, frames=np.where(batch["mask"][..., None, None, None] > 0, batch["frames"], 255).astype(np.uint8))
    np.testing.assert_allclose(model(noisy)["age"], out["age"], atol=1e-4)


def test_keras_round_trip_in_fresh_process_without_custom_objects(model, clips, tmp_path):
    path = tmp_path / "siam.keras"
    model.save(path)
    batch = pad_batch(clips)
    np.savez(tmp_path / "batch.npz", **batch)
    expected = np.asarray(model(batch)["age"])
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import age_estimation.models.siam.model  # registers Siam and its layers; no custom_objects needed
        model = keras.saving.load_model({str(path)!r})
        batch = dict(np.load({str(tmp_path / "batch.npz")!r}))
        np.save({str(tmp_path / "ages.npy")!r}, np.asarray(model(batch)["age"]))
        np.save({str(tmp_path / "pred.npy")!r}, model.predict(batch, verbose=0)["age"])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "ages.npy"), expected)
    np.testing.assert_allclose(np.load(tmp_path / "pred.npy"), expected, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, has_spatial",
    [
        ({"variant": "no_spatial"}, False),
        ({"variant": "no_temporal", "no_temporal_pooling": "last"}, True),
        ({"variant": "no_temporal", "no_temporal_pooling": "mean"}, True),
        ({"variant": "frame_average"}, True),
        ({"rnn": "gru", "bidirectional": True, "rnn_layers": 2}, True),
        ({"attention_normalization": "sigmoid", "attention_mode": "plain"}, True),
    ],
)
def test_variants_build_and_respect_padding(overrides, has_spatial, clips):
    variant = build_siam(tiny_config(**overrides), crop_size=CROP)
    out = variant(pad_batch(clips))
    assert ("spatial_attention" in out) == has_spatial
    np.testing.assert_allclose(np.asarray(out["age"])[:, 0], alone_ages(variant, clips), atol=1e-4)
    weights = np.asarray(out["temporal_attention"])
    assert np.all(weights[pad_batch(clips)["mask"] == 0] == 0.0)


def test_variants_differ_in_structure():
    layer_names = {
        v: {layer.__class__.__name__ for layer in build_siam(tiny_config(variant=v), crop_size=CROP).layers}
        for v in ("siam", "no_spatial", "no_temporal", "frame_average")
    }
    assert "SpatialAttention" not in layer_names["no_spatial"]
    assert "TemporalAttention" not in layer_names["no_temporal"] | layer_names["frame_average"]
    assert "LSTM" not in layer_names["frame_average"]
    assert {"SpatialAttention", "TemporalAttention", "LSTM"} <= layer_names["siam"]


def test_fixed_length_unrolled_model_matches_dynamic_one(model, clips):
    fixed = build_siam(tiny_config(unroll=True), crop_size=CROP, clip_length=16, batch_size=1)
    fixed.set_weights(model.get_weights())
    np.testing.assert_allclose(fixed(single(clips[1]))["age"], model(single(clips[1]))["age"], atol=1e-5)


def test_tiny_model_overfits_eight_clips():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (8, 6, 16, 16, 3), dtype=np.uint8)
    ages = rng.uniform(10, 70, (8, 1)).astype("float32")
    model = build_siam(tiny_config(), crop_size=16, age_prior=(float(ages.mean()), float(ages.std())))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"age": "mse"})
    x = {"frames": frames, "mask": np.ones((8, 6), np.float32)}
    # the loss is down to about 3% of its start after 20 epochs and 0.2% after 40
    history = model.fit(x, {"age": ages}, epochs=40, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


VARIANT_CONFIGS = {
    "siam": {},
    "no_spatial": {"variant": "no_spatial"},
    "no_temporal": {"variant": "no_temporal"},
    "frame_average": {"variant": "frame_average"},
    "siam_dynamics": {"dynamics": True},
    "no_temporal_dynamics": {"variant": "no_temporal", "dynamics": True},
    "dynamics_only": {"variant": "dynamics_only"},
}
POINTS = 41


def with_landmarks(batch, seed=0):
    """``batch`` plus a random landmark stream (every frame found where the clip has one)."""
    rng = np.random.default_rng(seed)
    steps = batch["mask"].shape
    return {**batch, "landmarks": rng.normal(0, 0.5, (*steps, POINTS, 2)).astype("float32"),
            "landmark_mask": batch["mask"].copy()}


def model_inputs(model, batch):
    """The entries of ``batch`` the model takes (landmarks added when it reads them)."""
    batch = with_landmarks(batch) if model.reads_landmarks else batch
    return {name: batch[name] for name in model.input}


def test_siam_arguments_are_the_model_config_fields_with_its_defaults():
    params = inspect.signature(Siam.__init__).parameters
    own = {"crop_size", "clip_length", "batch_size", "age_prior", "landmark_points", "landmark_pairs"}
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    assert set(params) - {"self", "kwargs"} == own | set(fields)
    defaults = ModelConfig()
    for name in set(fields) - {"backbone"}:
        assert list(params[name].default) == getattr(defaults, name) if name == "conv_filters" else (
            params[name].default == getattr(defaults, name)
        ), name


def test_the_default_siam_is_the_default_pipelines_model():
    default = Siam()
    assert default.reads_landmarks and set(default.input) == {"frames", "mask", "landmarks", "landmark_mask"}
    pipeline = load_config(Path(__file__).resolve().parents[2] / "pipelines" / "default.yaml")
    assert default.get_config() == build_siam(pipeline.model, crop_size=pipeline.align.crop_size).get_config()


def test_model_describes_itself(model):
    assert isinstance(model, Siam)
    assert (model.crop_size, model.clip_length, model.batch_size) == (CROP, None, None)
    assert model.age_prior == (40.0, 20.0) and model.variant == "siam" and model.normalization == "symmetric"
    assert model.spatial_grid == (CROP // 2, CROP // 2)
    assert build_siam(tiny_config(variant="no_spatial"), crop_size=CROP).spatial_grid is None
    raw = build_siam(tiny_config(backbone={"name": "MobileNetV3Small"}), crop_size=CROP)
    assert raw.normalization == "raw"


@pytest.mark.parametrize("variant", sorted(VARIANT_CONFIGS))
def test_config_round_trip_gives_the_same_model(variant, clips):
    keras.utils.set_random_seed(4)
    original = build_siam(tiny_config(**VARIANT_CONFIGS[variant]), crop_size=CROP, age_prior=(30.0, 9.0))
    config = original.get_config()
    assert {"name", "trainable"} <= set(config)  # the base Model's keys come first
    copy = Siam.from_config(config)
    assert copy.get_config() == config and json.loads(json.dumps(config)) == config
    copy.set_weights(original.get_weights())
    batch = model_inputs(original, pad_batch(clips))
    np.testing.assert_array_equal(np.asarray(copy(batch)["age"]), np.asarray(original(batch)["age"]))


@pytest.mark.parametrize("variant", sorted(VARIANT_CONFIGS))
def test_keras_file_round_trip_for_every_variant(variant, clips, tmp_path):
    keras.utils.set_random_seed(5)
    original = build_siam(tiny_config(**VARIANT_CONFIGS[variant]), crop_size=CROP, age_prior=(30.0, 9.0))
    original.save(tmp_path / "m.keras")
    loaded = load_siam(tmp_path / "m.keras")
    assert isinstance(loaded, Siam) and loaded.get_config() == original.get_config()
    assert (loaded.age_prior, loaded.spatial_grid) == (original.age_prior, original.spatial_grid)
    for clip in clips:  # any T after loading, eagerly and through predict
        batch = model_inputs(original, single(clip))
        np.testing.assert_allclose(loaded(batch)["age"], original(batch)["age"], atol=1e-5)
        np.testing.assert_allclose(loaded.predict(batch, verbose=0)["age"], original(batch)["age"], atol=1e-5)


def test_twin_from_config_has_fixed_t_and_batch_one(model, clips):
    twin = Siam.from_config({**model.get_config(), "clip_length": 16, "batch_size": 1, "unroll": True})
    twin.set_weights(model.get_weights())
    assert (twin.clip_length, twin.batch_size, twin.architecture.unroll) == (16, 1, True)
    assert tuple(twin.inputs[0].shape) == (1, 16, CROP, CROP, 3) and tuple(twin.inputs[1].shape) == (1, 16)
    assert twin.age_prior == model.age_prior
    np.testing.assert_allclose(twin(single(clips[1]))["age"], model(single(clips[1]))["age"], atol=1e-5)
    with pytest.raises(ValueError):
        twin(single(clips[0]))  # T = 6 is not the twin's T


def test_plain_functional_file_fails_naming_the_file(model, tmp_path):
    plain = keras.Model(model.input, model.output)
    plain.save(tmp_path / "old.keras")
    with pytest.raises(ValueError, match=r"old\.keras: holds a plain Functional model.*retrain"):
        load_siam(tmp_path / "old.keras")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_siam(tmp_path / "missing.keras")


@pytest.mark.parametrize("overrides", [{"dynamics": True}, {"variant": "dynamics_only"},
                                       {"variant": "frame_average", "dynamics": True},
                                       {"variant": "no_temporal", "dynamics": True},
                                       {"dynamics": True, "rnn": "gru", "bidirectional": True}])
def test_dynamics_models_take_the_landmark_stream_and_respect_padding(overrides, clips):
    keras.utils.set_random_seed(6)
    model = build_siam(tiny_config(**overrides), crop_size=CROP)
    assert model.reads_landmarks and model.landmark_points == POINTS
    expected = {"mask", "landmarks", "landmark_mask"} | ({"frames"} if overrides.get("variant") != "dynamics_only" else set())
    assert set(model.input) == expected
    batch = model_inputs(model, pad_batch(clips))
    out = model(batch)
    alone = [float(model(model_inputs(model, single(c)) | {"landmarks": batch["landmarks"][i:i + 1, : len(c)]})["age"][0, 0])
             for i, c in enumerate(clips)]
    np.testing.assert_allclose(np.asarray(out["age"])[:, 0], alone, atol=1e-4)
    assert np.all(np.asarray(out["temporal_attention"])[batch["mask"] == 0] == 0.0)


def test_dynamics_model_reads_the_landmarks(clips):
    keras.utils.set_random_seed(7)
    model = build_siam(tiny_config(dynamics=True), crop_size=CROP)
    batch = with_landmarks(pad_batch(clips))
    moved = {**batch, "landmarks": batch["landmarks"] + 0.3}
    missing = {**batch, "landmark_mask": np.zeros_like(batch["landmark_mask"])}
    age = np.asarray(model(batch)["age"])
    assert not np.allclose(age, np.asarray(model(moved)["age"]))
    assert not np.allclose(age, np.asarray(model(missing)["age"]))
    assert {"LandmarkDynamics", "Concatenate"} <= {layer.__class__.__name__ for layer in model.layers}


REMOVED_OFF = {key.split(".", 1)[1]: removed.off for key, removed in REMOVED_KEYS.items()}


def _with_saved_config(path, **changes):
    """Rewrite the Siam config inside the .keras file at ``path`` with ``changes`` (a file of another version)."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    saved = json.loads(files["config.json"])
    saved["config"].update(changes)
    files["config.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_a_model_saved_before_the_removals_loads_while_the_removed_options_are_off(tmp_path, clips):
    keras.utils.set_random_seed(10)
    original = build_siam(tiny_config(dynamics=True), crop_size=CROP)
    assert Siam.from_config({**original.get_config(), **REMOVED_OFF}).get_config() == original.get_config()
    original.save(tmp_path / "older.keras")
    _with_saved_config(tmp_path / "older.keras", **REMOVED_OFF)
    loaded = load_siam(tmp_path / "older.keras")
    batch = model_inputs(original, pad_batch(clips))
    np.testing.assert_array_equal(np.asarray(loaded(batch)["age"]), np.asarray(original(batch)["age"]))


@pytest.mark.parametrize("key, value", [("dynamics_fusion", "late"), ("frame_summary_dropout", 0.3),
                                        ("dynamics_statistics", True), ("landmark_frame", "eyes"),
                                        ("dynamics_quantiles", 8), ("dynamics_quantile_features", 4)])
def test_a_model_saved_with_a_removed_option_on_is_refused_naming_it(key, value, model, tmp_path):
    with pytest.raises(ConfigError, match=rf"'model.{key}' was removed: .*measured .*not kept"):
        Siam.from_config({**model.get_config(), key: value})
    model.save(tmp_path / "m.keras")
    _with_saved_config(tmp_path / "m.keras", **{key: value})
    with pytest.raises(ConfigError, match=rf"m\.keras: .*'model.{key}' was removed"):
        load_siam(tmp_path / "m.keras")
