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
