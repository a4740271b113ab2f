"""``prepare``: every bad input gets its own reason, the rest is cached; reruns skip what is unchanged."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from age_estimation.cli.main import main as cli_main
from age_estimation.config import AlignConfig
from age_estimation.data import cache
from age_estimation.data.manifest import ManifestRow
from age_estimation.data.prepare import prepare

ALIGN = AlignConfig(crop_size=32, smoothing_window=3)


def _rows(videos: dict[str, Path], names: list[str]) -> list[ManifestRow]:
    return [ManifestRow(videos[name], 20.0 + i, f"s{i}") for i, name in enumerate(names)]


def _read_clip(out: Path, video_id: str) -> dict:
    import tensorflow as tf

    shard = out / cache.read_index(out)["videos"][video_id]["shard"]
    (record,) = list(tf.data.TFRecordDataset(str(shard)).map(cache.parse_clip).as_numpy_iterator())
    return record


def test_bad_inputs_are_rejected_one_by_one_and_the_rest_is_prepared(tmp_path: Path, videos: dict[str, Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("face", "gray", "one_frame", "large", "truncated_avi", "truncated", "empty", "text", "no_face"):
        shutil.copy(videos[name], folder / videos[name].name)
    (folder / "manifest.csv").write_text(
        "path,age,subject,label\n"
        "face.mp4,30,a,posed\ngray.mp4,31,b,\none_frame.mp4,32,c,\nlarge.mp4,33,d,\ntruncated.avi,34,e,\n"
        "truncated.mp4,35,f,\nempty.mp4,36,g,\ntext.mp4,37,h,\nno_face.mp4,38,i,\n"
        "missing.mp4,39,j,\nface.mp4,forty,k,\n"
    )
    out = tmp_path / "cache"
    code = cli_main(["prepare", "--manifest", str(folder / "manifest.csv"), "--out", str(out),
                     "--workers", "1", "--no-progress", "--set", "align.crop_size=32"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rejected = {Path(item["path"]).name: item["reason"] for item in report["rejected"]}
    assert rejected["truncated.mp4"].startswith("MP4/MOV file that cannot be opened: truncated or damaged")
    assert rejected["empty.mp4"] == "empty file (0 bytes)"
    assert rejected["text.mp4"] == "not a video: the file holds text"
    assert rejected["no_face.mp4"] == "no face found in any of 8 frames"
    assert rejected["truncated.avi"] == (
        "decoded 7 of 12 frames: the file looks truncated; set align.accept_truncated=true to keep it"
    )
    assert "video file not found" in rejected["missing.mp4"]
    assert "age 'forty' is not a number" in rejected["face.mp4"]
    assert len(rejected) == 7
    prepared = {Path(item["path"]).name: item for item in report["prepared"]}
    assert set(prepared) == {"face.mp4", "gray.mp4", "one_frame.mp4", "large.mp4"}
    assert prepared["one_frame.mp4"]["frames"] == 1
    assert not any("warning" in item for item in report["prepared"])
    index = cache.read_index(out)
    assert index["align_key"] == cache.align_key(AlignConfig(crop_size=32))
    assert len(index["videos"]) == 4
    clip = _read_clip(out, prepared["large.mp4"]["video_id"])
    assert clip["frames"].shape == (2, 32, 32, 3) and clip["age"] == pytest.approx(33.0)
    assert clip["subject"] == b"d" and clip["face_found"].tolist() == [1, 1]
    assert not list(out.rglob("*.tmp"))


def test_rerun_skips_unchanged_and_redoes_changed_inputs(tmp_path: Path, videos: dict[str, Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("face", "gray"):
        shutil.copy(videos[name], folder / videos[name].name)
    rows = [ManifestRow(folder / "face.mp4", 30.0, "a"), ManifestRow(folder / "gray.mp4", 40.0, "b")]
    out = tmp_path / "cache"
    first = prepare(rows, out, ALIGN, workers=1, progress=False)
    assert len(first["prepared"]) == 2 and first["frames"] == 16
    assert json.loads((out / "report.json").read_text())["prepared"] == first["prepared"]

    again = prepare(rows, out, ALIGN, workers=1, progress=False)
    assert (len(again["prepared"]), len(again["skipped"])) == (0, 2)

    shutil.copy(videos["one_frame"], folder / "gray.mp4")  # new bytes under the same name
    rows[0] = ManifestRow(folder / "face.mp4", 31.0, "a")  # a corrected age
    changed = prepare(rows, out, ALIGN, workers=1, progress=False)
    assert sorted(Path(p["path"]).name for p in changed["prepared"]) == ["face.mp4", "gray.mp4"]
    face_id = cache.video_id_for(folder / "face.mp4")
    assert _read_clip(out, face_id)["age"] == pytest.approx(31.0)

    resized = prepare(rows[:1], out, AlignConfig(crop_size=48), workers=1, progress=False)
    assert len(resized["prepared"]) == 1
    index = cache.read_index(out)
    assert list(index["videos"]) == [face_id]  # the row dropped from the manifest left the index
    assert _read_clip(out, face_id)["frames"].shape[1:] == (48, 48, 3)


def test_truncated_video_is_kept_only_when_accepted_and_then_with_a_warning(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    rows = _rows(videos, ["truncated_avi"])
    refused = prepare(rows, tmp_path / "refused", ALIGN, workers=1, progress=False)
    assert [item["reason"] for item in refused["rejected"]] == [
        "decoded 7 of 12 frames: the file looks truncated; set align.accept_truncated=true to keep it"
    ]
    assert refused["prepared"] == [] and cache.read_index(tmp_path / "refused")["videos"] == {}

    accepted = prepare(rows, tmp_path / "kept", replace(ALIGN, accept_truncated=True), workers=1, progress=False)
    assert accepted["rejected"] == []
    (item,) = accepted["prepared"]
    assert item["frames"] == 7
    assert item["warning"] == "truncated: decoded 7 of 12 frames, kept because align.accept_truncated is true"


@pytest.mark.parametrize("limits", [{"max_frames": 4}, {"frame_step": 3}, {"max_frames": 2, "frame_step": 2}])
def test_max_frames_and_frame_step_are_not_taken_for_truncation(
    tmp_path: Path, videos: dict[str, Path], limits: dict[str, int]
) -> None:
    report = prepare(_rows(videos, ["face"]), tmp_path / "cache", replace(ALIGN, **limits), workers=1, progress=False)
    assert report["rejected"] == []
    (item,) = report["prepared"]
    assert "warning" not in item and item["frames"] < 10


def test_a_video_that_changes_into_a_bad_one_leaves_the_index(tmp_path: Path, videos: dict[str, Path]) -> None:
    path = tmp_path / "clip.mp4"
    shutil.copy(videos["face"], path)
    rows = [ManifestRow(path, 30.0, "a")]
    prepare(rows, tmp_path / "cache", ALIGN, workers=1, progress=False)
    shutil.copy(videos["no_face"], path)
    report = prepare(rows, tmp_path / "cache", ALIGN, workers=1, progress=False)
    assert report["rejected"] == [{"path": str(path), "reason": "no face found in any of 8 frames"}]
    assert cache.read_index(tmp_path / "cache")["videos"] == {}


@pytest.mark.slow
def test_process_pool_gives_the_same_clips(tmp_path: Path, videos: dict[str, Path]) -> None:
    rows = _rows(videos, ["face", "gray", "moving", "no_face"])
    serial = prepare(rows, tmp_path / "one", ALIGN, workers=1, progress=False)
    pooled = prepare(rows, tmp_path / "two", ALIGN, workers=2, progress=False)
    assert len(pooled["prepared"]) == 3 and len(pooled["rejected"]) == 1
    for item in serial["prepared"]:
        a = _read_clip(tmp_path / "one", item["video_id"])["frames"]
        b = _read_clip(tmp_path / "two", item["video_id"])["frames"]
        np.testing.assert_array_equal(a, b)
