"""Pipeline config: YAML and overrides, errors that name the file and key, moved and removed keys, the defaults
being the default pipeline's, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from age_estimation.config import (
    ConfigError,
    PipelineConfig,
    load_config,
    same_config,
    save_config,
    to_dict,
    with_changes,
)
from age_estimation.config_keys import MOVED_KEYS, REMOVED_KEYS

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return path


def test_defaults_yaml_and_overrides_combine(tmp_path: Path) -> None:
    assert to_dict(load_config()) == to_dict(PipelineConfig())
    path = _write(tmp_path, "train:\n  epochs: 4\nmodel:\n  conv_filters: [4, 8, 16]\n")
    cfg = load_config(path, ["train.epochs=7", "runtime.seed=3", "inference.test_time_flip=false"])
    assert cfg.train.epochs == 7 and cfg.runtime.seed == 3 and cfg.inference.test_time_flip is False
    assert cfg.model.conv_filters == [4, 8, 16] and cfg.source_file == str(path)
    assert cfg.train.learning_rate == PipelineConfig().train.learning_rate  # untouched keys keep defaults


def test_the_library_defaults_are_the_default_pipelines() -> None:
    assert to_dict(load_config(REPO / "pipelines" / "default.yaml")) == to_dict(PipelineConfig())
    cfg = PipelineConfig()
    assert cfg.model.dynamics and (cfg.align.eye_distance, cfg.align.eye_y) == (0.34, 0.48)
    assert cfg.runtime.deterministic


def test_truncated_videos_are_refused_unless_accepted() -> None:
    assert PipelineConfig().align.accept_truncated is False
    assert load_config(None, ["align.accept_truncated=true"]).align.accept_truncated is True


def test_every_shipped_pipeline_loads() -> None:
    paths = sorted((REPO / "pipelines").glob("*.yaml"))
    assert paths
    for path in paths:
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  test_time_flip: false\n", "'model.test_time_flip' moved to 'inference.test_time_flip'"),
        ("train:\n  seed: 1\n  export_after: false\n",
         "'train.export_after' moved to 'export.after_training'; 'train.seed' moved to 'runtime.seed'"),
        ("data:\n  window_span: 30\n", "'data.window_span' moved to 'inference.window_span'"),
    ],
)
def test_a_moved_key_names_its_new_place_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_moved_key_given_as_override_is_named_too() -> None:
    with pytest.raises(ConfigError, match="'train.strategy' moved to 'runtime.strategy'"):
        load_config(None, ["train.strategy=mirrored"])


REMOVED_ON = {
    "model.dynamics_fusion": "late", "model.frame_summary_dropout": 0.1, "model.dynamics_statistics": True,
    "model.landmark_frame": "eyes", "model.dynamics_quantiles": 8, "model.dynamics_quantile_features": 4,
}


def test_removed_keys_are_no_keys_of_today() -> None:
    assert set(REMOVED_ON) == set(REMOVED_KEYS) and not set(REMOVED_KEYS) & set(MOVED_KEYS)
    for key in REMOVED_KEYS:
        section, name = key.split(".")
        assert not hasattr(getattr(PipelineConfig(), section), name), key


@pytest.mark.parametrize("key", sorted(REMOVED_ON))
def test_a_removed_key_says_what_it_measured_naming_the_file(tmp_path: Path, key: str) -> None:
    section, name = key.split(".")
    path = _write(tmp_path, yaml.safe_dump({section: {name: REMOVED_ON[key]}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = f"{path}: '{key}' was removed: {REMOVED_KEYS[key].measured}, not kept (docs/experiments.md)"
    assert str(err.value) == message and "measured" in message
    with pytest.raises(ConfigError, match=f"<defaults>: '{key}' was removed"):
        load_config(None, [f"{key}={yaml.safe_dump(REMOVED_ON[key]).splitlines()[0]}"])


def test_a_removed_key_at_its_off_value_is_no_difference(tmp_path: Path) -> None:
    off = {key.split(".")[1]: removed.off for key, removed in REMOVED_KEYS.items()}
    assert to_dict(load_config(_write(tmp_path, yaml.safe_dump({"model": off})))) == to_dict(PipelineConfig())


def test_the_quantile_example_reads_as_documented(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipe.yaml: 'model.dynamics_quantiles' was removed: quantile pooling "
                                          r"of the landmark stream, measured 5.12 against 4.98 on five folds, "
                                          r"not kept \(docs/experiments.md\)$"):
        load_config(_write(tmp_path, "model:\n  dynamics_quantiles: 8\n"))


def test_unknown_keys_and_sections_list_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) train.epochz in section 'train'; known: .*epochs"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown key.*trian.*top level"):
        load_config(_write(tmp_path, "trian:\n  epochs: 3\n"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=three", "'train.epochs' must be an integer, got 'three'"),
        ("train.epochs=true", "'train.epochs' must be an integer"),
        ("train.learning_rate=fast", "'train.learning_rate' must be a number"),
        ("train.ema=1", "'train.ema' must be true or false"),
        ("model.variant=big", r"'model.variant' must be one of \['siam'"),
        ("model.conv_filters=8", "'model.conv_filters' must be a list"),
        ("model.conv_filters=[8, x]", r"'model.conv_filters\[1\]' must be an integer"),
        ("data.path=3", "'data.path' must be a string"),
        ("data.augment=on", r"'data\.augment' must be a mapping"),
        ("data.fold=7", "data.fold must be in"),
        ("data.train_subjects=-1", r"data.train_subjects must be 0 \(all\) or more"),
        ("model.rnn=transformer", r"'model.rnn' must be one of \['lstm', 'gru'\]"),
        ("model.dropout=1.0", r"model.dropout must be in \[0, 1\)"),
        ("inference.interval_bins=0", "inference.interval_bins must be at least 1"),
    ],
)
def test_wrong_types_and_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.epochs"])


def test_save_then_load_gives_the_same_config(tmp_path: Path) -> None:
    cfg = load_config(REPO / "pipelines" / "ci_tiny.yaml", ["model.backbone.weights=null", "train.epochs=3"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert to_dict(load_config(tmp_path / "saved.yaml")) == to_dict(cfg)


def test_with_changes_copies_and_leaves_the_original_alone() -> None:
    cfg = PipelineConfig()
    changed = with_changes(cfg, model={"variant": "no_spatial"}, runtime={"seed": 5})
    assert changed.model.variant == "no_spatial" and changed.runtime.seed == 5
    assert cfg.model.variant == "siam" and cfg.runtime.seed == 0
    assert changed.train is cfg.train  # sections not named are shared, not copied
    with pytest.raises(TypeError):
        with_changes(cfg, model={"no_such_key": 1})


def test_same_config_reads_a_recorded_config_with_todays_defaults(tmp_path):
    cfg = load_config(None, ["train.epochs=3"])
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert same_config(path, cfg) and not same_config(path, load_config(None, ["train.epochs=4"]))
    recorded = yaml.safe_load(path.read_text())
    del recorded["model"]["batch_norm_momentum"]  # written before the key existed: its default is no change
    recorded["model"]["landmark_frame"] = "template"  # written before the key was removed, the option off
    path.write_text(yaml.safe_dump(recorded))
    assert same_config(path, cfg)
    recorded["model"]["landmark_frame"] = "eyes"  # a run of a removed option: another model, said clearly
    path.write_text(yaml.safe_dump(recorded))
    assert not same_config(path, cfg)
    with pytest.raises(ConfigError, match=f"{path}: 'model.landmark_frame' was removed: .*eye frame"):
        load_config(path)
    recorded["model"]["landmark_frame"] = "template"
    recorded["model"]["removed_key"] = 1  # a key this version does not know: another configuration
    path.write_text(yaml.safe_dump(recorded))
    assert not same_config(path, cfg) and not same_config(tmp_path / "missing.yaml", cfg)


def test_align_framing_names_the_dlib_chip_geometry(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("align:\n  framing: dlib_chip\n")
    align = load_config(path).align
    assert (align.crop_size, align.eye_distance, align.eye_y) == (64, 0.3753, 0.3009)
    # an override of the framing replaces the file's geometry; in one file the two must agree (below)
    overridden = load_config(REPO / "pipelines" / "default.yaml", ["align.framing=dlib_chip"]).align
    assert (overridden.eye_distance, overridden.eye_y) == (0.3753, 0.3009)


def test_learning_rate_scales_are_a_mapping_of_patterns_to_numbers(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  learning_rate_scales:\n    'face_age_backbone/*': 0.1\n")
    assert load_config(path).train.learning_rate_scales == {"face_age_backbone/*": 0.1}


@pytest.mark.parametrize(("text", "named"), [
    ("align:\n  framing: dlib_chip\n  eye_y: 0.48\n", "align.eye_y"),
    ("align:\n  framing: tight\n", "align.framing"),
    ("train:\n  learning_rate_scales:\n    'face_age_backbone/*': slow\n", "learning_rate_scales"),
    ("model:\n  backbone:\n    name: FaceAgeResNet10\nalign:\n  crop_size: 48\n", "dlib_chip"),
])
def test_a_framing_scale_or_backbone_that_does_not_fit_is_refused(tmp_path, text, named):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_config(path)
