"""``Siam``: the SIAM model and its ablation variants as one self-describing Keras model.

Data flow (T may be unknown)::

    frames (B,T,H,W,3) uint8 ─ normalise ─ fold time ─ CNN blocks ─ SpatialAttention ─ CNN blocks
      ─ pool ─ embedding ─ unfold time ─┬─ LSTM/GRU ─ TemporalAttention ─ head ─ age (B,1)
    landmarks (B,T,K,2) ─ LandmarkDynamics ─ dense ─┘  (with ``dynamics``: joined per frame)
    mask, landmark_mask (B,T): 1 = real frame / face found, 0 = padding / no face

Outputs (a dict): ``age`` (B, 1), ``spatial_attention`` (B, T, h, w) when the variant has spatial
attention, ``temporal_attention`` (B, T) (for ablations, the implied weights of their pooling).

``Siam`` is built functionally in ``__init__`` from its constructor arguments and ``get_config`` returns
all of them, so a fixed-shape copy is ``Siam.from_config({**model.get_config(), "clip_length": T, ...})``
and what a deployment needs (crop size, T, age prior, normalisation, attention grid) is on the model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras

from age_estimation.config import BackboneConfig, ConfigError, ModelConfig
from age_estimation.config_keys import without_removed_keys
from age_estimation.models.siam.graph import (
    age_head,
    frame_encoder,
    fused_codes,
    input_scaling,
    landmark_encoder,
    model_inputs,
    reads_frames,
    temporal_summary,
)
from age_estimation.models.siam.layers import PACKAGE, FoldTime, UnfoldTime, ValidFrames
from age_estimation.video.landmark_set import LANDMARK_COUNT, LANDMARK_PAIRS

_DEFAULTS = ModelConfig()


@keras.saving.register_keras_serializable(package=PACKAGE)
class Siam(keras.Model):
    """SIAM, the Spatially-Indexed Attention Model, on (crop_size x crop_size) aligned face clips.

    A CNN with spatially-indexed attention embeds every frame, an LSTM/GRU runs over the frames, and
    temporal attention weighs them into a clip summary that a small head turns into an age in years.
    With ``dynamics`` the face mesh's landmark stream is encoded per frame and joined to the frame
    embedding before the recurrent module. ``variant`` selects the paper-style ablations. Every
    constructor argument is in ``get_config``; the architecture arguments are the fields of
    ``ModelConfig`` (a pipeline's ``model`` section) with its defaults.

    Args:
        crop_size: int. Side in pixels of the square aligned face crops.
        clip_length: int or None. Fixed number of frames T, or None for any T (TFLite export fixes it).
        batch_size: int or None. Fixed batch size B, or None.
        age_prior: (mean, std) of the training ages in years. The head's output unit is scaled by them,
            so an untrained model answers near the mean.
        landmark_points: int. K, the points of the landmark stream (``video/landmark_set.py``).
        landmark_pairs: int. How many mirror pairs (right, left) lead the K points; the rest lie on the
            face's midline.
        variant: str. "siam"; "no_spatial" (no spatial attention); "no_temporal" (the last valid state
            or the mean over valid frames instead of temporal attention); "frame_average" (the mean of
            the frame embeddings, no RNN); "dynamics_only" (landmark stream, RNN and temporal attention,
            no frames and no CNN).
        dynamics: bool. Whether to read the landmark stream (inputs ``landmarks``, ``landmark_mask``).
        dynamics_units: int. Width of the landmark stream's two dense layers.
        conv_filters: list of int. Filters of each 3x3 conv block (conv, batch norm, ReLU, 2x2 pool).
        attention_after_block: int. Index of the conv block whose output spatial attention re-weights.
        attention_projection: int. Width of the shared tanh projection before the per-position scores
            (0 scores the raw features).
        attention_normalization: str. "softmax" over positions or an independent "sigmoid" per position.
        attention_temperature: float. Initial softmax temperature of the spatial attention.
        learn_temperature: bool. Whether that temperature is trained.
        attention_mode: str. "residual" (``x * (1 + m)``) or "plain" (``x * m``) re-weighting.
        embedding_units: int. Width of the per-frame embedding; the head's hidden layer is half of it.
        batch_norm_momentum: float. Momentum of the conv blocks' moving batch statistics.
        rnn: str. "lstm" or "gru".
        rnn_units: int. Units of each recurrent layer.
        rnn_layers: int. Stacked recurrent layers.
        bidirectional: bool. Whether each recurrent layer also runs backwards in time.
        dropout: float. Dropout before the recurrent stack and before the head (0 for none).
        temporal_attention_units: int. Width of the temporal attention's scoring network.
        no_temporal_pooling: str. The "no_temporal" variant's pooling: "last" valid state or "mean".
        unroll: bool. Unroll the recurrent loop (needs a fixed ``clip_length``; for TFLite int8).
        backbone: ``BackboneConfig``, its dict, or None. A keras.applications CNN instead of the conv
            blocks (``name`` empty: the conv blocks).
        **kwargs: passed to ``keras.Model`` (``name``, ``trainable``).

    Call arguments:
        inputs: dict of ``frames`` (B, T, crop_size, crop_size, 3) uint8 aligned crops (absent for
            "dynamics_only"), ``mask`` (B, T) float 1 for real frames and 0 for padding, and with
            ``dynamics`` or "dynamics_only" ``landmarks`` (B, T, K, 2) float in eye distances about the
            crop template's eye midpoint with ``landmark_mask`` (B, T) float 1 where the mesh found the face.
        training: bool. Whether dropout is active.

    Returns:
        dict of ``age`` (B, 1) in years, ``spatial_attention`` (B, T, h, w) (variants with spatial
        attention) and ``temporal_attention`` (B, T), zero on padding.

    Example:
        >>> model = Siam(crop_size=32, conv_filters=[8, 12], attention_after_block=1, dynamics=False)
        >>> sorted(model.input), model.spatial_grid
        (['frames', 'mask'], (16, 16))
        >>> out = model({"frames": keras.ops.zeros((2, 6, 32, 32, 3), "uint8"), "mask": keras.ops.ones((2, 6))})
        >>> tuple(out["age"].shape), tuple(out["temporal_attention"].shape)
        ((2, 1), (2, 6))

    Reference:
        Pei, Dibeklioglu, Baltrusaitis and Tax, "Attended End-to-end Architecture for Age Estimation
        from Facial Expression Videos", IEEE TIP 29, 2020 (arXiv 1711.08690).
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
        inputs = model_inputs(architecture, crop_size, clip_length, batch_size, landmark_points)
        frame_codes, landmark_codes, spatial_map = None, None, None
        if reads_frames(architecture):
            frames = inputs["frames"]
            per_frame, spatial_map = frame_encoder(FoldTime(name="fold_time")(frames), architecture, crop_size)
            frame_codes = UnfoldTime(name="unfold_time")([per_frame, frames])
        if architecture.reads_landmarks:
            landmark_codes = landmark_encoder(
                inputs["landmarks"], inputs["landmark_mask"], inputs["mask"], architecture, landmark_pairs
            )
        valid = ValidFrames(name="valid_frames")(inputs["mask"])
        summary, temporal = temporal_summary(fused_codes(frame_codes, landmark_codes), valid, architecture)
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
        config = super().get_config()
        config.update(
            crop_size=self.crop_size,
            clip_length=self.clip_length,
            batch_size=self.batch_size,
            age_prior=list(self.age_prior),
            landmark_points=self.landmark_points,
            landmark_pairs=self.landmark_pairs,
            **dataclasses.asdict(self.architecture),
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Siam:
        """The ``Siam`` of a ``get_config`` dict. A model saved before an option was removed states it at
        its value then: at the option's off value it loads, at any other it is a ``ConfigError``."""
        return cls(**without_removed_keys(config, "a Siam model's config", "model."))


def build_siam(
    config: ModelConfig,
    crop_size: int = 64,
    clip_length: int | None = None,
    batch_size: int | None = None,
    age_prior: tuple[float, float] = (40.0, 20.0),
) -> Siam:
    """The ``Siam`` of ``config`` (a pipeline's ``model`` section) on (crop_size x crop_size) aligned frames.

    ``clip_length`` fixes T (None = any length; TFLite export fixes it), ``batch_size`` fixes B, and
    ``age_prior`` (mean, std) of the training ages scales the head so training starts near the mean.

    Example:
        >>> model = build_siam(ModelConfig(), crop_size=64)
        >>> sorted(model.input), sorted(model.output_names)
        (['frames', 'landmark_mask', 'landmarks', 'mask'], ['age', 'spatial_attention', 'temporal_attention'])
    """
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return Siam(crop_size=crop_size, clip_length=clip_length, batch_size=batch_size, age_prior=age_prior, **fields)


def load_siam(path: str | Path) -> Siam:
    """The ``Siam`` saved at ``path``; a file holding a plain functional model is a ``ValueError``.

    A plain functional model does not carry its crop size, age prior or architecture, which export and
    the runtimes read from the model, so such a file has to be trained again with this package. A file
    saved with a removed option turned on is a ``ConfigError`` naming the file and the option.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Keras model file not found")
    try:
        model = keras.saving.load_model(path, compile=False)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    if not isinstance(model, Siam):
        raise ValueError(  # noqa: TRY004  (a bad file, reported like every other bad input)
            f"{path}: holds a plain {type(model).__name__} model, not a Siam model, so it does not carry "
            "its crop size, age prior and architecture; retrain the run (age-estimation train) to export "
            "or predict with it"
        )
    return model
