"""``prepare``: every bad input gets its own reason, the rest is cached; reruns skip what is unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from age_estimation.bench.face_video import write_face_video
from age_estimation.cli.main import main as cli_main
from age_estimation.config import AlignConfig
from age_estimation.data import cache
from age_estimation.data.manifest import ManifestRow
from age_estimation.data.prepare import prepare
from age_estimation.video.landmark_set import LANDMARK_COUNT

ALIGN = AlignConfig(crop_size=32, smoothing_window=3)


def _rows(videos: dict[str, Path], names: list[str]) -> list[ManifestRow]:
    return [ManifestRow(videos[name], 20.0 + i, f"s{i}") for i, name in enumerate(names)]


def _read_clip(out: Path, video_id: str) -> dict:
    return cache.read_clip(out / cache.read_index(out)["videos"][video_id]["shard"])


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
    assert clip["landmarks"].shape == (2, LANDMARK_COUNT, 2) and clip["landmark_found"].tolist() == [1, 1]
    assert index["videos"][prepared["large.mp4"]["video_id"]]["landmark_frames"] == 2
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


def test_the_index_names_each_source_by_its_absolute_path(tmp_path: Path, videos: dict[str, Path], monkeypatch) -> None:
    """A relative manifest path is resolved once, at prepare, so readers elsewhere find the video."""
    (tmp_path / "in").mkdir()
    shutil.copy(videos["face"], tmp_path / "in" / "face.mp4")
    monkeypatch.chdir(tmp_path)
    rows = [ManifestRow(Path("in/face.mp4"), 30.0, "a")]
    prepare(rows, Path("cache"), ALIGN, workers=1, progress=False)
    index = cache.read_index(tmp_path / "cache")
    (entry,) = index["videos"].values()
    assert entry["source"] == str((tmp_path / "in" / "face.mp4").resolve())

    entry["source"] = "in/face.mp4"  # as a cache written with relative sources holds it
    (tmp_path / "cache" / cache.INDEX_NAME).write_text(json.dumps(index))
    again = prepare(rows, Path("cache"), ALIGN, workers=1, progress=False)
    assert len(again["skipped"]) == 1
    (entry,) = cache.read_index(tmp_path / "cache")["videos"].values()
    assert entry["source"] == str((tmp_path / "in" / "face.mp4").resolve())


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
        np.testing.assert_array_equal(_read_clip(tmp_path / "one", item["video_id"])["landmarks"],
                                      _read_clip(tmp_path / "two", item["video_id"])["landmarks"])


def test_a_long_video_is_written_chunk_by_chunk(tmp_path: Path, videos: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setattr(cache, "CHUNK_FRAMES", 7)
    out = tmp_path / "cache"
    report = prepare([ManifestRow(videos["moving"], 30.0, "a")], out, ALIGN, workers=1, progress=False)
    shard = out / cache.read_index(out)["videos"][report["prepared"][0]["video_id"]]["shard"]
    import tensorflow as tf

    assert len(list(tf.data.TFRecordDataset(str(shard)))) == 1 + 4  # header + 7 + 7 + 7 + 3 frames
    clip = cache.read_clip(shard)
    assert clip["frames"].shape == (24, 32, 32, 3) and clip["source_index"].tolist() == list(range(24))
    assert not list(out.rglob("*.tmp"))


def test_an_old_format_cache_is_prepared_again_saying_why(tmp_path: Path, videos: dict[str, Path], caplog) -> None:
    out = tmp_path / "cache"
    rows = [ManifestRow(videos["face"], 30.0, "a")]
    prepare(rows, out, ALIGN, workers=1, progress=False)
    index = cache.read_index(out)
    index["format"] = 2  # a cache made before the landmark stream
    (out / cache.INDEX_NAME).write_text(json.dumps(index))
    (out / cache.SHARD_DIR / ".left-by-a-killed-run.crops.tmp").write_bytes(b"x")
    stale = f"cache format 2 is not {cache.FORMAT_VERSION}"
    with pytest.raises(ValueError, match=f"{stale} .*run `age-estimation prepare` again"):
        cache.read_index(out)
    again = prepare(rows, out, ALIGN, workers=1, progress=False)
    assert len(again["prepared"]) == 1 and cache.read_index(out)["format"] == cache.FORMAT_VERSION
    assert "preparing every video again" in caplog.text and stale in caplog.text
    assert not list(out.rglob("*.tmp"))


def test_a_worker_imports_no_tensorflow(videos: dict[str, Path], tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from dataclasses import asdict\n"
        "from age_estimation.config import AlignConfig\n"
        "from age_estimation.data import prepare as p\n"
        "p._init_worker(asdict(AlignConfig(crop_size=32)), False, os.getppid())\n"
        f"result = p._align_in_worker({str(videos['face'])!r}, {str(tmp_path / 'spool.tmp')!r})\n"
        "print(len(result['face_found']), 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["10", "False"]


@pytest.mark.slow
def test_workers_exit_when_prepare_is_killed(tmp_path: Path) -> None:
    paths = [write_face_video(tmp_path / f"v{i}.mp4", frames=150, size=(320, 240), seed=i) for i in range(6)]
    rows = ", ".join(f"ManifestRow({str(p)!r}, 30.0, 's{i}')" for i, p in enumerate(paths))
    script = (
        "from pathlib import Path\n"
        "from age_estimation.config import AlignConfig\n"
        "from age_estimation.data.manifest import ManifestRow\n"
        "from age_estimation.data.prepare import prepare\n"
        f"prepare([{rows}], Path({str(tmp_path / 'cache')!r}), AlignConfig(crop_size=32), workers=2, progress=False)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(workers := _descendants(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, "prepare never started its workers"
        time.sleep(4.0)  # the workers are busy aligning
        assert all(_alive(pid) for pid in workers) and parent.poll() is None
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        for task in Path(f"/proc/{queue.pop()}/task").glob("*/children"):
            children = [int(child) for child in task.read_text().split()]
            found += children
            queue += children
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
