"""``age-estimation prepare``: config and manifest errors exit 2 with the reason; one source at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from age_estimation.cli.main import main
from tests.conftest import TINY_CONFIG


def test_a_config_error_exits_2_and_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["prepare", "--set", "data.window_span=3", "--out", str(tmp_path)]) == 2
    assert "'data.window_span' moved to 'inference.window_span'" in capsys.readouterr().out


def test_a_bad_manifest_exits_2_and_lists_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,age\nmissing.mp4,30\n")
    assert main(["prepare", "--manifest", str(manifest), "--out", str(tmp_path / "cache")]) == 2
    assert "error:" in capsys.readouterr().out and not (tmp_path / "cache").exists()


def test_manifest_and_uva_nemo_are_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--manifest", "m.csv", "--uva-nemo", str(tmp_path)])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_the_synthetic_default_is_generated_then_prepared(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, cache = tmp_path / "videos", tmp_path / "cache"
    overrides = ["synth.subjects=4", "synth.frames=8", f"data.path={data}", f"data.cache_dir={cache}"]
    command = ["prepare", "--config", str(TINY_CONFIG), "--workers", "1", "--no-progress", "--json"]
    assert main([*command, *(arg for pair in overrides for arg in ("--set", pair))]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (data / "manifest.csv").is_file() and report["videos"] == 4
    assert len(report["prepared"]) + len(report["rejected"]) == 4 and (cache / "report.json").is_file()


def test_a_bad_synthetic_setting_exits_2_before_anything_is_written(tmp_path: Path, capsys) -> None:
    data = tmp_path / "videos"
    assert main(["prepare", "--config", str(TINY_CONFIG), "--set", "synth.frames=1", "--set", f"data.path={data}",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}"]) == 2
    assert "synth.frames must be at least 2" in capsys.readouterr().out and not (data / "manifest.csv").exists()
