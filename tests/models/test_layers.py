"""SpatialAttention, TemporalAttention, LandmarkDynamics and the time-folding layers: shapes, masking,
serialization, gradients."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from age_estimation.models.siam import layers as layers_module
from age_estimation.models.siam.layers import (
    PACKAGE,
    FoldTime,
    FrameNormalization,
    LandmarkDynamics,
    MaskedTemporalPooling,
    SpatialAttention,
    TemporalAttention,
    UnfoldTime,
    ValidFrames,
    masked_softmax,
)

RNG = np.random.default_rng(0)


def _features(shape):
    return RNG.normal(size=shape).astype("float32")


@pytest.mark.parametrize("normalization", ["softmax", "sigmoid"])
@pytest.mark.parametrize("mode", ["residual", "plain"])
def test_spatial_attention_shapes_and_any_batch(normalization, mode):
    layer = SpatialAttention(projection=4, normalization=normalization, mode=mode)
    for batch in (1, 3):
        weighted, attention = layer(_features((batch, 5, 6, 8)))
        assert weighted.shape == (batch, 5, 6, 8)
        assert attention.shape == (batch, 5, 6)
    assert layer.compute_output_shape((None, 5, 6, 8)) == ((None, 5, 6, 8), (None, 5, 6))


def test_spatial_softmax_map_sums_to_one_and_reweights_features():
    x = _features((2, 4, 4, 3))
    weighted, attention = SpatialAttention(projection=0, mode="plain")(x)
    np.testing.assert_allclose(np.sum(attention, axis=(1, 2)), 1.0, rtol=1e-5)
    expected = x * np.asarray(attention)[..., None] * 16
    np.testing.assert_allclose(weighted, expected, rtol=1e-5, atol=1e-6)


def test_spatial_scores_are_spatially_indexed_not_shared():
    """The same feature vector at two positions scores differently: each position owns its weights."""
    layer = SpatialAttention(projection=0, normalization="sigmoid")
    x = np.ones((1, 3, 3, 4), "float32")
    _, attention = layer(x)
    assert np.ptp(np.asarray(attention)) > 1e-3
    assert layer.position_kernel.shape == (3, 3, 4)


def test_spatial_attention_rejects_unknown_spatial_size_and_bad_options():
    with pytest.raises(ValueError, match="static H, W"):
        SpatialAttention().build((None, None, None, 8))
    with pytest.raises(ValueError, match="normalization"):
        SpatialAttention(normalization="relu")
    with pytest.raises(ValueError, match="mode"):
        SpatialAttention(mode="gated")


def test_temporal_attention_masks_padding_exactly():
    states = _features((2, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    summary, weights = TemporalAttention(6)(states, mask=mask)
    weights = np.asarray(weights)
    assert np.all(weights[0, 3:] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(summary[0], (weights[0][:, None] * states[0]).sum(0), rtol=1e-5, atol=1e-6)


def test_temporal_attention_ignores_padded_content():
    layer = TemporalAttention(6)
    states = _features((1, 6, 4))
    mask = np.array([[1, 1, 1, 1, 0, 0]], bool)
    garbage = states.copy()
    garbage[0, 4:] = 1e3
    a, _ = layer(states, mask=mask)
    b, _ = layer(garbage, mask=mask)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a, layer(states[:, :4])[0], rtol=1e-5, atol=1e-6)


def test_masked_softmax_all_masked_row_is_zero():
    weights = masked_softmax(np.zeros((1, 3), "float32"), np.zeros((1, 3), bool))
    assert np.all(np.asarray(weights) == 0.0)


@pytest.mark.parametrize("mode", ["mean", "last"])
def test_masked_pooling_weights(mode):
    states = _features((2, 4, 3))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    summary, weights = MaskedTemporalPooling(mode)(states, mask=mask)
    weights = np.asarray(weights)
    if mode == "mean":
        np.testing.assert_allclose(weights[0], [0.5, 0.5, 0, 0])
    else:
        np.testing.assert_allclose(weights, [[0, 1, 0, 0], [0, 0, 0, 1]])
        np.testing.assert_allclose(summary[0], states[0, 1], rtol=1e-6)


SERIALIZED = [
    SpatialAttention(projection=3, normalization="sigmoid", temperature=2.0, learn_temperature=False, mode="plain"),
    TemporalAttention(units=7),
    MaskedTemporalPooling("last"),
    FrameNormalization("raw"),
    FoldTime(),
    UnfoldTime(),
    ValidFrames(),
    LandmarkDynamics(pairs=2, motion_scale=4.0),
]


@pytest.mark.parametrize("layer", SERIALIZED, ids=lambda layer: type(layer).__name__)
def test_serialization_round_trip(layer):
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    assert {"name", "trainable", "dtype"} <= set(layer.get_config())  # built on the base layer's config
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_every_layer_is_registered_and_round_trip_tested():
    defined = [cls for _, cls in inspect.getmembers(layers_module, inspect.isclass)
               if issubclass(cls, keras.layers.Layer) and cls.__module__ == layers_module.__name__]
    for cls in defined:
        assert keras.saving.get_registered_name(cls) == f"{PACKAGE}>{cls.__name__}", cls
    assert {type(layer) for layer in SERIALIZED} == set(defined) - {layers_module.TemporalSummary}


def test_gradients_reach_every_attention_parameter():
    spatial = SpatialAttention(projection=4)
    temporal = TemporalAttention(5)
    frames = tf.constant(_features((6, 4, 4, 3)))
    mask = tf.constant([[True, True, False], [True, True, True]])
    with tf.GradientTape() as tape:
        weighted, _ = spatial(frames)
        states = tf.reshape(tf.reduce_mean(weighted, axis=(1, 2)), (2, 3, 3))
        summary, _ = temporal(states, mask=mask)
        loss = tf.reduce_sum(summary**2)
    variables = spatial.trainable_variables + temporal.trainable_variables
    assert len(variables) == 5 + 3
    for variable, grad in zip(variables, tape.gradient(loss, variables)):
        assert grad is not None, variable.path
        assert float(tf.reduce_max(tf.abs(grad))) > 0, variable.path


def test_fold_and_unfold_time_round_trip_with_unknown_t():
    fold, unfold = FoldTime(), UnfoldTime()

    @tf.function(input_signature=[tf.TensorSpec((None, None, 2, 2, 1))])
    def round_trip(x):
        return unfold([fold(x), x])

    for steps in (1, 5):
        x = _features((3, steps, 2, 2, 1))
        np.testing.assert_array_equal(round_trip(x), x)


def _mirrored(points, pairs):
    """The landmarks of the mirror image: x negated, each pair's two points swapped."""
    mirrored = points.copy()
    mirrored[..., 0] *= -1
    order = [j for i in range(pairs) for j in (2 * i + 1, 2 * i)] + list(range(2 * pairs, points.shape[-2]))
    return mirrored[..., order, :]


