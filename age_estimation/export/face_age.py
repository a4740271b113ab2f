"""TFLite export of the pretrained face-age network (``face-age-v1``): float32 and float16, with a parity report.

The file takes ``chips`` uint8 (N, 64, 64, 3) raw RGB dlib-framed face chips (N is 1 in the file and
resizable at run time) and gives ``probabilities`` float32 (N, 81) and its expected ``age`` (N,) in years.
Conversion reuses the SIAM export's: a SavedModel of the network is converted by ``tflite.convert``, each
variant written with its JSON sidecar by ``tflite.write_variant`` (``face_age_spec`` with the file's inputs,
outputs and ``tflite_*`` keys), so ``predict --model <variant>.tflite`` runs it through ``FaceAgePredictor``
on LiteRT. The report is the SIAM report's layout (``report.format_table``) with, per variant, max |diff| of
the softmax and of the expected age against Keras on each parity set (random chips; real face chips from
scikit-image's astronaut photo when scikit-image is installed) and the median LiteRT latency per chip.

Layout: ``<directory>/tflite/face-age-v1/<version>/{float32,float16}.{tflite,json}`` and ``report.json``.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from age_estimation.export.report import median_ms, write_report
from age_estimation.export.savedmodel import next_version
from age_estimation.export.tflite import TFLiteArtifact, convert, write_variant
from age_estimation.inference.face_age import FACE_AGE_V1, FACE_AGE_VALUES, face_age_spec
from age_estimation.inference.runtimes import FaceAgePredictor
from age_estimation.inference.spec import DeploymentSpec
from age_estimation.models.face_age.pretrained import load_face_age
from age_estimation.models.face_age.resnet import CHIP_SIZE, NUM_CLASSES, ExpectedAge, FaceAgeResNet

FACE_AGE_VARIANTS = ("float32", "float16")
# The astronaut's face in scikit-image's 512x512 photo: (top, left, side) of square crops around it.
ASTRONAUT_CROPS = ((20, 130, 200), (30, 140, 180), (10, 120, 220), (25, 150, 190))


def chip_model(network: FaceAgeResNet) -> keras.Model:
    """``network`` behind a uint8 ``chips`` input, with ``probabilities`` and expected ``age`` outputs."""
    chips = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), dtype="uint8", name="chips")
    probabilities = network(chips)
    age = ExpectedAge(name="age")(probabilities)
    return keras.Model(chips, {"probabilities": probabilities, "age": age}, name="face_age_v1_chips")


def tflite_spec(name: str = FACE_AGE_V1) -> DeploymentSpec:
    """``face_age_spec`` with the inputs and outputs of the TFLite file (per chip, not per clip)."""
    return dataclasses.replace(
        face_age_spec(name),
        batch_size=1,
        inputs={"chips": {"dtype": "uint8", "shape": [1, CHIP_SIZE, CHIP_SIZE, 3],
                          "layout": "raw 0..255 RGB dlib-framed face chips (align below); N resizable"}},
        outputs={
            "probabilities": {"dtype": "float32", "shape": [1, NUM_CLASSES], "meaning": "softmax over ages 0..80"},
            "age": {"dtype": "float32", "shape": [1], "unit": "years", "meaning": "expected age of the softmax"},
        },
        origin=f"{name} (TFLite export)",
    )


def export_face_age_tflite(
    directory: str | Path,
    variants: list[str] | None = None,
    name: str = FACE_AGE_V1,
    network: FaceAgeResNet | None = None,
    version: int | None = None,
) -> list[TFLiteArtifact]:
    """Write each variant (default float32 and float16) of ``name`` with its sidecar into a new version
    folder under ``<directory>/tflite/<name>/``; ``network`` defaults to the pretrained one."""
    variants = list(variants or FACE_AGE_VARIANTS)
    unknown = [v for v in variants if v not in FACE_AGE_VARIANTS]
    if unknown:
        raise ValueError(f"{name} exports the TFLite variants {', '.join(FACE_AGE_VARIANTS)}; not {unknown}")
    base = Path(directory) / "tflite" / name
    base.mkdir(parents=True, exist_ok=True)
    out_dir = base / str(version or next_version(base))
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: TFLite version exists already; not overwriting it")
    model = chip_model(network if network is not None else load_face_age(name))
    spec = tflite_spec(name)
    work = Path(tempfile.mkdtemp(prefix="face-age-tflite-"))
    try:
        model.export(str(work / "chips"), verbose=False)
        return [write_variant(out_dir, v, convert(work / "chips", v), spec) for v in variants]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def random_chips(count: int = 16, seed: int = 0) -> np.ndarray:
    """``count`` uint8 chips of uniform random pixels: parity over the whole input range."""
    return np.random.default_rng(seed).integers(0, 256, (count, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)


def astronaut_chips() -> np.ndarray | None:
    """Real face chips: square crops of scikit-image's astronaut face resized to 64x64, and their mirror
    images; None without scikit-image (a dev extra)."""
    try:
        from skimage import data
    except ImportError:
        return None
    import cv2

    photo = data.astronaut()
    crops = [cv2.resize(photo[top: top + side, left: left + side], (CHIP_SIZE, CHIP_SIZE),
                        interpolation=cv2.INTER_AREA) for top, left, side in ASTRONAUT_CROPS]
    chips = np.stack(crops)
    return np.ascontiguousarray(np.concatenate([chips, chips[:, :, ::-1]]), dtype=np.uint8)


def parity_chips() -> dict[str, np.ndarray]:
    """The parity sets: ``random`` chips and, with scikit-image, the ``astronaut``'s real face chips."""
    sets = {"random": random_chips()}
    real = astronaut_chips()
    if real is not None:
        sets["astronaut"] = real
    return sets


