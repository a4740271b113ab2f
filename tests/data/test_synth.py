"""The synthetic dataset generator: determinism, files, distractors, oracle floor, BlazeFace, resume, CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth import generator as synth
from age_estimation.data.synth.face import FrameState, render_frame

TINY = SynthConfig(subjects=3, videos_per_subject=2, frames=10, frame_size=128, seed=3)


def _decode(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def _generate(out: Path, cfg: SynthConfig = TINY) -> dict:
    return synth.generate_dataset(out, cfg, AlignConfig(), workers=1, progress=False)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, _generate(out)


def _eye_template_transform(state: FrameState, align: AlignConfig) -> np.ndarray:
    """The similarity transform the alignment step computes, from the true eye centres."""
    theta = np.deg2rad(state.angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    eyes = np.array([np.array(state.centre) + state.iod_px * rot @ [x, 0.0] for x in (-0.5, 0.5)], np.float32)
    size, d = align.crop_size, align.eye_distance
    target = np.array([[size * (1 - d) / 2, size * align.eye_y], [size * (1 + d) / 2, size * align.eye_y]], np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(eyes, target)
    return matrix


def test_same_seed_same_dataset_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=2, videos_per_subject=1, frames=6)
    _generate(tmp_path / "a", cfg)
    _generate(tmp_path / "b", cfg)
    _generate(tmp_path / "c", replace(cfg, seed=cfg.seed + 1))
    truth = {name: (tmp_path / name / synth.GROUND_TRUTH_NAME).read_bytes() for name in "abc"}
    assert truth["a"] == truth["b"]
    assert truth["a"] != truth["c"]
    video = json.loads(truth["a"])["videos"]
    for rel in video:
        np.testing.assert_array_equal(_decode(tmp_path / "a" / rel), _decode(tmp_path / "b" / rel))
    first = min(video)
    other = min(json.loads(truth["c"])["videos"])
    assert not np.array_equal(_decode(tmp_path / "a" / first), _decode(tmp_path / "c" / other))


def test_manifest_and_ground_truth_are_well_formed(tiny_dataset: tuple[Path, dict]) -> None:
    out, summary = tiny_dataset
    with open(out / synth.MANIFEST_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "age", "subject", "label"]
    assert len(rows) == TINY.subjects * TINY.videos_per_subject == summary["videos"]
    assert len({row["subject"] for row in rows}) == TINY.subjects
    truth = json.loads((out / synth.GROUND_TRUTH_NAME).read_text())
    assert set(truth["videos"]) == {row["path"] for row in rows}
    assert truth["generator"]["key"] == summary["key"] and truth["generator"]["seed"] == TINY.seed
    assert truth["oracle_floor_mae"] >= 0 and truth["mean_predictor_mae"] > 0
    for row in rows:
        entry = truth["videos"][row["path"]]
        assert TINY.min_age <= float(row["age"]) == entry["age"] <= TINY.max_age
        assert row["subject"] == entry["subject"] and row["label"] == entry["label"] in synth.LABELS
        assert set(entry["cues"]) == {cue.name for cue in synth.CUES}
        assert len(entry["informative"]) == len(entry["distractor_kind"]) == TINY.frames
        for flag, kind in zip(entry["informative"], entry["distractor_kind"]):
            assert (flag, kind == "") in ((1, True), (0, False))
            assert kind in ("",) + synth.DISTRACTOR_KINDS
        frames = _decode(out / row["path"])
        assert frames.shape == (TINY.frames, TINY.frame_size, TINY.frame_size, 3)
    for name, (x0, y0, x1, y1) in truth["cue_regions"].items():
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, name


def test_distractors_cover_the_configured_fraction_with_every_kind() -> None:
    cfg = replace(TINY, subjects=12, frames=20, distractor_fraction=0.3)
    plans = synth.all_plans(cfg)
    kinds = set()
    for plan in plans:
        uninformative = [k for k in plan.distractor_kind if k]
        assert len(uninformative) / cfg.frames >= cfg.distractor_fraction
        kinds.update(uninformative)
        assert all(not state.cues for state, k in zip(plan.states, plan.distractor_kind) if k)
        assert all(state.cues for state, k in zip(plan.states, plan.distractor_kind) if not k)
    assert kinds == set(synth.DISTRACTOR_KINDS)
    positions = [tuple(i for i, k in enumerate(p.distractor_kind) if k) for p in plans]
    assert len(set(positions)) > len(plans) // 2  # placed at random, not at fixed frames


def test_oracle_floor_is_at_least_two_years_and_beats_the_mean_predictor() -> None:
    cfg = SynthConfig()
    population = synth.expected_oracle_floor(cfg, samples=5000)
    plans = synth.all_plans(replace(cfg, subjects=150))
    floor = synth.oracle_floor_mae(plans, cfg)
    baseline = synth.mean_predictor_mae(np.array([plan.age for plan in plans]))
    assert population >= 2.0 and floor >= 2.0
    assert floor < 0.35 * baseline


def test_oracle_recovers_interior_ages_from_noise_free_cues() -> None:
    cfg = SynthConfig()
    ages = np.array([20, 33, 41, 58])  # away from the ends, where the posterior median is not truncated
    t = (ages - cfg.min_age) / (cfg.max_age - cfg.min_age)
    latents = np.stack([t**cue.exponent for cue in synth.CUES], axis=1)
    np.testing.assert_array_equal(synth.oracle_estimates(latents, cfg), ages)


def test_each_cue_is_drawn_visibly_inside_its_own_regions_of_the_aligned_crop() -> None:
    align = AlignConfig()
    cfg = replace(TINY, frame_size=192)
    size = align.crop_size
    regions = synth.cue_regions(align)
    for subject in range(3):
        plan = synth.plan_video(cfg, subject, 0)
        scene = synth.build_scene(plan.scene_seed, cfg.frame_size, plan.noise_sigma)
        plain = next(s for s, k in zip(plan.states, plan.distractor_kind) if not k)
        matrix = _eye_template_transform(plain, align)
        frames = {
            name: cv2.warpAffine(render_frame(plan.identity, scene, replace(plain, cues=cues)), matrix, (size, size))
            for name, cues in [("", {})] + [(c.name, {c.name: 1.0}) for c in synth.REGIONAL_CUES]
        }
        without = frames[""].astype(int)
        for cue in synth.REGIONAL_CUES:
            changed = np.abs(frames[cue.name].astype(int) - without).max(axis=2) > 12
            inside = np.zeros((size, size), bool)
            for name, (x0, y0, x1, y1) in regions.items():
                if name.startswith(cue.name):
                    inside[int(y0 * size) : int(np.ceil(y1 * size)), int(x0 * size) : int(np.ceil(x1 * size))] = True
            assert changed.sum() >= 15, f"{cue.name} is barely visible at {size} px"
            assert changed[inside].sum() >= 0.97 * changed.sum(), cue.name


@pytest.mark.slow
def test_blazeface_detects_the_face_in_most_informative_frames(tmp_path: Path) -> None:
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    from age_estimation.video.face_models import FACE_DETECTOR, AssetError, asset_path

    try:
        model = asset_path(FACE_DETECTOR)
    except AssetError as err:
        pytest.skip(str(err))
    cfg = replace(TINY, subjects=2, videos_per_subject=1, frames=16, frame_size=192)
    _generate(tmp_path, cfg)
    truth = json.loads((tmp_path / synth.GROUND_TRUTH_NAME).read_text())
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(model)))
    hits, total, eye_errors = 0, 0, []
    with vision.FaceDetector.create_from_options(options) as detector:
        for rel, entry in truth["videos"].items():
            plan = synth.plan_video(cfg, int(entry["subject"]) - 1, 0)
            for frame, flag, state in zip(_decode(tmp_path / rel), entry["informative"], plan.states):
                if not flag:
                    continue
                rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
                total += 1
                if result.detections:
                    hits += 1
                    keypoints = result.detections[0].keypoints[:2]
                    found = sorted((k.x * cfg.frame_size, k.y * cfg.frame_size) for k in keypoints)
                    theta = np.deg2rad(state.angle_deg)
                    for (fx, fy), side in zip(found, (-0.5, 0.5)):
                        ex = state.centre[0] + state.iod_px * side * np.cos(theta)
                        ey = state.centre[1] + state.iod_px * side * np.sin(theta)
                        eye_errors.append(np.hypot(fx - ex, fy - ey) / state.iod_px)
    assert total >= 10
    assert hits >= 0.9 * total
    assert np.median(eye_errors) < 0.15  # detected eyes sit where the cue-region template assumes


def test_resume_rewrites_only_the_missing_video(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=2, frames=6)
    _generate(tmp_path, cfg)
    videos = sorted((tmp_path / synth.VIDEO_DIR).glob("*.mp4"))
    before = {p: p.stat().st_mtime_ns for p in videos}
    truth_mtime = (tmp_path / synth.GROUND_TRUTH_NAME).stat().st_mtime_ns
    original = _decode(videos[1])
    assert _generate(tmp_path, cfg)["written"] == 0  # complete: returns at once
    assert (tmp_path / synth.GROUND_TRUTH_NAME).stat().st_mtime_ns == truth_mtime
    videos[1].unlink()
    summary = _generate(tmp_path, cfg)
    assert summary["written"] == 1 and summary["reused"] == len(videos) - 1
    for path in videos:
        if path != videos[1]:
            assert path.stat().st_mtime_ns == before[path]
    np.testing.assert_array_equal(_decode(videos[1]), original)
    assert not list((tmp_path / synth.VIDEO_DIR).glob(".*"))  # no temporary files left behind


def test_changed_settings_regenerate_every_video(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=1, frames=6)
    _generate(tmp_path, cfg)
    summary = _generate(tmp_path, replace(cfg, seed=cfg.seed + 5))
    assert summary["written"] == summary["videos"]
    assert json.loads((tmp_path / synth.GROUND_TRUTH_NAME).read_text())["generator"]["seed"] == cfg.seed + 5


def test_bad_settings_and_output_paths_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synth.frames"):
        _generate(tmp_path / "x", replace(TINY, frames=1))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=str(blocker)):
        _generate(blocker)


@pytest.mark.slow
def test_parallel_generation_matches_serial(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=2, frames=6)
    synth.generate_dataset(tmp_path / "serial", cfg, AlignConfig(), workers=1, progress=False)
    synth.generate_dataset(tmp_path / "parallel", cfg, AlignConfig(), workers=2, progress=False)
    serial = (tmp_path / "serial" / synth.GROUND_TRUTH_NAME).read_bytes()
    assert serial == (tmp_path / "parallel" / synth.GROUND_TRUTH_NAME).read_bytes()
    for rel in json.loads(serial)["videos"]:
        np.testing.assert_array_equal(_decode(tmp_path / "serial" / rel), _decode(tmp_path / "parallel" / rel))


def test_cli_writes_the_files_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from age_estimation.cli.main import main

    config = tmp_path / "pipe.yaml"
    config.write_text("synth:\n  frames: 5\n  frame_size: 96\n  subjects: 7\n")
    out = tmp_path / "out"
    args = ["synth", "--out", str(out), "--config", str(config), "--subjects", "2", "--workers", "1"]
    assert main(args + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 4 and summary["frames"] == 20  # the flag overrides, the config sets frames
    assert (out / synth.MANIFEST_NAME).is_file() and (out / synth.GROUND_TRUTH_NAME).is_file()
    assert _decode(out / min(json.loads((out / synth.GROUND_TRUTH_NAME).read_text())["videos"])).shape[1] == 96
    assert main(args) == 0
    assert "oracle floor" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
