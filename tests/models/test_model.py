"""build_siam: variable clip length, padding, save/load in a fresh process, variants, and learning."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from age_estimation.config import ModelConfig
from age_estimation.models.siam.model import build_siam

CROP = 32
LENGTHS = (6, 16, 24)


def tiny_config(**overrides) -> ModelConfig:
    base = {
        "conv_filters": [8, 12], "attention_after_block": 1, "attention_projection": 4, "embedding_units": 16,
        "rnn_units": 12, "temporal_attention_units": 6, "dropout": 0.0,
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
        import age_estimation.models.siam.layers  # registers the custom layers; no custom_objects needed
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
    history = model.fit(x, {"age": ages}, epochs=150, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])
