"""Run directories: fresh timestamped folders with their sub-folders, and the newest finished run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from age_estimation.runs import MODEL_NAME, latest_run, new_run_dir


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
