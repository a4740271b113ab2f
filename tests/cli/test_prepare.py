"""``age-estimation prepare``: config and manifest errors exit 2 with the reason; one source at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from age_estimation.cli.main import main


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
