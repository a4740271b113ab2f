"""Write the GPU check's bundle here (with TensorFlow): what ``age_estimation.bench.gpu`` needs on a JAX machine.

Layout of ``BUNDLE/`` (git-ignored under ``exported/``)::

    config.yaml        the run's resolved pipeline config (the GPU side builds SIAM from its model section)
    model.keras        the run's trained model
    clips.npz          frames uint8 (N, T, S, S, 3), mask float32 (N, T), ages float32 (N,), video_ids (N,);
                       for a model that reads the landmark stream also landmarks float32 (N, T, K, 2) and
                       landmark_mask float32 (N, T)
    expected_ages.npy  float32 (N,): the model's ages on those clips here (Keras/TF, one pass, no flip)
    bundle.json        where it came from: run, shapes, sizes, versions, wheels
    wheels/            keras and the small packages the GPU machine lacks, for CPython 3.12 on x86-64

Run: ``python -m age_estimation.bench.gpu_bundle --config pipelines/ci_tiny.yaml [--run RUN] [--out BUNDLE]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from age_estimation.config import load_config
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import build_dataset
from age_estimation.models.siam.model import Siam, load_siam
from age_estimation.runs import CONFIG_NAME, MODEL_NAME, latest_run
from age_estimation.training.task import crop_size_of

DEFAULT_OUT = Path("exported/gpu_bundle")
CLIPS_NAME = "clips.npz"
EXPECTED_NAME = "expected_ages.npy"
MANIFEST_NAME = "bundle.json"
WHEELS_DIR = "wheels"
# What keras needs that the GPU machine's image lacks (it has absl-py, numpy, rich, h5py, ml-dtypes,
# packaging, typing-extensions and PyYAML); pinned to the versions installed here.
CARRIED_PACKAGES = ("keras", "namex", "optree")
WHEEL_PYTHON = "3.12"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")
# The device takes 64 MiB of files in all, the repository included: clips get 32, the bundle 48.
CLIP_BUDGET_MIB = 32.0
BUNDLE_LIMIT_MIB = 48.0
MIB = 1024 * 1024


def clip_count(requested: int, available: int, clip_bytes: int, budget_mib: float = CLIP_BUDGET_MIB) -> int:
    """How many clips to carry: as asked, but no more than the cache has or the byte budget allows."""
    fits = int(budget_mib * MIB) // clip_bytes
    count = min(requested, available, fits)
    if count < 1:
        raise ValueError(f"no clip fits: {available} cached, {clip_bytes} bytes each, budget {budget_mib} MiB")
    return count


def eval_clips(cache_dir: str | Path, data: Any, count: int, landmarks: bool = False) -> dict[str, np.ndarray]:
    """The first ``count`` cached videos (by id) as eval clips: T frames spread over each video, as scoring takes.

    ``landmarks`` adds the landmark stream (for a model that reads it).
    """
    video_ids = sorted(read_index(cache_dir)["videos"])[:count]
    parts: dict[str, list[np.ndarray]] = {"ages": [], "video_ids": []}
    dataset = build_dataset(cache_dir, video_ids, data, training=False, include_meta=True, landmarks=landmarks)
    for inputs, targets, meta in dataset:
        for name, value in inputs.items():
            parts.setdefault(name, []).append(value.numpy())
        parts["ages"].append(targets["age"].numpy()[:, 0])
        parts["video_ids"].append(meta["video_id"].numpy().astype(str))
    return {key: np.concatenate(values) for key, values in parts.items()}


def expected_ages(model: Siam, clips: dict[str, np.ndarray]) -> np.ndarray:
    """The model's ages on the clips in one forward pass (no test-time flip), float32 (N,)."""
    outputs = model.predict({name: clips[name] for name in model.input}, batch_size=32, verbose=0)
    return np.asarray(outputs["age"][:, 0], np.float32)


