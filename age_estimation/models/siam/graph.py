"""The functional pieces ``Siam`` assembles: inputs, per-frame encoders, recurrent stack, temporal summary, age head.

Each takes symbolic tensors and the architecture (a ``ModelConfig``) and returns symbolic tensors, so the
model's ``__init__`` reads as the data flow. Layer names are part of the model's contract (training reads
``get_layer("age")``, saved weights are matched by them), so they are fixed here.
"""

from __future__ import annotations

from typing import Any

import keras

from age_estimation.config import ModelConfig
from age_estimation.models.face_age.pretrained import face_age_backbone
from age_estimation.models.face_age.resnet import STAGES
from age_estimation.models.siam.layers import (
    FrameNormalization,
    LandmarkDynamics,
    MaskedTemporalPooling,
    SpatialAttention,
    TemporalAttention,
)

# The face-age ResNet-10 of ``models/face_age`` (weights "face-age-v1": pretrained on real faces, loaded
# offline from the cached asset); it normalises its raw 0..255 input itself.
FACE_AGE_BACKBONE = "FaceAgeResNet10"
# Backbones and the input range each expects: the face-age network and keras.applications CNNs.
BACKBONE_SCALING = {
    FACE_AGE_BACKBONE: "raw",
    "MobileNetV2": "symmetric",
    "MobileNetV3Small": "raw",
    "MobileNetV3Large": "raw",
    "EfficientNetB0": "raw",
    "EfficientNetV2B0": "raw",
}


def input_scaling(config: ModelConfig) -> str:
    """The input range the frame encoder normalises to: "symmetric" ([-1, 1]) or "raw" (0..255)."""
    name = config.backbone.name
    if not name:
        return "symmetric"
    if name not in BACKBONE_SCALING:
        raise ValueError(f"model.backbone.name {name!r} is not supported; choose one of {sorted(BACKBONE_SCALING)}")
    return BACKBONE_SCALING[name]


def reads_frames(config: ModelConfig) -> bool:
    """Whether the architecture has the per-frame CNN (every variant but ``dynamics_only``)."""
    return config.variant != "dynamics_only"


def model_inputs(
    config: ModelConfig, crop_size: int, clip_length: int | None, batch_size: int | None, landmark_points: int
) -> dict[str, Any]:
    """The named inputs of the architecture: ``frames`` (uint8) unless ``dynamics_only``, ``mask``, and
    ``landmarks`` with ``landmark_mask`` when it reads the landmark stream."""
    inputs = {}
    if reads_frames(config):
        inputs["frames"] = keras.Input(
            (clip_length, crop_size, crop_size, 3), batch_size=batch_size, dtype="uint8", name="frames"
        )
    inputs["mask"] = keras.Input((clip_length,), batch_size=batch_size, dtype="float32", name="mask")
    if config.reads_landmarks:
        inputs["landmarks"] = keras.Input(
            (clip_length, landmark_points, 2), batch_size=batch_size, dtype="float32", name="landmarks"
        )
        inputs["landmark_mask"] = keras.Input(
            (clip_length,), batch_size=batch_size, dtype="float32", name="landmark_mask"
        )
    return inputs


