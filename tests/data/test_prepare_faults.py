"""``prepare`` under two faults: a second run on the same cache folder, and a full disk.

Either way the command ends with one ``error:`` line and exit code 1, no temporary file is left, and
every video prepared before stays in the cache; after a full disk a rerun resumes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from age_estimation import atomic_files
from age_estimation.atomic_files import write_json_atomic
from age_estimation.cli.main import main as cli_main
from age_estimation.config import AlignConfig
from age_estimation.data import cache
from age_estimation.data import prepare as prepare_module
from age_estimation.data.cache_lock import LOCK_NAME, CacheBusyError, cache_lock
from age_estimation.data.manifest import ManifestRow
from age_estimation.data.prepare import DiskFullError, prepare

ALIGN = AlignConfig(crop_size=32, smoothing_window=3)
NAMES = ("face", "gray", "one_frame")  # the three quickest test videos (10, 6 and 1 frames)
HOLD_LOCK = (
    "import sys\n"
    "from age_estimation.data.cache_lock import cache_lock\n"
    "with cache_lock(sys.argv[1]):\n"
    "    print('locked', flush=True)\n"
    "    sys.stdin.read()\n"
)


@pytest.fixture()
def manifest(tmp_path: Path, videos: dict[str, Path]) -> Path:
    """A manifest of the three quickest videos, in manifest order."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(videos[name], folder / videos[name].name)
    path = folder / "manifest.csv"
    path.write_text("path,age,subject\n" + "".join(f"{videos[n].name},{30 + i},s{i}\n" for i, n in enumerate(NAMES)))
    return path


def _prepare_cli(manifest: Path, out: Path) -> int:
    return cli_main(["prepare", "--manifest", str(manifest), "--out", str(out), "--workers", "1", "--no-progress",
                     "--set", "align.crop_size=32"])


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _temporary_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# The lock


def test_a_second_prepare_is_refused_naming_the_process_that_holds_the_cache(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cache"
    assert _prepare_cli(manifest, out) == 0
    before = _snapshot(out)
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert _prepare_cli(manifest, out) == 1
        printed = capsys.readouterr().out
        assert printed.count("\n") == 1 and "Traceback" not in printed
        assert printed.startswith(f"error: {out} is being prepared by process {holder.pid} on ")
        assert f"the lock {out / LOCK_NAME} is released when that process exits" in printed
    finally:
        holder.communicate("")  # its stdin closes: it lets go of the lock and exits
    assert {k: v for k, v in _snapshot(out).items() if k != LOCK_NAME} == before
    assert not (out / LOCK_NAME).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_notice(
    tmp_path: Path, manifest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "cache"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = int(gone.stdout)
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": "this-host", "started": "2025-01-31 14:02:11"}))
    assert _prepare_cli(manifest, out) == 0
    assert (f"{out / LOCK_NAME} was left by process {dead} on this-host (started 2025-01-31 14:02:11), "
            "which no longer holds it; taking it over") in caplog.text
    assert len(cache.read_index(out)["videos"]) == len(NAMES)
    assert not (out / LOCK_NAME).exists()


def test_the_lock_is_exclusive_and_released_on_exit(tmp_path: Path) -> None:
    with cache_lock(tmp_path / "new" / "cache") as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(CacheBusyError, match=f"by process {os.getpid()} on "), cache_lock(path.parent):
            pass
        assert path.exists()  # the refused attempt left the holder's lock alone
    assert not path.exists()
    with cache_lock(path.parent):  # free again
        pass


def test_a_training_run_waits_for_the_prepare_that_holds_the_cache(
    tmp_path: Path, manifest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Workers of one cluster prepare the same cache at once: the later ones wait, then reuse it."""
    out = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    threading.Timer(1.0, holder.communicate, [""]).start()  # lets go of the lock a second from now
    started = time.monotonic()
    with cache_lock(out, wait=True) as path:
        assert time.monotonic() - started >= 0.9 and json.loads(path.read_text())["pid"] == os.getpid()
    assert f"{out} is being prepared by process {holder.pid} on " in caplog.text and "waiting for it" in caplog.text


# A full disk


def _shard_write_fails_after(monkeypatch: pytest.MonkeyPatch, videos_written: int, error: Exception) -> None:
    """Shards' writes fail with ``error`` on the second record (past the header) of video ``videos_written + 1``."""
    real_write = cache.ShardWriter.write
    records: list[Path] = []

    def write(self: cache.ShardWriter, record: bytes) -> None:
        records.append(self.path)
        if len(set(records)) > videos_written and records.count(self.path) == 2:
            assert self._tmp.exists()  # a half-written shard, for the run to remove
            raise error
        real_write(self, record)

    monkeypatch.setattr(cache.ShardWriter, "write", write)


def _spool_write_fails(monkeypatch: pytest.MonkeyPatch, videos_written: int) -> None:
    real_align = prepare_module._align_to_spool
    calls: list[Path] = []

    def align(path: Path, align: AlignConfig, aligner: object, spool: Path) -> dict:
        calls.append(path)
        if len(calls) > videos_written:
            spool.write_bytes(b"half of the crops")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(spool))
        return real_align(path, align, aligner, spool)

    monkeypatch.setattr(prepare_module, "_align_to_spool", align)


def _index_write_fails(monkeypatch: pytest.MonkeyPatch, videos_written: int) -> None:
    calls: list[Path] = []

    def write(path: Path, obj: object) -> None:
        calls.append(path)
        if len(calls) > 1 + videos_written:  # the index is written at the start, then once per video
            with pytest.MonkeyPatch.context() as failing:  # the real write, failing as on a full disk
                failing.setattr(atomic_files.os, "fsync", _no_space)
                write_json_atomic(path, obj)
        write_json_atomic(path, obj)

    monkeypatch.setattr(prepare_module, "write_json_atomic", write)


def _no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _tf_no_space() -> Exception:
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, "shards/.x.tfrecord.1.tmp; No space left on device")


FULL_DISK = {
    "shard OSError": lambda mp: _shard_write_fails_after(mp, 2, OSError(errno.ENOSPC, "No space left on device")),
    "shard TF error": lambda mp: _shard_write_fails_after(mp, 2, _tf_no_space()),
    "spool": lambda mp: _spool_write_fails(mp, 2),
    "index": lambda mp: _index_write_fails(mp, 2),
}


@pytest.mark.parametrize("where", list(FULL_DISK))
def test_a_full_disk_stops_with_one_line_keeps_what_was_prepared_and_a_rerun_resumes(
    tmp_path: Path, manifest: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, where: str
) -> None:
    out = tmp_path / "cache"
    with monkeypatch.context() as patch:
        FULL_DISK[where](patch)
        assert _prepare_cli(manifest, out) == 1
    printed = capsys.readouterr().out
    assert printed == (f"error: no space left on device writing {out}; 2 videos prepared and kept "
                       "(free some space, then run prepare again to resume)\n")
    assert _temporary_files(out) == [] and not (out / LOCK_NAME).exists()
    kept = cache.read_index(out)["videos"]
    assert len(kept) == 2 and all((out / entry["shard"]).is_file() for entry in kept.values())

    assert _prepare_cli(manifest, out) == 0
    report = json.loads((out / cache.REPORT_NAME).read_text())
    assert (len(report["prepared"]), len(report["skipped"]), report["rejected"]) == (1, 2, [])
    assert len(cache.read_index(out)["videos"]) == len(NAMES)


def test_a_full_disk_in_a_worker_process_stops_the_run(tmp_path: Path, videos: dict[str, Path], monkeypatch) -> None:
    """A worker's ENOSPC comes back through the pool and stops the run; every spool is removed."""
    # The pool pickles these by reference, so its spawned workers run this module's versions.
    monkeypatch.setattr(prepare_module, "_init_worker", _no_aligner)
    monkeypatch.setattr(prepare_module, "_align_in_worker", _spool_fills_the_disk)
    rows = [ManifestRow(videos[name], 30.0, name) for name in NAMES]
    with pytest.raises(DiskFullError, match="0 videos prepared and kept") as raised:
        prepare(rows, tmp_path / "cache", ALIGN, workers=2, progress=False)
    assert raised.value.errno == errno.ENOSPC
    assert _temporary_files(tmp_path / "cache") == []


def _no_aligner(*args: object) -> None:
    pass


def _spool_fills_the_disk(path: str, spool: str) -> dict:
    Path(spool).write_bytes(b"half of the crops")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), spool)


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json_atomic(tmp_path / "index.json", {"old": True})
    monkeypatch.setattr(atomic_files.os, "fsync", _no_space)
    with pytest.raises(OSError, match="No space left on device"):
        write_json_atomic(tmp_path / "index.json", {"new": True})
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]
    assert json.loads((tmp_path / "index.json").read_text()) == {"old": True}