def download_wheels(dest: Path, packages: tuple[str, ...] = CARRIED_PACKAGES) -> list[str]:
    """Download ``packages`` at the versions installed here as CPython 3.12 x86-64 wheels; their file names."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in packages]
    platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--python-version", WHEEL_PYTHON, "--implementation", "cp", *platforms,
         "-d", str(dest), *pins],
        check=True,
    )
    return sorted(path.name for path in dest.glob("*.whl"))


def tree_mib(path: Path) -> float:
    """Size of every file under ``path`` in MiB."""
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) / MIB


def write_bundle(
    cache_dir: str | Path, run: Path, out: Path, clips: int = 128, with_wheels: bool = True,
    budget_mib: float = CLIP_BUDGET_MIB,
) -> dict[str, Any]:
    """Write the bundle of ``run`` with clips from ``cache_dir`` into ``out``; returns what bundle.json holds."""
    run_cfg = load_config(run / CONFIG_NAME)
    model = load_siam(run / MODEL_NAME)
    crop = crop_size_of(read_index(cache_dir))
    if crop != model.crop_size:
        raise ValueError(f"{cache_dir}: cache crops are {crop} px but {run / MODEL_NAME} takes {model.crop_size} px")
    steps = run_cfg.data.clip_length
    stream_bytes = model.landmark_points * 2 * 4 if model.reads_landmarks else 0  # float32 (K, 2) a frame
    count = clip_count(clips, len(read_index(cache_dir)["videos"]), steps * (crop * crop * 3 + stream_bytes),
                       budget_mib)
    data = eval_clips(cache_dir, run_cfg.data, count, landmarks=model.reads_landmarks)
    ages = expected_ages(model, data)

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / CONFIG_NAME, out / CONFIG_NAME)
    shutil.copyfile(run / MODEL_NAME, out / MODEL_NAME)
    np.savez_compressed(out / CLIPS_NAME, **data)
    np.save(out / EXPECTED_NAME, ages)
    wheels = download_wheels(out / WHEELS_DIR) if with_wheels else []
    manifest = {
        "run": str(run), "cache_dir": str(cache_dir), "clips": count, "clip_length": steps, "crop_size": crop,
        "frames_shape": list(data["frames"].shape), "age_prior": list(model.age_prior),
        "landmarks_shape": list(data["landmarks"].shape) if "landmarks" in data else None,
        "expected_from": {"tensorflow": tf.__version__, "keras": keras.__version__,
                          "python": platform.python_version()},
        "wheels": wheels, "wheels_for": f"CPython {WHEEL_PYTHON}, x86-64 manylinux",
    }
    manifest["size_mib"] = round(tree_mib(out) + 0.001, 3)  # bundle.json itself is well under a KiB
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    if manifest["size_mib"] > BUNDLE_LIMIT_MIB:
        raise ValueError(f"{out}: the bundle is {manifest['size_mib']:.1f} MiB, over {BUNDLE_LIMIT_MIB} MiB "
                         "(the device takes 64 MiB with the repository); pass a smaller --clips")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m age_estimation.bench.gpu_bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pipelines/default.yaml", help="pipeline YAML (its cache and runs_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--run", type=Path, help="run directory (default: the newest finished run)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"bundle folder (default {DEFAULT_OUT})")
    parser.add_argument("--clips", type=int, default=128,
                        help=f"clips to carry (fewer if the cache or the {CLIP_BUDGET_MIB:g} MiB budget says so)")
    parser.add_argument("--no-wheels", action="store_true", help="skip downloading the wheels")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    run = args.run or latest_run(cfg.runtime.runs_dir)
    manifest = write_bundle(cfg.data.cache_dir, run, args.out, clips=args.clips, with_wheels=not args.no_wheels)
    print(f"{args.out}: {manifest['clips']} clips {manifest['frames_shape']}, {manifest['size_mib']:.1f} MiB, "
          f"wheels {manifest['wheels']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