def test_landmark_dynamics_is_unchanged_by_a_mirror_image():
    points = _features((2, 6, 7, 2))
    found = np.ones((2, 6), "float32")
    layer = LandmarkDynamics(pairs=3)
    np.testing.assert_allclose(layer([points, found]), layer([_mirrored(points, 3), found]), atol=1e-6)
    assert layer([points, found]).shape == (2, 6, 3 * 7 + 1)
    assert layer.compute_output_shape(((None, None, 7, 2), (None, None))) == (None, None, 22)


def test_landmark_dynamics_masks_missing_frames_and_their_differences():
    points = _features((1, 5, 3, 2))
    found = np.array([[1, 1, 0, 1, 1]], "float32")
    out = np.asarray(LandmarkDynamics(pairs=1)([points, found]))
    groups = 3
    assert np.all(out[0, 2] == 0)  # a frame the mesh missed contributes nothing, not zeros as positions
    step = out[0, :, 2 * groups: 3 * groups]
    assert np.all(step[0] == 0) and np.all(step[3] == 0)  # no difference across the missing frame
    geometry = out[0, :, :groups]
    np.testing.assert_allclose(step[1], 10 * (geometry[1] - geometry[0]), rtol=1e-5)
    motion = out[0, :, groups: 2 * groups]
    np.testing.assert_allclose(motion[[0, 1, 3, 4]].sum(axis=0), 0, atol=1e-5)  # about the found frames' mean
    changed = points.copy()
    changed[0, 2] += 5.0  # the missing frame's values do not reach the other frames
    np.testing.assert_allclose(LandmarkDynamics(pairs=1)([changed, found]), out, atol=1e-6)
