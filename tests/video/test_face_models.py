"""Face model assets: a missing or corrupt file says how to fetch it; a wheel's models are checked and extracted."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from age_estimation.video import face_models
from age_estimation.video.face_models import FACE_DETECTOR, Asset, AssetError, asset_path, ensure_assets


@pytest.fixture()
def assets_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("AGE_ESTIMATION_ASSETS", str(folder))
    return folder


def test_missing_and_corrupt_files_say_what_to_do(assets_folder: Path) -> None:
    with pytest.raises(AssetError, match="face model missing. Run `age-estimation assets`"):
        asset_path(FACE_DETECTOR)
    assets_folder.mkdir()
    (assets_folder / FACE_DETECTOR.name).write_bytes(b"not a model")
    with pytest.raises(AssetError, match="checksum mismatch"):
        asset_path(FACE_DETECTOR)


def test_models_are_extracted_from_a_wheel_and_verified(
    assets_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = b"detector bytes", b"tampered"
    asset = Asset("detector.tflite", "mediapipe/x/detector.tflite", hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(face_models, "ASSETS", (asset,))
    wheel = tmp_path / "mp.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(asset.member, bad)
    with pytest.raises(AssetError, match="unexpected checksum"):
        ensure_assets(wheel)
    assert not (assets_folder / asset.name).exists()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(asset.member, good)
    assert ensure_assets(wheel) == [assets_folder / asset.name]
    assert (assets_folder / asset.name).read_bytes() == good
    assert ensure_assets(tmp_path / "gone.whl") == [assets_folder / asset.name]  # cached: the wheel is not needed
