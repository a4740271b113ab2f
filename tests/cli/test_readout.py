"""``age-estimation readout``: the linear readers' table on prepared data, a clear exit on a bad config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from age_estimation.cli.main import main
from tests.conftest import TINY_CONFIG, tiny_overrides


def test_an_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["readout", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().out


@pytest.mark.slow
def test_readout_prints_the_readers_as_json(tiny_root: Path, capsys: pytest.CaptureFixture) -> None:
    sets = [part for override in tiny_overrides(tiny_root) for part in ("--set", override)]
    assert main(["readout", "--config", str(TINY_CONFIG), *sets, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "smile track" in summary["readers"] and summary["readers"]["smile track"]["mae"] > 0


@pytest.mark.slow
def test_stacking_on_a_folder_without_the_variant_exits_1(tiny_root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    sets = [part for override in tiny_overrides(tiny_root) for part in ("--set", override)]
    assert main(["readout", "--config", str(TINY_CONFIG), *sets, "--stack", str(tmp_path), "--json"]) == 1
    assert f"{tmp_path}: no siam_dynamics-fold*/heldout_predictions.csv" in capsys.readouterr().out