def face_age_report(
    network: FaceAgeResNet,
    artifacts: list[TFLiteArtifact],
    chips: dict[str, np.ndarray],
    threads: tuple[int, ...] = (1, 2),
    runs: int = 20,
) -> dict[str, Any]:
    """Per variant: max |diff| of softmax and expected age vs Keras on each set of ``chips``, size, ops and
    median LiteRT ms per chip (batch 1) at each thread count; overall maxima as ``format_table`` reads them."""
    ages = np.asarray(FACE_AGE_VALUES, np.float64)
    reference = {key: np.asarray(network.predict_on_batch(c.astype(np.float32)), np.float64) for key, c in chips.items()}
    report: dict[str, Any] = {"parity_sets": {key: len(c) for key, c in chips.items()}, "variants": {}}
    for artifact in artifacts:
        predictor = FaceAgePredictor(tflite=artifact.path, num_threads=max(threads))
        parity = {}
        for key, c in chips.items():
            got = predictor.frame_probabilities(c).astype(np.float64)
            age_diff = np.abs(got @ ages - reference[key] @ ages)
            parity[key] = {"max_abs_diff_softmax": float(np.abs(got - reference[key]).max()),
                           "max_abs_diff_years": float(age_diff.max()), "mean_abs_diff_years": float(age_diff.mean())}
        report["variants"][artifact.variant] = {
            "path": str(artifact.path),
            "size_bytes": artifact.size_bytes,
            "max_abs_diff_softmax": max(p["max_abs_diff_softmax"] for p in parity.values()),
            "max_abs_diff_years": max(p["max_abs_diff_years"] for p in parity.values()),
            "parity": parity,
            "ops": artifact.ops,
            "latency_ms": {str(n): chip_latency(artifact.path, next(iter(chips.values()))[:1], n, runs)
                           for n in threads},
        }
    return report


def chip_latency(path: str | Path, chip: np.ndarray, num_threads: int, runs: int = 20) -> float:
    """Median milliseconds of one LiteRT call on one (1, 64, 64, 3) ``chip`` with ``num_threads`` threads."""
    predictor = FaceAgePredictor(tflite=path, num_threads=num_threads)
    return median_ms(lambda: predictor.frame_probabilities(chip), runs)


def export_face_age(
    directory: str | Path,
    variants: list[str] | None = None,
    report: bool = True,
    runs: int = 20,
    name: str = FACE_AGE_V1,
) -> dict[str, Any]:
    """Export ``name`` to TFLite under ``directory`` and, with ``report``, measure and save its parity report;
    returns the JSON-ready summary (paths, and the report)."""
    network = load_face_age(name)
    artifacts = export_face_age_tflite(directory, variants, name, network)
    out_dir = artifacts[0].path.parent
    result: dict[str, Any] = {"model": name, "tflite": {"path": str(out_dir),
                                                        "variants": {a.variant: str(a.path) for a in artifacts}}}
    if report:
        chips = parity_chips()
        table = face_age_report(network, artifacts, chips, runs=runs)
        table["parity_source"] = "; ".join(
            f"{len(c)} random 64x64 chips (seed 0)" if key == "random"
            else f"{len(c)} real face chips (scikit-image's astronaut: face crops and their mirror images)"
            for key, c in chips.items()
        ) + ("" if "astronaut" in chips else "; no real face chips (install scikit-image for them)")
        table["report_path"] = str(write_report(out_dir, table))
        result["tflite"]["report"] = table
    return result
