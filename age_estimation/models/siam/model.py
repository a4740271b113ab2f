"""``build_siam``: the SIAM functional model and its ablation variants from one typed config.

Data flow (T may be unknown)::

    frames (B,T,H,W,3) uint8 ─ normalise ─ fold time ─ CNN blocks ─ SpatialAttention ─ CNN blocks
      ─ pool ─ embedding ─ unfold time ─ LSTM/GRU ─ TemporalAttention ─ head ─ age (B,1)
    mask (B,T) 1 = real frame, 0 = padding

Outputs (a dict): ``age`` (B, 1), ``spatial_attention`` (B, T, h, w) when the variant has spatial
attention, ``temporal_attention`` (B, T) (for ablations, the implied weights of their pooling).

Variants (``ModelConfig.variant``): ``siam``; ``no_spatial``; ``no_temporal`` (last valid state or
mean over valid frames); ``frame_average`` (CNN + spatial attention, mean over valid frames, no RNN).
"""

from __future__ import annotations

from typing import Any

import keras

from age_estimation.config import ModelConfig
from age_estimation.models.siam.layers import (
    FoldTime,
    FrameNormalization,
    MaskedTemporalPooling,
    SpatialAttention,
    TemporalAttention,
    UnfoldTime,
    ValidFrames,
)

# keras.applications backbones and the input range each expects.
BACKBONE_SCALING = {
    "MobileNetV2": "symmetric",
    "MobileNetV3Small": "raw",
    "MobileNetV3Large": "raw",
    "EfficientNetB0": "raw",
    "EfficientNetV2B0": "raw",
}


def build_siam(
    config: ModelConfig,
    crop_size: int = 64,
    clip_length: int | None = None,
    batch_size: int | None = None,
    age_prior: tuple[float, float] = (40.0, 20.0),
) -> keras.Model:
    """Build the model for ``config`` on (crop_size x crop_size) aligned frames.

    ``clip_length`` fixes T (None = any length; TFLite export fixes it), ``batch_size`` fixes B, and
    ``age_prior`` (mean, std) of the training ages scales the head so training starts near the mean.

    Example:
        >>> model = build_siam(ModelConfig(), crop_size=64)
        >>> sorted(model.output_names)
        ['age', 'spatial_attention', 'temporal_attention']
    """
    frames = keras.Input((clip_length, crop_size, crop_size, 3), batch_size=batch_size, dtype="uint8", name="frames")
    mask = keras.Input((clip_length,), batch_size=batch_size, dtype="float32", name="mask")
    valid = ValidFrames(name="valid_frames")(mask)

    use_spatial = config.variant != "no_spatial"
    per_frame, spatial_map = _frame_encoder(FoldTime(name="fold_time")(frames), config, crop_size, use_spatial)
    embeddings = UnfoldTime(name="unfold_time")([per_frame, frames])

    if config.variant == "frame_average":
        summary, temporal = MaskedTemporalPooling("mean", name="temporal_pooling")(embeddings, mask=valid)
    else:
        states = _recurrent(embeddings, valid, config)
        if config.variant == "no_temporal":
            pooling = MaskedTemporalPooling(config.no_temporal_pooling, name="temporal_pooling")
            summary, temporal = pooling(states, mask=valid)
        else:
            attention = TemporalAttention(config.temporal_attention_units, name="temporal_attention_layer")
            summary, temporal = attention(states, mask=valid)

    outputs = {"age": _age_head(summary, config, age_prior)}
    if spatial_map is not None:
        outputs["spatial_attention"] = keras.layers.Identity(name="spatial_attention", dtype="float32")(
            UnfoldTime(name="unfold_attention")([spatial_map, frames])
        )
    outputs["temporal_attention"] = keras.layers.Identity(name="temporal_attention", dtype="float32")(temporal)
    return keras.Model({"frames": frames, "mask": mask}, outputs, name=f"siam_{config.variant}")


def _frame_encoder(x: Any, config: ModelConfig, crop_size: int, use_spatial: bool) -> tuple[Any, Any]:
    """Per-frame CNN (from scratch or a keras.applications backbone) with spatial attention inside."""
    if config.backbone.name:
        return _backbone_encoder(x, config, crop_size, use_spatial)
    x = FrameNormalization(name="normalize")(x)
    spatial_map = None
    for index, filters in enumerate(config.conv_filters):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{index}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=config.batch_norm_momentum, name=f"block{index}_bn")(x)
        x = keras.layers.ReLU(name=f"block{index}_relu")(x)
        if use_spatial and index == config.attention_after_block:
            x, spatial_map = _spatial_attention(config)(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="frame_pool")(x)
    x = keras.layers.Dense(config.embedding_units, activation="relu", name="frame_embedding")(x)
    return x, spatial_map


def _backbone_encoder(x: Any, config: ModelConfig, crop_size: int, use_spatial: bool) -> tuple[Any, Any]:
    """A keras.applications backbone (optionally truncated at ``attention_layer``) + spatial attention."""
    name = config.backbone.name
    if name not in BACKBONE_SCALING:
        raise ValueError(f"model.backbone.name {name!r} is not supported; choose one of {sorted(BACKBONE_SCALING)}")
    base = getattr(keras.applications, name)(
        include_top=False, weights=config.backbone.weights, input_shape=(crop_size, crop_size, 3)
    )
    if config.backbone.attention_layer:
        base = keras.Model(base.input, base.get_layer(config.backbone.attention_layer).output, name=f"{name}_cut")
    base.trainable = config.backbone.trainable
    x = base(FrameNormalization(BACKBONE_SCALING[name], name="normalize")(x))
    spatial_map = None
    if use_spatial:
        x, spatial_map = _spatial_attention(config)(x)
    x = keras.layers.GlobalAveragePooling2D(name="frame_pool")(x)
    x = keras.layers.Dense(config.embedding_units, activation="relu", name="frame_embedding")(x)
    return x, spatial_map


def _spatial_attention(config: ModelConfig) -> SpatialAttention:
    return SpatialAttention(
        projection=config.attention_projection,
        normalization=config.attention_normalization,
        temperature=config.attention_temperature,
        learn_temperature=config.learn_temperature,
        mode=config.attention_mode,
        name="spatial_attention_layer",
    )


def _recurrent(x: Any, valid: Any, config: ModelConfig) -> Any:
    """Stacked LSTM/GRU layers over the frame embeddings, returning every step's state."""
    rnn_class = keras.layers.LSTM if config.rnn == "lstm" else keras.layers.GRU
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="rnn_input_dropout")(x)
    for index in range(config.rnn_layers):
        layer = rnn_class(config.rnn_units, return_sequences=True, unroll=config.unroll, name=f"{config.rnn}{index}")
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi_{config.rnn}{index}")
        x = layer(x, mask=valid)
    return x


def _age_head(summary: Any, config: ModelConfig, age_prior: tuple[float, float]) -> Any:
    """Dropout + small MLP + a linear unit rescaled by the training-age prior; float32 for mixed precision."""
    x = summary
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    x = keras.layers.Dense(max(config.embedding_units // 2, 8), activation="relu", name="head_hidden")(x)
    x = keras.layers.Dense(1, name="head_out", dtype="float32")(x)
    mean, std = age_prior
    return keras.layers.Rescaling(scale=float(std), offset=float(mean), name="age", dtype="float32")(x)
