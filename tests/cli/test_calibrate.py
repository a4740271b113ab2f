from __future__ import annotations

from pathlib import Path

import pytest

from age_estimation.cli.main import main
from tests.tiny_run import make_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("calibrate"))


def test_a_missing_run_is_a_usage_error_naming_it(tmp_path, capsys):
    assert main(["calibrate", "--run", str(tmp_path / "gone")]) == 2
    assert f"{tmp_path / 'gone'}" in capsys.readouterr().err


def test_no_videos_to_calibrate_on_is_a_usage_error(run_dir, capsys):
    assert main(["calibrate", "--run", str(run_dir), "--set", "inference.atypicality.videos=0"]) == 2
    assert "inference.atypicality.videos is 0" in capsys.readouterr().err


def test_the_widening_is_calibrated_with_the_runs_config_and_the_overrides(run_dir, capsys, monkeypatch):
    seen = {}

    def calibrate_run(cfg, run, progress):
        seen.update(videos=cfg.inference.atypicality.videos, run=run, progress=progress)
        return {"videos": 12, "copies_answered": 100, "edges": [3.0], "factors": [1.5], "limit": 9.0}

    monkeypatch.setattr("age_estimation.evaluation.input_calibration.calibrate_run", calibrate_run)
    assert main(["calibrate", "--run", str(run_dir), "--set", "inference.atypicality.videos=12"]) == 0
    out = capsys.readouterr().out
    assert seen == {"videos": 12, "run": run_dir, "progress": True}
    assert "interval widened 1.50x from 3.0, refused beyond 9.0" in out and "export the run again" in out


def test_a_run_without_an_interval_or_with_no_answer_gives_exit_1(run_dir, capsys, monkeypatch):
    monkeypatch.setattr("age_estimation.evaluation.input_calibration.calibrate_run", lambda *a, **k: None)
    assert main(["calibrate", "--run", str(run_dir)]) == 1
    assert "no interval.json to widen" in capsys.readouterr().err

    def refused(*args, **kwargs):
        raise ValueError("no clean validation video got an age (3 x face too dark)")

    monkeypatch.setattr("age_estimation.evaluation.input_calibration.calibrate_run", refused)
    assert main(["calibrate", "--run", str(run_dir)]) == 1
    assert "no clean validation video got an age (3 x face too dark)" in capsys.readouterr().err
