"""``age-estimation evaluate``: an invalid config exits 2 before any data is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from age_estimation.cli.main import main


def test_an_invalid_config_exits_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["evaluate", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "cv")]
    assert main(args) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().out
    assert not (tmp_path / "cv").exists()


def test_benchmark_flags_without_corruptions_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--manifest", str(tmp_path / "m.csv"), "--videos", "5"]) == 2
    assert "--manifest, --videos only apply with --corruptions" in capsys.readouterr().err


def test_corruptions_with_a_missing_run_exit_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.md"
    assert main(["evaluate", "--corruptions", "--run", str(tmp_path / "no-run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no-run" in err and "heldout_predictions.csv" in err
    assert not out.exists()


def test_corruptions_with_an_empty_manifest_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,age,subject\nmissing.mp4,30,p1\n")
    args = ["evaluate", "--corruptions", "--model", str(tmp_path / "m.tflite"), "--manifest", str(manifest)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "missing.mp4" in err and "no usable videos" in err
