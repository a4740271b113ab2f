"""The synthetic dataset on disk: determinism, files, BlazeFace on the videos, resume, bad settings, CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth import generator, oracle
from age_estimation.data.synth.plan import CUES, DISTRACTOR_KINDS, LABELS, VIDEO_DIR, plan_video
from age_estimation.video.decode import read_video

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
    return generator.generate_dataset(out, cfg, AlignConfig(), workers=1, progress=False)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, _generate(out)


def test_same_seed_same_dataset_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=2, videos_per_subject=1, frames=6)
    _generate(tmp_path / "a", cfg)
    _generate(tmp_path / "b", cfg)
    _generate(tmp_path / "c", replace(cfg, seed=cfg.seed + 1))
    truth = {name: (tmp_path / name / oracle.GROUND_TRUTH_NAME).read_bytes() for name in "abc"}
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
    with open(out / generator.MANIFEST_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "age", "subject", "label"]
    assert len(rows) == TINY.subjects * TINY.videos_per_subject == summary["videos"]
    assert len({row["subject"] for row in rows}) == TINY.subjects
    truth = json.loads((out / oracle.GROUND_TRUTH_NAME).read_text())
    assert set(truth["videos"]) == {row["path"] for row in rows}
    assert truth["generator"]["key"] == summary["key"] and truth["generator"]["seed"] == TINY.seed
    assert truth["oracle_floor_mae"] >= 0 and truth["mean_predictor_mae"] > 0
    for row in rows:
        entry = truth["videos"][row["path"]]
        assert TINY.min_age <= float(row["age"]) == entry["age"] <= TINY.max_age
        assert row["subject"] == entry["subject"] and row["label"] == entry["label"] in LABELS
        assert set(entry["cues"]) == {cue.name for cue in CUES}
        assert len(entry["informative"]) == len(entry["distractor_kind"]) == TINY.frames
        for flag, kind in zip(entry["informative"], entry["distractor_kind"]):
            assert (flag, kind == "") in ((1, True), (0, False))
            assert kind in ("",) + DISTRACTOR_KINDS
        frames = _decode(out / row["path"])
        assert frames.shape == (TINY.frames, TINY.frame_size, TINY.frame_size, 3)
    for name, (x0, y0, x1, y1) in truth["cue_regions"].items():
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, name


@pytest.mark.slow
def test_every_video_decodes_the_frames_its_container_claims(tiny_dataset: tuple[Path, dict]) -> None:
    out, _ = tiny_dataset
    paths = sorted((out / VIDEO_DIR).glob("*.mp4"))
    assert len(paths) == TINY.subjects * TINY.videos_per_subject
    for path in paths:
        video = read_video(path)
        assert (video.decoded_frames, video.expected_frames) == (TINY.frames, TINY.frames)
        assert not video.truncated  # so prepare never rejects a synthetic video as truncated


def test_blazeface_detects_the_face_in_most_informative_frames(tmp_path: Path) -> None:
    from age_estimation.video.face_detector import FaceDetector

    # Without the face models this fails with their AssetError (run `age-estimation assets`; `make test`
    # does), as every test on real alignment does: a skip would hide that the detector went unchecked.
    detector = FaceDetector()
    cfg = replace(TINY, subjects=2, videos_per_subject=1, frames=16, frame_size=192)
    _generate(tmp_path, cfg)
    truth = json.loads((tmp_path / oracle.GROUND_TRUTH_NAME).read_text())
    hits, total, eye_errors = 0, 0, []
    for rel, entry in truth["videos"].items():
        plan = plan_video(cfg, int(entry["subject"]) - 1, 0)
        for frame, flag, state in zip(_decode(tmp_path / rel), entry["informative"], plan.states):
            if not flag:
                continue
            found = detector.detect(np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
            total += 1
            if found:
                hits += 1
                theta = np.deg2rad(state.angle_deg)
                for (fx, fy), side in zip(found[0].eyes, (-0.5, 0.5)):
                    ex = state.centre[0] + state.iod_px * side * np.cos(theta)
                    ey = state.centre[1] + state.iod_px * side * np.sin(theta)
                    eye_errors.append(np.hypot(fx - ex, fy - ey) / state.iod_px)
    assert total >= 10
    assert hits >= 0.9 * total
    assert np.median(eye_errors) < 0.15  # detected eyes sit where the cue-region template assumes


def test_resume_rewrites_only_the_missing_video(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=2, frames=6)
    _generate(tmp_path, cfg)
    videos = sorted((tmp_path / VIDEO_DIR).glob("*.mp4"))
    before = {p: p.stat().st_mtime_ns for p in videos}
    truth_mtime = (tmp_path / oracle.GROUND_TRUTH_NAME).stat().st_mtime_ns
    original = _decode(videos[1])
    assert _generate(tmp_path, cfg)["written"] == 0  # complete: returns at once
    assert (tmp_path / oracle.GROUND_TRUTH_NAME).stat().st_mtime_ns == truth_mtime
    videos[1].unlink()
    summary = _generate(tmp_path, cfg)
    assert summary["written"] == 1 and summary["reused"] == len(videos) - 1
    for path in videos:
        if path != videos[1]:
            assert path.stat().st_mtime_ns == before[path]
    np.testing.assert_array_equal(_decode(videos[1]), original)
    assert not list((tmp_path / VIDEO_DIR).glob(".*"))  # no temporary files left behind


def test_changed_settings_regenerate_every_video(tmp_path: Path) -> None:
    cfg = replace(TINY, subjects=1, frames=6)
    _generate(tmp_path, cfg)
    summary = _generate(tmp_path, replace(cfg, seed=cfg.seed + 5))
    assert summary["written"] == summary["videos"]
    assert json.loads((tmp_path / oracle.GROUND_TRUTH_NAME).read_text())["generator"]["seed"] == cfg.seed + 5


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
    generator.generate_dataset(tmp_path / "serial", cfg, AlignConfig(), workers=1, progress=False)
    generator.generate_dataset(tmp_path / "parallel", cfg, AlignConfig(), workers=2, progress=False)
    serial = (tmp_path / "serial" / oracle.GROUND_TRUTH_NAME).read_bytes()
    assert serial == (tmp_path / "parallel" / oracle.GROUND_TRUTH_NAME).read_bytes()
    for rel in json.loads(serial)["videos"]:
        np.testing.assert_array_equal(_decode(tmp_path / "serial" / rel), _decode(tmp_path / "parallel" / rel))
