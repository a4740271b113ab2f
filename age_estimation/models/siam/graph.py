"""The functional pieces ``Siam`` assembles: per-frame encoders, recurrent stack, temporal summary, age head.

Each takes symbolic tensors and the architecture (a ``ModelConfig``) and returns symbolic tensors, so the
model's ``__init__`` reads as the data flow. Layer names are part of the model's contract (training reads
``get_layer("age")``), so they are fixed here.
"""

from __future__ import annotations

from typing import Any

import keras

from age_estimation.config import ModelConfig
from age_estimation.models.siam.clip_statistics import MaskedQuantiles, MaskedStatistics
from age_estimation.models.siam.layers import (
    FrameNormalization,
    LandmarkDynamics,
    MaskedTemporalPooling,
    SpatialAttention,
    TemporalAttention,
)
from age_estimation.video.landmark_set import EYE_CORNER_PAIR

# keras.applications backbones and the input range each expects.
BACKBONE_SCALING = {
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
    """A keras.applications backbone (optionally truncated at ``attention_layer``) + spatial attention."""
    name = config.backbone.name
    scaling = input_scaling(config)
    base = getattr(keras.applications, name)(
        include_top=False, weights=config.backbone.weights, input_shape=(crop_size, crop_size, 3)
    )
    if config.backbone.attention_layer:
        base = keras.Model(base.input, base.get_layer(config.backbone.attention_layer).output, name=f"{name}_cut")
    base.trainable = config.backbone.trainable
    x = base(FrameNormalization(scaling, name="normalize")(x))
    spatial_map = None
    if config.variant != "no_spatial":
        x, spatial_map = _spatial_attention(config)(x)
    return _embed(x, config), spatial_map


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


def landmark_encoder(
    landmarks: Any, landmark_mask: Any, mask: Any, config: ModelConfig, pairs: int
) -> tuple[Any, Any, Any]:
    """The landmark stream's (B, T, F) per-frame features, their (B, T, dynamics_units) codes and the
    (B, T) marks of found frames.

    The codes are flip-invariant features through two dense layers. A frame counts as found only when
    it is also a real frame (``mask``), so padding never enters the clip's statistics whatever the
    caller put in ``landmark_mask``. With ``model.landmark_frame: eyes`` the outer eye corners' pair is
    the features' origin and axis.
    """
    found = keras.layers.Multiply(name="found_frames")([landmark_mask, mask])
    frame_pair = EYE_CORNER_PAIR if config.landmark_frame == "eyes" else None
    features = LandmarkDynamics(pairs, eye_pair=frame_pair, name="landmark_dynamics")([landmarks, found])
    x = keras.layers.Dense(config.dynamics_units, activation="relu", name="dynamics_hidden")(features)
    codes = keras.layers.Dense(config.dynamics_units, activation="relu", name="dynamics_embedding")(x)
    return features, codes, found


def with_stream_statistics(
    summary: Any, landmark_features: Any, landmark_codes: Any, found: Any, config: ModelConfig
) -> Any:
    """The clip summary, joined when the model reads the stream by the clip statistics configured: the
    codes' mean, spread and maximum (``model.dynamics_statistics``) and the quantiles of a linear
    projection of the per-frame features (``model.dynamics_quantiles``), both over the found frames."""
    if landmark_codes is None:
        return summary
    parts = [summary]
    if config.dynamics_statistics:
        parts.append(MaskedStatistics(name="dynamics_statistics")(landmark_codes, found))
    if config.dynamics_quantiles:
        signals = keras.layers.Dense(config.dynamics_quantile_features, name="dynamics_quantile_projection")(
            landmark_features
        )
        parts.append(MaskedQuantiles(config.dynamics_quantiles, name="dynamics_quantiles")(signals, found))
    if len(parts) == 1:
        return summary
    return keras.layers.Concatenate(name="fuse_statistics")(parts)


def reads_frames(config: ModelConfig) -> bool:
    """Whether the architecture has the per-frame CNN (every variant but ``dynamics_only``)."""
    return config.variant != "dynamics_only"


def temporal_summary(embeddings: Any, valid: Any, config: ModelConfig, prefix: str = "") -> tuple[Any, Any]:
    """The (B, D) clip summary and (B, T) frame weights of the variant's temporal model.

    ``siam``, ``no_spatial`` and ``dynamics_only``: RNN + temporal attention; ``no_temporal``: RNN + last valid state or
    mean; ``frame_average``: mean of the frame embeddings, no RNN. ``prefix`` names the layers of a second
    stream's copy (late fusion).
    """
    if config.variant == "frame_average":
        return MaskedTemporalPooling("mean", name=f"{prefix}temporal_pooling")(embeddings, mask=valid)
    states = _recurrent(embeddings, valid, config, prefix)
    if config.variant == "no_temporal":
        return MaskedTemporalPooling(config.no_temporal_pooling, name=f"{prefix}temporal_pooling")(states, mask=valid)
    return TemporalAttention(config.temporal_attention_units, name=f"{prefix}temporal_attention_layer")(
        states, mask=valid
    )


def fused_summary(frame_codes: Any, landmark_codes: Any, valid: Any, config: ModelConfig) -> tuple[Any, Any]:
    """The clip summary and frame weights of the streams present (either may be None), fused as configured.

    Early fusion (one stream, or ``model.dynamics_fusion: early``): the per-frame codes are concatenated and
    share one temporal model. Late: each stream has its own, their summaries are concatenated (in training,
    ``frame_summary_dropout`` of the clips keep the stream's alone), and the frame weights reported are the
    pixel stream's.
    """
    streams = [codes for codes in (frame_codes, landmark_codes) if codes is not None]
    if len(streams) == 1 or config.dynamics_fusion == "early":
        joined = streams[0] if len(streams) == 1 else keras.layers.Concatenate(name="fuse_streams")(streams)
        return temporal_summary(joined, valid, config)
    summary, weights = temporal_summary(frame_codes, valid, config)
    if config.frame_summary_dropout > 0:  # whole summaries dropped: noise_shape broadcasts over the features
        summary = keras.layers.Dropout(config.frame_summary_dropout, noise_shape=(None, 1),
                                       name="frame_summary_dropout")(summary)
    landmark_summary, _ = temporal_summary(landmark_codes, valid, config, prefix="dynamics_")
    return keras.layers.Concatenate(name="fuse_summaries")([summary, landmark_summary]), weights


def _recurrent(x: Any, valid: Any, config: ModelConfig, prefix: str = "") -> Any:
    """Stacked LSTM/GRU layers over the frame embeddings, returning every step's state."""
    rnn_class = keras.layers.LSTM if config.rnn == "lstm" else keras.layers.GRU
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name=f"{prefix}rnn_input_dropout")(x)
    for index in range(config.rnn_layers):
        name = f"{prefix}{config.rnn}{index}"
        layer = rnn_class(config.rnn_units, return_sequences=True, unroll=config.unroll, name=name)
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{prefix}bi_{config.rnn}{index}")
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
