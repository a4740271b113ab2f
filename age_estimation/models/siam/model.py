"""``Siam``: the SIAM model and its ablation variants as one self-describing Keras model.

Data flow (T may be unknown)::

    frames (B,T,H,W,3) uint8 ─ normalise ─ fold time ─ CNN blocks ─ SpatialAttention ─ CNN blocks
      ─ pool ─ embedding ─ unfold time ─ LSTM/GRU ─ TemporalAttention ─ head ─ age (B,1)
    mask (B,T) 1 = real frame, 0 = padding
    with ``dynamics``: landmarks (B,T,K,2), landmark_mask (B,T) ─ LandmarkDynamics ─ dense ─┐
      joined to the frame embedding before the LSTM/GRU (``dynamics_fusion: early``), or through its
      own LSTM/GRU and temporal model to the head (``late``); ``dynamics_only``: no frames, no CNN

Outputs (a dict): ``age`` (B, 1), ``spatial_attention`` (B, T, h, w) when the variant has spatial
attention, ``temporal_attention`` (B, T) (for ablations, the implied weights of their pooling).

Variants (``variant``): ``siam``; ``no_spatial``; ``no_temporal`` (last valid state or mean over valid
frames); ``frame_average`` (CNN + spatial attention, mean over valid frames, no RNN); ``dynamics_only``
(landmark stream + RNN + temporal attention, no CNN: its inputs are ``mask``, ``landmarks`` and
``landmark_mask``). ``dynamics`` adds the landmark stream to any variant.

``Siam`` is built functionally in ``__init__`` from its constructor arguments and ``get_config`` returns
all of them, so a fixed-shape copy is ``Siam.from_config({**model.get_config(), "clip_length": T, ...})``
and what a deployment needs (crop size, T, age prior, normalisation, attention grid) is on the model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras

from age_estimation.config import BackboneConfig, ModelConfig
from age_estimation.models.siam.graph import (
    age_head,
    frame_encoder,
    fused_summary,
    input_scaling,
    landmark_encoder,
    reads_frames,
    with_stream_statistics,
)
from age_estimation.models.siam.layers import PACKAGE, FoldTime, UnfoldTime, ValidFrames
from age_estimation.video.landmark_set import LANDMARK_COUNT, LANDMARK_PAIRS

_DEFAULTS = ModelConfig()


@keras.saving.register_keras_serializable(package=PACKAGE)
class Siam(keras.Model):
    """SIAM on (crop_size x crop_size) aligned frames; every constructor argument is in ``get_config``.

    Args:
        crop_size: side of the aligned square face crops.
        clip_length: fixed T, or None for any clip length (TFLite export fixes it).
        batch_size: fixed B, or None.
        age_prior: (mean, std) of the training ages; scales the head so training starts near the mean.
        landmark_points, landmark_pairs: K points of the landmark stream, the first ``2 * pairs`` of them
            mirror pairs (``video/landmark_set.py``).
        variant ... backbone: the architecture, one argument per ``ModelConfig`` field (``backbone`` as
            a ``BackboneConfig`` or its dict).

    Example:
        >>> model = Siam(crop_size=32, conv_filters=[8, 12], attention_after_block=1)
        >>> sorted(model.output_names), model.spatial_grid
        (['age', 'spatial_attention', 'temporal_attention'], (16, 16))
    """

    def __init__(
        self,
        *,
        crop_size: int = 64,
        clip_length: int | None = None,
        batch_size: int | None = None,
        age_prior: tuple[float, float] | list[float] = (40.0, 20.0),
        landmark_points: int = LANDMARK_COUNT,
        landmark_pairs: int = len(LANDMARK_PAIRS),
        variant: str = _DEFAULTS.variant,
        dynamics: bool = _DEFAULTS.dynamics,
        dynamics_units: int = _DEFAULTS.dynamics_units,
        dynamics_fusion: str = _DEFAULTS.dynamics_fusion,
        frame_summary_dropout: float = _DEFAULTS.frame_summary_dropout,
        dynamics_statistics: bool = _DEFAULTS.dynamics_statistics,
        landmark_frame: str = _DEFAULTS.landmark_frame,
        dynamics_quantiles: int = _DEFAULTS.dynamics_quantiles,
        dynamics_quantile_features: int = _DEFAULTS.dynamics_quantile_features,
        conv_filters: list[int] | tuple[int, ...] = tuple(_DEFAULTS.conv_filters),
        attention_after_block: int = _DEFAULTS.attention_after_block,
        attention_projection: int = _DEFAULTS.attention_projection,
        attention_normalization: str = _DEFAULTS.attention_normalization,
        attention_temperature: float = _DEFAULTS.attention_temperature,
        learn_temperature: bool = _DEFAULTS.learn_temperature,
        attention_mode: str = _DEFAULTS.attention_mode,
        embedding_units: int = _DEFAULTS.embedding_units,
        batch_norm_momentum: float = _DEFAULTS.batch_norm_momentum,
        rnn: str = _DEFAULTS.rnn,
        rnn_units: int = _DEFAULTS.rnn_units,
        rnn_layers: int = _DEFAULTS.rnn_layers,
        bidirectional: bool = _DEFAULTS.bidirectional,
        dropout: float = _DEFAULTS.dropout,
        temporal_attention_units: int = _DEFAULTS.temporal_attention_units,
        no_temporal_pooling: str = _DEFAULTS.no_temporal_pooling,
        unroll: bool = _DEFAULTS.unroll,
        backbone: BackboneConfig | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(backbone, BackboneConfig):
            backbone = BackboneConfig(**(backbone or {}))
        architecture = ModelConfig(
            variant=variant,
            dynamics=bool(dynamics),
            dynamics_units=int(dynamics_units),
            dynamics_fusion=dynamics_fusion,
            frame_summary_dropout=float(frame_summary_dropout),
            dynamics_statistics=bool(dynamics_statistics),
            landmark_frame=landmark_frame,
            dynamics_quantiles=int(dynamics_quantiles),
            dynamics_quantile_features=int(dynamics_quantile_features),
            conv_filters=[int(f) for f in conv_filters],
            attention_after_block=attention_after_block,
            attention_projection=attention_projection,
            attention_normalization=attention_normalization,
            attention_temperature=attention_temperature,
            learn_temperature=learn_temperature,
            attention_mode=attention_mode,
            embedding_units=embedding_units,
            batch_norm_momentum=batch_norm_momentum,
            rnn=rnn,
            rnn_units=rnn_units,
            rnn_layers=rnn_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            temporal_attention_units=temporal_attention_units,
            no_temporal_pooling=no_temporal_pooling,
            unroll=unroll,
            backbone=backbone,
        )
        prior = (float(age_prior[0]), float(age_prior[1]))

        inputs, frame_codes, landmark_codes, found, spatial_map = {}, None, None, None, None
        landmark_features = None
        if reads_frames(architecture):
            frames = keras.Input(
                (clip_length, crop_size, crop_size, 3), batch_size=batch_size, dtype="uint8", name="frames"
            )
            inputs["frames"] = frames
            per_frame, spatial_map = frame_encoder(FoldTime(name="fold_time")(frames), architecture, crop_size)
            frame_codes = UnfoldTime(name="unfold_time")([per_frame, frames])
        mask = inputs["mask"] = keras.Input((clip_length,), batch_size=batch_size, dtype="float32", name="mask")
        if architecture.reads_landmarks:
            inputs["landmarks"] = keras.Input((clip_length, landmark_points, 2), batch_size=batch_size,
                                              dtype="float32", name="landmarks")
            inputs["landmark_mask"] = keras.Input((clip_length,), batch_size=batch_size, dtype="float32",
                                                  name="landmark_mask")
            landmark_features, landmark_codes, found = landmark_encoder(
                inputs["landmarks"], inputs["landmark_mask"], mask, architecture, landmark_pairs
            )
        valid = ValidFrames(name="valid_frames")(mask)
        summary, temporal = fused_summary(frame_codes, landmark_codes, valid, architecture)
        summary = with_stream_statistics(summary, landmark_features, landmark_codes, found, architecture)
        outputs = {"age": age_head(summary, architecture, prior)}
        if spatial_map is not None:
            outputs["spatial_attention"] = keras.layers.Identity(name="spatial_attention", dtype="float32")(
                UnfoldTime(name="unfold_attention")([spatial_map, inputs["frames"]])
            )
        outputs["temporal_attention"] = keras.layers.Identity(name="temporal_attention", dtype="float32")(temporal)
        kwargs.setdefault("name", f"siam_{variant}")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.architecture = architecture
        self.crop_size = int(crop_size)
        self.clip_length = None if clip_length is None else int(clip_length)
        self.batch_size = None if batch_size is None else int(batch_size)
        self._age_prior = prior
        self.landmark_points = int(landmark_points)
        self.landmark_pairs = int(landmark_pairs)
        self.spatial_grid = None if spatial_map is None else tuple(int(d) for d in spatial_map.shape[-2:])

    @property
    def age_prior(self) -> tuple[float, float]:
        """(mean, std) of the training ages the head was scaled by."""
        return self._age_prior

    @property
    def variant(self) -> str:
        """The ablation variant: siam, no_spatial, no_temporal, frame_average or dynamics_only."""
        return self.architecture.variant

    @property
    def reads_landmarks(self) -> bool:
        """Whether the model takes the landmark stream (inputs ``landmarks`` and ``landmark_mask``)."""
        return self.architecture.reads_landmarks

    @property
    def normalization(self) -> str:
        """How frames are scaled inside the model: "symmetric" (x / 127.5 - 1) or "raw" (0..255)."""
        return input_scaling(self.architecture)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "crop_size": self.crop_size,
            "clip_length": self.clip_length,
            "batch_size": self.batch_size,
            "age_prior": list(self.age_prior),
            "landmark_points": self.landmark_points,
            "landmark_pairs": self.landmark_pairs,
            **dataclasses.asdict(self.architecture),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Siam:
        return cls(**config)


def build_siam(
    config: ModelConfig,
    crop_size: int = 64,
    clip_length: int | None = None,
    batch_size: int | None = None,
    age_prior: tuple[float, float] = (40.0, 20.0),
) -> Siam:
    """The ``Siam`` of ``config`` on (crop_size x crop_size) aligned frames.

    ``clip_length`` fixes T (None = any length; TFLite export fixes it), ``batch_size`` fixes B, and
    ``age_prior`` (mean, std) of the training ages scales the head so training starts near the mean.

    Example:
        >>> model = build_siam(ModelConfig(), crop_size=64)
        >>> sorted(model.output_names)
        ['age', 'spatial_attention', 'temporal_attention']
    """
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return Siam(crop_size=crop_size, clip_length=clip_length, batch_size=batch_size, age_prior=age_prior, **fields)


def load_siam(path: str | Path) -> Siam:
    """The ``Siam`` saved at ``path``; a file holding a plain functional model is a ``ValueError``.

    A plain functional model does not carry its crop size, age prior or architecture, which export and
    the runtimes read from the model, so such a file has to be trained again with this package.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Keras model file not found")
    model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, Siam):
        raise ValueError(  # noqa: TRY004  (a bad file, reported like every other bad input)
            f"{path}: holds a plain {type(model).__name__} model, not a Siam model, so it does not carry "
            "its crop size, age prior and architecture; retrain the run (age-estimation train) to export "
            "or predict with it"
        )
    return model
