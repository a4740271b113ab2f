"""Typed pipeline configuration: one YAML file per experiment, validated before any work.

A pipeline YAML has the sections ``data``, ``align``, ``synth``, ``model``, ``train``, ``runtime``,
``inference``, ``tune`` and ``export``, each read only by the code it configures; every key is
optional and falls back to the defaults below. Unknown keys and wrong types fail at load time with
the file and the dotted key named; a key that moved to another section names its new place, and a key
of a removed option says what the option measured.

Example:
    >>> cfg = load_config("pipelines/default.yaml", overrides=["train.epochs=3"])
    >>> cfg.train.epochs
    3
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from age_estimation.config_keys import MOVED_KEYS, ConfigError, expand_framing, without_removed_keys
from age_estimation.config_values import apply_override, coerce_value


@dataclass
class SynthConfig:
    """The procedural face-video generator behind the embedded default dataset."""

    subjects: int = 400
    videos_per_subject: int = 2
    frames: int = 40
    fps: int = 25
    frame_size: int = 192
    min_age: float = 8.0
    max_age: float = 76.0
    distractor_fraction: float = 0.35
    seed: int = 0


@dataclass
class AlignConfig:
    """Face detection and alignment settings; a change invalidates the prepared cache."""

    crop_size: int = 64
    # Where the eyes sit in the crop (their height and distance as shares of its side): the whole head
    # from the greying hairline to the mouth fits the crop. A tighter 0.40 / 0.38 cut the hair out and
    # scored 5.49 against 5.14 held-out MAE on the default data.
    eye_y: float = 0.48
    eye_distance: float = 0.34
    min_detection_confidence: float = 0.5
    min_face_fraction: float = 0.5
    smoothing_window: int = 5
    use_face_mesh: bool = False
    max_frames: int = 0
    frame_step: int = 1
    detect_every: int = 1
    max_side: int = 640
    # Longest run of frames without the face (seconds) that alignment interpolates across; a longer run
    # holds the last eyes seen. It bounds a streamed alignment's memory (2 s of 640x360 at 25 fps: 35 MB)
    # and covers blinks, turned heads and passing occluders. An align key (it decides crops).
    max_gap_seconds: float = 2.0
    # Keep a video that decodes under 90% of its container's frame count and over 2 frames short (off:
    # a cut-off file's label describes a video it no longer holds). An align key (video/decode.py).
    accept_truncated: bool = False
    # Run the face mesh on every aligned frame's source region and store a subset of its landmarks
    # (video/landmarks.py) beside the crops: the stream ``model.dynamics`` reads (a few ms a frame).
    landmarks: bool = True


@dataclass
class AugmentConfig:
    """Training-time augmentation, applied by the tf.data pipeline only."""

    enabled: bool = True
    flip: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    temporal_jitter: bool = True
    # Shortest temporal crop, as a share of the video; each clip also shifts by up to half a stride.
    # 1.0 keeps the eval time scale (phase jitter only); below 1.0 training also sees faster tempos.
    temporal_min_span: float = 0.7


@dataclass
class DataConfig:
    """Where the videos come from, where the cache goes, and how clips are batched."""

    source: Literal["synthetic", "csv", "uva_nemo"] = "synthetic"
    path: str = "data/synthetic"
    cache_dir: str = "data/cache/synthetic"
    clip_length: int = 16
    batch_size: int = 8
    folds: int = 5
    fold: int = 0
    heldout_fraction: float = 0.2
    # -1: hold out ``heldout_fraction`` of the subjects (one per age stratum). 0..folds-1: hold out this
    # one of ``folds`` age-stratified folds of all subjects, so every value holds each subject out once.
    heldout_fold: int = -1
    # > 0: train on this many of the training subjects (one per age stratum), for a learning curve.
    train_subjects: int = 0
    split_seed: int = 0
    # Share of the validation fold's subjects (one per age stratum) held back from checkpoint selection,
    # so the interval's quantile comes from subjects used for nothing else (strict split-conformal).
    # 0: the whole fold selects the checkpoint and calibrates, with twice the subjects for each; on
    # five-fold runs the held-back half's 90% coverage spread more from fold to fold (std 5.3 against
    # 3.9 points) for no gain in the mean (docs/calibration.md). A fold under 4 subjects is never split.
    calibration_share: float = 0.0
    shuffle_buffer: int = 256
    deterministic: bool = False
    workers: int = 0
    memory_cache: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class BackboneConfig:
    """A pretrained CNN used instead of the from-scratch conv blocks.

    ``name`` "FaceAgeResNet10" with ``weights`` "face-age-v1" is the face-age network pretrained on real
    faces (loaded offline from ``age-estimation assets``; needs ``align.framing: dlib_chip``), cut after
    ``attention_layer`` "block1".."block5"; other names are keras.applications CNNs, whose weights
    keras downloads. ``trainable`` false freezes it; ``train.learning_rate_scales`` slows it instead.
    """

    name: str = ""
    weights: str | None = None
    attention_layer: str = ""
    trainable: bool = True


Variant = Literal["siam", "no_spatial", "no_temporal", "frame_average", "dynamics_only"]
VARIANTS: tuple[str, ...] = typing.get_args(Variant)


@dataclass
class ModelConfig:
    """SIAM architecture; ``variant`` selects the paper-style ablations."""

    variant: Variant = "siam"
    # Also read the landmark stream (inputs ``landmarks``, ``landmark_mask``): per frame, landmarks and their
    # differences go through a small encoder and join the CNN embedding before the recurrent module. The
    # face mesh tracks a smile (r = 0.82 with the synthetic one) that moves the 64 px crop by a pixel.
    dynamics: bool = True
    dynamics_units: int = 32
    conv_filters: list[int] = field(default_factory=lambda: [16, 32, 48, 64])
    attention_after_block: int = 2
    attention_projection: int = 16
    attention_normalization: Literal["softmax", "sigmoid"] = "softmax"
    attention_temperature: float = 1.0
    learn_temperature: bool = True
    attention_mode: Literal["residual", "plain"] = "residual"
    embedding_units: int = 64
    # BatchNormalization's moving-statistics momentum; with train.bn_recalibration_batches the
    # statistics that validation and the checkpoint use are recomputed instead.
    batch_norm_momentum: float = 0.9
    rnn: Literal["lstm", "gru"] = "lstm"
    rnn_units: int = 64
    rnn_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.2
    temporal_attention_units: int = 32
    no_temporal_pooling: Literal["last", "mean"] = "last"
    unroll: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    @property
    def reads_landmarks(self) -> bool:
        """Whether this architecture takes the landmark stream: ``dynamics``, or the ``dynamics_only`` variant."""
        return bool(self.dynamics) or self.variant == "dynamics_only"


@dataclass
class TrainConfig:
    """Optimisation: loss, optimizer, schedule, weight averaging and early stopping."""

    epochs: int = 20
    learning_rate: float = 2e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 1e-4
    ema: bool = True
    ema_momentum: float = 0.99
    # Batches run before each validation to recompute BatchNormalization statistics for the (EMA)
    # weights validated and checkpointed; 0 keeps the moving ones (which follow the raw weights).
    bn_recalibration_batches: int = 16
    loss: Literal["mae", "huber", "mse"] = "huber"
    huber_delta: float = 3.0
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    warmup_epochs: int = 1
    early_stopping_patience: int = 6
    steps_per_epoch: int = 0
    # Learning-rate multipliers by variable path (shell patterns, first match wins), e.g.
    # {"*face_age_backbone/*": 0.1} fine-tunes a pretrained backbone at a tenth of the rate.
    learning_rate_scales: dict[str, float] = field(default_factory=dict)


@dataclass
class RuntimeConfig:
    """Where and how a run executes: seeds, op determinism, precision, distribution, run folders."""

    seed: int = 0
    # tf.data keeps its order and seeds every shuffle, clip sampling, augmentation and BN-recalibration
    # batch from ``seed``, and TensorFlow's ops run deterministically, so a rerun on the same machine and
    # versions gives the same model. On CPU a training step costs the same with op determinism on as off.
    deterministic: bool = True
    mixed_precision: bool = False
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    runs_dir: str = "runs"


@dataclass
class QualityConfig:
    """When ``predict`` refuses a video's face, from the medians of its face frames' measures (``inference/
    quality.py``): brightness, contrast and sharpness by the run's training range (``face_ranges.json``), or
    by the fixed limits below for a model without one; size and rotation always by these keys."""

    # Mean grey level of the face's centre, 0-255 (clean synthetic faces: 70-208).
    min_brightness: float = 40.0
    max_brightness: float = 235.0
    # Spread of the face centre's grey levels (clean synthetic faces: 16-51, a real face clip 46).
    min_contrast: float = 8.0
    # Spread of the face centre's Laplacian in the crop (at align.crop_size; a smaller crop is sharper per
    # pixel): a blurred or heavily compressed face has little. In 64 px crops clean synthetic faces measure
    # 53-250, a real face clip 115, the same blurred by a 6 px Gaussian 19.
    min_sharpness: float = 30.0
    # Distance between the eyes in the decoded frame's pixels (after align.max_side): a face this small
    # is upscaled into the crop from a few pixels.
    min_eye_distance: float = 10.0
    # How much surer the detector may be of the face turned by 90, 180 or 270 degrees than as it stands
    # (median of sampled frames): clean synthetic and real clips measure at most 0.07, upside down 0.35.
    max_rotation_gain: float = 0.1


@dataclass
class AtypicalityConfig:
    """How training calibrates the interval on inputs unlike the clean validation videos (``inference/
    atypicality.py``): an age-stratified share of the validation videos is predicted clean and as corrupted
    copies (the corruption benchmark's), and the interval widens by atypicality bin, or predict refuses
    beyond the atypicality the copies reached."""

    # Validation videos whose copies are predicted (0: no widening, no refusal by atypicality). 40 videos
    # by 19 settings (clean and 18 corrupted) cost about 2 minutes of make train on 2 cores.
    videos: int = 40
    corruptions: list[str] = field(default_factory=lambda: [
        "dark", "low_contrast", "blur", "noise", "small_face", "rotate90", "rotate180", "jpeg", "byte_damage",
        "occlusion"])
    severities: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class InferenceConfig:
    """How a trained model turns clips and videos into ages: held-out evaluation, predict, every runtime."""

    # Average each clip's age with its mirror image's. Costs a second forward pass; the faces are
    # left-right symmetric and training flips them.
    test_time_flip: bool = True
    # Source frames one prediction window covers (sampled down to data.clip_length frames): the
    # length of a training video, so that a window sees the expression at the pace training saw it.
    window_span: int = 40
    # Nominal coverage of the interval given with every age; calibrated on validation subjects that did
    # not train the model (split-conformal, data.calibration_share), so the share of true ages inside it
    # holds on data the model did not train on.
    coverage: float = 0.9
    # Predicted-age bins with a residual scale each (a wider interval where the model errs more). Scales
    # fitted on the calibration subjects themselves cost coverage (87.2% against 88.9% with one scale on
    # five-fold runs, docs/calibration.md); with data.calibration_share > 0 the scales come from the
    # selecting subjects and the quantile from the held-back ones.
    interval_bins: int = 1
    # predict refuses a video whose face frames are fewer than data.clip_length or than this share of
    # its decoded frames: an age read off a few (often spurious) detections says nothing about the person.
    min_face_fraction: float = 0.2
    quality: QualityConfig = field(default_factory=QualityConfig)
    atypicality: AtypicalityConfig = field(default_factory=AtypicalityConfig)


@dataclass
class TuneConfig:
    """Keras Tuner search settings."""

    algorithm: Literal["hyperband", "bayesian", "random"] = "hyperband"
    max_trials: int = 20
    max_epochs: int = 12
    hyperband_factor: int = 3
    executions_per_trial: int = 1
    directory: str = "runs/tune"
    project_name: str = "siam"
    seed: int = 0


@dataclass
class ExportConfig:
    """SavedModel (TF Serving layout) and TFLite variants."""

    directory: str = "exported"
    model_name: str = "siam"
    tflite_variants: list[str] = field(default_factory=lambda: ["float32", "float16", "dynamic_range", "int8"])
    representative_clips: int = 32
    jpeg_signature: bool = True
    parity_clips: int = 50
    latency_runs: int = 20
    # Whether `age-estimation train` (and so `make train`) exports the finished run.
    after_training: bool = True


@dataclass
class PipelineConfig:
    """One experiment: data, model, training, search and export in one file."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    source_file: str = ""


def with_changes(cfg: PipelineConfig, **sections: dict[str, Any]) -> PipelineConfig:
    """A copy of ``cfg`` with some keys of some sections replaced, e.g. ``model={"variant": "siam"}``."""
    changed = {name: dataclasses.replace(getattr(cfg, name), **keys) for name, keys in sections.items()}
    return dataclasses.replace(cfg, **changed)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline YAML (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    raw: dict[str, Any] = {}
    origin = str(path) if path else "<defaults>"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    expand_framing(raw, origin, overwrite=False)
    for item in overrides or []:
        apply_override(raw, item, origin)
        expand_framing(raw, origin, overwrite=True)
    cfg = from_dict(PipelineConfig, raw, origin)
    cfg.source_file = origin
    validate(cfg, origin)
    return cfg


def from_dict(cls: type, raw: dict[str, Any], origin: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    raw = without_removed_keys(raw, origin, prefix)
    unknown = sorted(set(raw) - names)
    moved = [f"'{prefix + k}' moved to '{MOVED_KEYS[prefix + k]}'" for k in unknown if prefix + k in MOVED_KEYS]
    if moved:
        raise ConfigError(f"{origin}: {'; '.join(moved)}")
    if unknown:
        where = f"section '{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(
            f"{origin}: unknown key(s) {', '.join(prefix + k for k in unknown)} in {where}; "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs = {name: from_dict(hints[name], value, origin, prefix + name + ".") if dataclasses.is_dataclass(hints[name])
              else coerce_value(hints[name], value, origin, prefix + name) for name, value in raw.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict form of a config, for writing the resolved config of a run."""
    out = dataclasses.asdict(cfg)
    out.pop("source_file", None)
    return out


def same_config(path: str | Path, cfg: PipelineConfig) -> bool:
    """Whether the pipeline YAML at ``path`` describes ``cfg``.

    The file is read with today's defaults, so a key added since it was written, left at its default,
    is no difference; a file that no longer loads (a key since removed, bad YAML) is one.
    """
    try:
        return to_dict(load_config(path)) == to_dict(cfg)
    except (ConfigError, OSError):
        return False


def save_config(cfg: PipelineConfig, path: str | Path) -> None:
    """Write ``cfg`` as a pipeline YAML that ``load_config`` reads back unchanged."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def validate(cfg: PipelineConfig, origin: str) -> None:
    """Cross-field checks that types alone cannot express."""
    checks = [
        (cfg.data.clip_length >= 1, "data.clip_length must be at least 1"),
        (cfg.data.batch_size >= 1, "data.batch_size must be at least 1"),
        (cfg.inference.window_span >= 1, "inference.window_span must be at least 1"),
        (0.0 < cfg.inference.coverage < 1.0, "inference.coverage must be in (0, 1)"),
        (0.0 <= cfg.inference.min_face_fraction <= 1.0, "inference.min_face_fraction must be in [0, 1]"),
        (cfg.data.folds >= 2, "data.folds must be at least 2"),
        (0 <= cfg.data.fold < cfg.data.folds, "data.fold must be in [0, data.folds)"),
        (0.0 < cfg.data.heldout_fraction < 1.0, "data.heldout_fraction must be in (0, 1)"),
        (0.0 <= cfg.data.calibration_share < 1.0, "data.calibration_share must be in [0, 1)"),
        (cfg.inference.interval_bins >= 1, "inference.interval_bins must be at least 1"),
        (cfg.inference.atypicality.videos >= 0, "inference.atypicality.videos must be 0 (off) or more"),
        (set(cfg.inference.atypicality.severities) <= {1, 2, 3}, "inference.atypicality.severities must be 1, 2 or 3"),
        (-1 <= cfg.data.heldout_fold < cfg.data.folds, "data.heldout_fold must be -1 or in [0, data.folds)"),
        (cfg.model.dynamics_units >= 1, "model.dynamics_units must be at least 1"),
        (cfg.align.crop_size >= 16, "align.crop_size must be at least 16"),
        (cfg.model.backbone.name != "FaceAgeResNet10" or cfg.align.crop_size == 64,
         "model.backbone.name FaceAgeResNet10 reads 64 px dlib face chips: set align.framing: dlib_chip"),
        (cfg.align.detect_every >= 1, "align.detect_every must be at least 1"),
        (cfg.data.train_subjects >= 0, "data.train_subjects must be 0 (all) or more"),
        (cfg.align.max_side >= 64, "align.max_side must be at least 64"),
        (len(cfg.model.conv_filters) >= 1, "model.conv_filters needs at least one block"),
        (
            0 <= cfg.model.attention_after_block < len(cfg.model.conv_filters),
            "model.attention_after_block must index one of model.conv_filters",
        ),
        (0.0 <= cfg.model.dropout < 1.0, "model.dropout must be in [0, 1)"),
        (0.0 <= cfg.model.batch_norm_momentum < 1.0, "model.batch_norm_momentum must be in [0, 1)"),
        (cfg.model.rnn_layers >= 1, "model.rnn_layers must be at least 1"),
        (cfg.train.epochs >= 1, "train.epochs must be at least 1"),
        (cfg.train.learning_rate > 0, "train.learning_rate must be positive"),
        (0.0 < cfg.train.ema_momentum < 1.0, "train.ema_momentum must be in (0, 1)"),
        (cfg.train.bn_recalibration_batches >= 0, "train.bn_recalibration_batches must be at least 0"),
        (cfg.synth.min_age < cfg.synth.max_age, "synth.min_age must be below synth.max_age"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{origin}: {message}")