def test_a_shard_whose_writer_fails_to_close_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    writer = cache.ShardWriter(tmp_path / "x.tfrecord")
    writer.write(b"header")
    real = writer._writer
    monkeypatch.setattr(writer, "_writer", _FailingClose(real))
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    real.close()
    assert list(tmp_path.iterdir()) == []


class _FailingClose:
    def __init__(self, writer: object) -> None:
        self._writer = writer

    def close(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


# A real full disk: a small tmpfs, where this process may mount one (root with CAP_SYS_ADMIN)


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs; the test is skipped, saying why, where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small disk; the monkeypatched tests cover a full disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=False,
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}; "
                    "the monkeypatched tests cover a full disk")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_real_full_disk(small_disk: Path, manifest: Path, capsys: pytest.CaptureFixture) -> None:
    """The disk is filled up to a little less than the second video's spool and shard need."""
    out = small_disk / "cache"
    first = manifest.with_name("first.csv")
    first.write_text("".join(manifest.read_text().splitlines(keepends=True)[:2]))
    assert _prepare_cli(first, out) == 0
    filler = _fill(small_disk / "filler", leave=8 * 1024)
    capsys.readouterr()
    assert _prepare_cli(manifest, out) == 1
    assert capsys.readouterr().out == (f"error: no space left on device writing {out}; 1 videos prepared and kept "
                                       "(free some space, then run prepare again to resume)\n")
    assert _temporary_files(out) == []
    filler.unlink()
    assert _prepare_cli(manifest, out) == 0
    report = json.loads((out / cache.REPORT_NAME).read_text())
    assert (len(report["prepared"]), len(report["skipped"])) == (2, 1)


def _fill(path: Path, leave: int) -> Path:
    """A file that takes all the free space of its file system but ``leave`` bytes."""
    free = shutil.disk_usage(path.parent).free
    with open(path, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(0, free - leave))
    return path