def frame_encoder(x: Any, config: ModelConfig, crop_size: int) -> tuple[Any, Any]:
    """Per-frame CNN (from scratch or a keras.applications backbone) with spatial attention inside.

    Returns the (B*T, D) frame embeddings and the (B*T, h, w) attention map (None for ``no_spatial``).
    """
    if config.backbone.name:
        return _backbone_encoder(x, config, crop_size)
    use_spatial = config.variant != "no_spatial"
    x = FrameNormalization(input_scaling(config), name="normalize")(x)
    spatial_map = None
    for index, filters in enumerate(config.conv_filters):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{index}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=config.batch_norm_momentum, name=f"block{index}_bn")(x)
        x = keras.layers.ReLU(name=f"block{index}_relu")(x)
        if use_spatial and index == config.attention_after_block:
            x, spatial_map = _spatial_attention(config)(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    return _embed(x, config), spatial_map


def _backbone_encoder(x: Any, config: ModelConfig, crop_size: int) -> tuple[Any, Any]:
    """A pretrained backbone (optionally truncated at ``attention_layer``) + spatial attention."""
    scaling = input_scaling(config)
    base = _face_age_backbone(config) if config.backbone.name == FACE_AGE_BACKBONE else _keras_application(
        config, crop_size)
    base.trainable = config.backbone.trainable
    x = base(FrameNormalization(scaling, name="normalize")(x))
    spatial_map = None
    if config.variant != "no_spatial":
        x, spatial_map = _spatial_attention(config)(x)
    return _embed(x, config), spatial_map


def _keras_application(config: ModelConfig, crop_size: int) -> keras.Model:
    """A keras.applications CNN without its top, cut at ``attention_layer`` when one is named."""
    name = config.backbone.name
    base = getattr(keras.applications, name)(
        include_top=False, weights=config.backbone.weights, input_shape=(crop_size, crop_size, 3)
    )
    if config.backbone.attention_layer:
        base = keras.Model(base.input, base.get_layer(config.backbone.attention_layer).output, name=f"{name}_cut")
    return base


def _face_age_backbone(config: ModelConfig) -> keras.Model:
    """The face-age ResNet's feature map, cut after stage ``attention_layer`` ("block1".."block5"; empty:
    the whole network, a 3x3 map at 64 px), with the weights ``backbone.weights`` names (None: random)."""
    layer = config.backbone.attention_layer or f"block{len(STAGES)}"
    known = [f"block{index}" for index in range(1, len(STAGES) + 1)]
    if layer not in known:
        raise ValueError(f"model.backbone.attention_layer {layer!r}: {FACE_AGE_BACKBONE} has {', '.join(known)}")
    return face_age_backbone(stages=known.index(layer) + 1, weights=config.backbone.weights)


def _embed(x: Any, config: ModelConfig) -> Any:
    x = keras.layers.GlobalAveragePooling2D(name="frame_pool")(x)
    return keras.layers.Dense(config.embedding_units, activation="relu", name="frame_embedding")(x)


def _spatial_attention(config: ModelConfig) -> SpatialAttention:
    return SpatialAttention(
        projection=config.attention_projection,
        normalization=config.attention_normalization,
        temperature=config.attention_temperature,
        learn_temperature=config.learn_temperature,
        mode=config.attention_mode,
        name="spatial_attention_layer",
    )


def landmark_encoder(landmarks: Any, landmark_mask: Any, mask: Any, config: ModelConfig, pairs: int) -> Any:
    """The landmark stream's (B, T, dynamics_units) per-frame codes: flip-invariant features, two dense layers.

    A frame counts as found only when it is also a real frame (``mask``), so padding never enters the
    clip's statistics whatever the caller put in ``landmark_mask``.
    """
    found = keras.layers.Multiply(name="found_frames")([landmark_mask, mask])
    features = LandmarkDynamics(pairs, name="landmark_dynamics")([landmarks, found])
    x = keras.layers.Dense(config.dynamics_units, activation="relu", name="dynamics_hidden")(features)
    return keras.layers.Dense(config.dynamics_units, activation="relu", name="dynamics_embedding")(x)


def fused_codes(frame_codes: Any, landmark_codes: Any) -> Any:
    """The per-frame codes of the streams present (either may be None), concatenated when both are: one
    temporal model then reads the pixels and the landmarks of each frame together (early fusion)."""
    streams = [codes for codes in (frame_codes, landmark_codes) if codes is not None]
    return streams[0] if len(streams) == 1 else keras.layers.Concatenate(name="fuse_streams")(streams)


def temporal_summary(embeddings: Any, valid: Any, config: ModelConfig) -> tuple[Any, Any]:
    """The (B, D) clip summary and (B, T) frame weights of the variant's temporal model.

    ``siam``, ``no_spatial`` and ``dynamics_only``: RNN + temporal attention; ``no_temporal``: RNN + last
    valid state or mean; ``frame_average``: mean of the frame embeddings, no RNN.
    """
    if config.variant == "frame_average":
        return MaskedTemporalPooling("mean", name="temporal_pooling")(embeddings, mask=valid)
    states = _recurrent(embeddings, valid, config)
    if config.variant == "no_temporal":
        return MaskedTemporalPooling(config.no_temporal_pooling, name="temporal_pooling")(states, mask=valid)
    return TemporalAttention(config.temporal_attention_units, name="temporal_attention_layer")(states, mask=valid)


def _recurrent(x: Any, valid: Any, config: ModelConfig) -> Any:
    """Stacked LSTM/GRU layers over the frame embeddings, returning every step's state."""
    rnn_class = keras.layers.LSTM if config.rnn == "lstm" else keras.layers.GRU
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="rnn_input_dropout")(x)
    for index in range(config.rnn_layers):
        name = f"{config.rnn}{index}"
        layer = rnn_class(config.rnn_units, return_sequences=True, unroll=config.unroll, name=name)
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi_{config.rnn}{index}")
        x = layer(x, mask=valid)
    return x


def age_head(summary: Any, config: ModelConfig, age_prior: tuple[float, float]) -> Any:
    """Dropout + small MLP + a linear unit rescaled by the training-age prior; float32 for mixed precision."""
    x = summary
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    x = keras.layers.Dense(max(config.embedding_units // 2, 8), activation="relu", name="head_hidden")(x)
    x = keras.layers.Dense(1, name="head_out", dtype="float32")(x)
    mean, std = age_prior
    return keras.layers.Rescaling(scale=float(std), offset=float(mean), name="age", dtype="float32")(x)
