"""``prepare --runner beam``: the Beam pipeline makes the cache the local process pool makes."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from age_estimation.cli.main import main as cli_main
from age_estimation.config import AlignConfig
from age_estimation.data import cache
from age_estimation.data.cache_lock import CacheBusyError, cache_lock
from age_estimation.data.manifest import ManifestRow, scan_csv_manifest
from age_estimation.data.prepare import prepare

pytest.importorskip("apache_beam")

from age_estimation.data.beam_prepare import _full_disk_raised_as_enospc, beam_options, prepare_beam

TIMING = ("seconds", "frames_per_second", "out_dir")
MULTI_PROCESSING = ["runner=DirectRunner", "direct_num_workers=2", "direct_running_mode=multi_processing"]


def _manifest(tmp_path: Path, videos: dict[str, Path]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("face", "moving", "gray", "text", "no_face"):
        shutil.copy(videos[name], folder / videos[name].name)
    manifest = folder / "manifest.csv"
    manifest.write_text(
        "path,age,subject,label,split\n"
        "face.mp4,30,a,posed,train\nmoving.mp4,41.5,b,,test\ngray.mp4,52,c,spontaneous,\n"
        "text.mp4,33,d,,\nno_face.mp4,34,e,,\nface.mp4,forty,f,,\n"
    )
    return manifest


def _prepare_on_beam(manifest: Path, out: Path) -> int:
    flags = [flag for option in MULTI_PROCESSING for flag in ("--beam-option", option)]
    return cli_main(["prepare", "--manifest", str(manifest), "--out", str(out), "--no-progress",
                     "--set", "align.crop_size=32", "--runner", "beam", *flags])


@pytest.mark.slow
def test_beam_direct_runner_writes_the_cache_of_the_local_path(tmp_path: Path, videos: dict[str, Path]) -> None:
    manifest = _manifest(tmp_path, videos)
    scan = scan_csv_manifest(manifest)
    rejected = [{"path": p.path, "reason": f"manifest row {p.row}: {p.reason}"} for p in scan.problems]
    local = prepare(scan.rows, tmp_path / "local", AlignConfig(crop_size=32), workers=1, progress=False,
                    rejected=rejected)
    assert _prepare_on_beam(manifest, tmp_path / "beam") == 0

    beam = json.loads((tmp_path / "beam" / cache.REPORT_NAME).read_text())
    assert {k: v for k, v in beam.items() if k not in TIMING} == {k: v for k, v in local.items() if k not in TIMING}
    reasons = {Path(item["path"]).name: item["reason"] for item in beam["rejected"]}
    assert reasons["text.mp4"] == "not a video: the file holds text"
    assert reasons["no_face.mp4"] == "no face found in any of 8 frames"
    assert "age 'forty' is not a number" in reasons["face.mp4"]
    assert len(beam["prepared"]) == 3

    local_index, beam_index = cache.read_index(tmp_path / "local"), cache.read_index(tmp_path / "beam")
    assert beam_index == local_index and len(beam_index["videos"]) == 3
    for entry in beam_index["videos"].values():
        a, b = cache.read_clip(tmp_path / "local" / entry["shard"]), cache.read_clip(tmp_path / "beam" / entry["shard"])
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not [p for p in (tmp_path / "beam").rglob("*") if p.name.startswith(".")]

    assert _prepare_on_beam(manifest, tmp_path / "beam") == 0  # nothing changed: no pipeline work
    again = json.loads((tmp_path / "beam" / cache.REPORT_NAME).read_text())
    assert (len(again["prepared"]), len(again["skipped"]), len(again["rejected"])) == (0, 3, 3)
    assert cache.read_index(tmp_path / "beam") == local_index


def test_beam_options_default_to_direct_runner_with_the_workers_and_take_overrides() -> None:
    default = beam_options([], workers=3).get_all_options()
    assert (default["runner"], default["direct_num_workers"], default["direct_running_mode"]) == (
        "DirectRunner", 3, "multi_processing")
    assert beam_options([], workers=1).get_all_options()["direct_running_mode"] == "in_memory"
    given = beam_options(["runner=FlinkRunner", "--flink_master=host:8081", "save_main_session"]).get_all_options()
    assert (given["runner"], given["flink_master"], given["save_main_session"]) == ("FlinkRunner", "host:8081", True)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        beam_options(["=x"])


def test_beam_option_without_the_beam_runner_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,age,subject\nx.mp4,30,a\n")
    code = cli_main(["prepare", "--manifest", str(manifest), "--out", str(tmp_path / "c"), "--beam-option", "a=b"])
    assert code == 2 and "--beam-option needs --runner beam" in capsys.readouterr().out
    assert not (tmp_path / "c").exists()


def test_the_beam_path_refuses_a_cache_that_another_prepare_holds(tmp_path: Path, videos: dict[str, Path]) -> None:
    rows = [ManifestRow(videos["face"], 30.0, "a")]
    with cache_lock(tmp_path / "cache"), pytest.raises(CacheBusyError, match="is being prepared by process"):
        prepare_beam(rows, tmp_path / "cache", AlignConfig(crop_size=32))
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.slow
def test_a_full_disk_on_beam_keeps_the_finished_videos_and_stops_with_one_line(
    tmp_path: Path, videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The DoFn returns the full disk as the video's result and skips its later videos; the driver stops."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("face", "gray", "one_frame"):
        shutil.copy(videos[name], folder / videos[name].name)
    manifest = folder / "manifest.csv"
    manifest.write_text("path,age,subject\nface.mp4,30,a\ngray.mp4,31,b\none_frame.mp4,32,c\n")
    shards: list[Path] = []
    real_write = cache.ShardWriter.write

    def write(self: cache.ShardWriter, record: bytes) -> None:
        shards.append(self.path)
        if len(set(shards)) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self._tmp))
        real_write(self, record)

    out = tmp_path / "cache"
    args = ["prepare", "--manifest", str(manifest), "--out", str(out), "--no-progress", "--set", "align.crop_size=32"]
    with monkeypatch.context() as patch:
        patch.setattr(cache.ShardWriter, "write", write)
        assert cli_main([*args, "--runner", "beam", "--workers", "1"]) == 1  # one in-process DoFn
    assert capsys.readouterr().out == (f"error: no space left on device writing {out}; 1 videos prepared and kept "
                                       "(free some space, then run prepare again to resume)\n")
    assert len(set(shards)) == 2  # the third video was skipped, not aligned
    assert len(cache.read_index(out)["videos"]) == 1
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    assert cli_main(args) == 0
    report = json.loads((out / cache.REPORT_NAME).read_text())
    assert (len(report["prepared"]), len(report["skipped"])) == (2, 1)


def test_a_runner_error_that_says_the_disk_is_full_is_raised_as_enospc(tmp_path: Path) -> None:
    """A runner re-raises a worker's error as its own, with the remote traceback in the message."""
    remote = "Pipeline job failed in state FAILED: Traceback ... OSError: [Errno 28] No space left on device: 'part'"
    with pytest.raises(OSError) as raised, _full_disk_raised_as_enospc(tmp_path):
        raise RuntimeError(remote)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path)
    with pytest.raises(RuntimeError, match="another failure"), _full_disk_raised_as_enospc(tmp_path):
        raise RuntimeError("another failure")
