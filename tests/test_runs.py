"""Run directories: fresh timestamped folders with their sub-folders, the newest finished run, and the
``exports.json`` record that finds a run's export by path, absolute or relative, after a move."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from age_estimation.runs import (
    EXPORTS_NAME,
    MODEL_NAME,
    exports_record,
    latest_run,
    model_sha256,
    new_run_dir,
    read_exports,
    recorded_exports,
)


def test_new_run_dirs_are_distinct_and_laid_out(tmp_path: Path) -> None:
    first, second = new_run_dir(tmp_path, "exp"), new_run_dir(tmp_path, "exp")
    assert first != second and first.parent == second.parent == tmp_path
    assert first.name.startswith("exp-") and second.name.startswith(first.name)
    for run in (first, second):
        assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "logs", "plots"]


def test_latest_run_is_the_newest_finished_one(tmp_path: Path) -> None:
    old, new, unfinished = (new_run_dir(tmp_path, name) for name in ("a", "b", "c"))
    for run, mtime in ((old, 1_000), (new, 2_000)):
        (run / MODEL_NAME).write_bytes(b"model")
        os.utime(run / MODEL_NAME, (mtime, mtime))
    assert latest_run(tmp_path) == new
    assert unfinished != latest_run(tmp_path)


def test_latest_run_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    new_run_dir(tmp_path, "a")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no trained run found.*make train"):
        latest_run(tmp_path)


def _exported_run(root: Path) -> tuple[Path, Path]:
    """A run under ``root/runs`` with an exports.json for a float32 file under ``root/exported``."""
    run, tflite = root / "runs" / "r-1", root / "exported" / "tflite" / "siam" / "2" / "float32.tflite"
    run.mkdir(parents=True)
    tflite.parent.mkdir(parents=True)
    (run / MODEL_NAME).write_bytes(b"weights")
    tflite.write_bytes(b"tflite")
    record = exports_record(run, model_sha256(run), root / "exported", root / "exported" / "siam" / "2",
                            {"float32": tflite})
    (run / EXPORTS_NAME).write_text(json.dumps(record))
    return run, tflite


def test_exports_json_records_the_model_checksum_and_absolute_and_relative_paths(tmp_path: Path) -> None:
    run, tflite = _exported_run(tmp_path)
    record = read_exports(run)
    assert record["model_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert record["tflite"] == {"float32": str(tflite)}
    assert record["from_run"]["tflite"] == {"float32": "../../exported/tflite/siam/2/float32.tflite"}
    assert record["from_export_directory"] == {"savedmodel": "siam/2",
                                               "tflite": {"float32": "tflite/siam/2/float32.tflite"}}
    assert recorded_exports(record, run, "float32", tmp_path / "exported") == [tflite]  # three ways, one path
    assert recorded_exports(record, run, "int8", tmp_path / "exported") == []


def test_recorded_exports_follow_a_moved_run_and_export_directory(tmp_path: Path) -> None:
    run, tflite = _exported_run(tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "new")
    moved = tmp_path / "new" / "runs" / run.name
    record = read_exports(moved)
    found = recorded_exports(record, moved, "float32", tmp_path / "served")
    assert found == [tflite, tmp_path / "new" / tflite.relative_to(tmp_path / "old"),
                     tmp_path / "served" / "tflite" / "siam" / "2" / "float32.tflite"]
    assert [path.is_file() for path in found] == [False, True, False]


def test_a_missing_or_unreadable_exports_json_records_nothing(tmp_path: Path) -> None:
    assert read_exports(tmp_path) == {}
    (tmp_path / EXPORTS_NAME).write_text("[1, 2")
    assert read_exports(tmp_path) == {}
    assert recorded_exports({"tflite": {"float32": 3}}, tmp_path, "float32", tmp_path) == []
