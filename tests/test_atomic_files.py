"""Atomic writes: the target holds the old or the new bytes, never half, and no temporary file is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from age_estimation import atomic_files
from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic


def test_writes_create_folders_and_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "file.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    write_bytes_atomic(path, b"raw")
    assert path.read_bytes() == b"raw"
    assert [p.name for p in path.parent.iterdir()] == ["file.json"]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    write_json_atomic(path, {"old": True})

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(path, b"half")
    assert json.loads(path.read_text()) == {"old": True}


def test_unserialisable_json_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []
