"""A tiny trained run directory, random clips and landmarks, and a prepared cache, shared by the export and
inference tests. A run or cache with the landmark stream (``model.dynamics``) is made by the same functions."""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.video.landmark_set import LANDMARK_COUNT

CROP = 32
CLIP = 8
TINY_OVERRIDES = [
    "model.dynamics=false",  # pixels only; dynamics_run.py's overrides add the landmark stream
    "model.conv_filters=[8, 12]",
    "model.attention_after_block=1",
    "model.attention_projection=4",
    "model.embedding_units=16",
    "model.rnn_units=12",
    "model.temporal_attention_units=6",
    "model.dropout=0.0",
    f"align.crop_size={CROP}",
    f"data.clip_length={CLIP}",
    f"inference.window_span={CLIP}",
    "export.representative_clips=4",
]


def make_tiny_run(root: Path, overrides: list[str] | None = None, name: str = "tiny-20250101-000000") -> Path:
    """A run dir (model.keras + config.yaml) under ``root/runs/name`` holding a tiny SIAM trained briefly on
    random clips (and random landmarks when the config reads them).

    Each model config is trained once per test session (``_trained_model``); another call with the same
    ``model.*`` settings gets a copy of that model.keras with its own config.yaml, so ``overrides`` outside
    ``model.*`` (the cache, the export folder, inference settings) cost no training.
    """
    from age_estimation.config import load_config, save_config

    cfg = load_config(
        None, TINY_OVERRIDES + list(overrides or []) + [f"export.directory={root / 'exported'}"]
    )
    run = root / "runs" / name
    run.mkdir(parents=True)
    shutil.copyfile(_trained_model(cfg), run / "model.keras")
    save_config(cfg, run / "config.yaml")
    return run


# model config (as JSON) -> the model.keras trained for it (in _models_folder())
_TRAINED: dict[str, Path] = {}


def _trained_model(cfg: Any) -> Path:
    """The model.keras of ``cfg.model`` trained on noise: trained on the first call, read-only afterwards."""
    key = json.dumps(dataclasses.asdict(cfg.model), sort_keys=True, default=str)
    if key not in _TRAINED:
        import keras

        from age_estimation.models.siam.model import build_siam

        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        inputs = {"frames": rng.integers(0, 256, (8, CLIP, CROP, CROP, 3), dtype=np.uint8),
                  "mask": np.ones((8, CLIP), np.float32)}
        ages = rng.uniform(10, 70, (8, 1)).astype("float32")
        if cfg.model.dynamics:
            inputs["landmarks"], inputs["landmark_mask"] = random_landmarks(8, seed=0)
        model = build_siam(cfg.model, crop_size=CROP, age_prior=(33.0, 12.0))  # not the default prior
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"age": "mse"})
        model.fit({name: inputs[name] for name in model.input}, {"age": ages}, epochs=3, verbose=0)
        path = _models_folder() / f"model{len(_TRAINED)}.keras"
        model.save(path)
        _TRAINED[key] = path
    return _TRAINED[key]


@functools.cache
def _models_folder() -> Path:
    """A temporary folder for the session's trained models, removed when the session ends."""
    folder = Path(tempfile.mkdtemp(prefix="tiny-runs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def load_tiny_run(run: Path) -> tuple[Any, Any]:
    """The (config, Siam model) of a run directory written by ``make_tiny_run``."""
    from age_estimation.config import load_config
    from age_estimation.models.siam.model import load_siam

    return load_config(run / "config.yaml"), load_siam(run / "model.keras")


def random_clips(count: int, steps: int = CLIP, seed: int = 1) -> np.ndarray:
    """(count, steps, CROP, CROP, 3) uint8 noise clips."""
    return np.random.default_rng(seed).integers(0, 256, (count, steps, CROP, CROP, 3), dtype=np.uint8)


def random_landmarks(count: int, steps: int = CLIP, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(count, steps, K, 2) float32 landmarks (one face layout for every seed, moving a little) and a
    (count, steps) found mask with about one frame in eight missed (its landmarks zero, as the aligner gives them)."""
    layout = np.random.default_rng(0).normal(0.0, 0.6, (1, 1, LANDMARK_COUNT, 2))
    rng = np.random.default_rng(seed)
    points = layout + rng.normal(0.0, 0.05, (count, steps, LANDMARK_COUNT, 2))
    found = (rng.random((count, steps)) > 0.125).astype(np.float32)
    return (points * found[..., None, None]).astype(np.float32), found


def make_tiny_cache(
    cache_dir: Path, subjects: int = 6, frames: int = 10, seed: int = 2, landmarks: bool = False
) -> dict[str, float]:
    """Write a prepared cache (the data/cache.py contract) of random aligned clips, with a random landmark
    stream when ``landmarks`` (cache format 3); returns id -> age."""
    from age_estimation.atomic_files import write_json_atomic
    from age_estimation.config import AlignConfig
    from age_estimation.data.cache import empty_index, encode_clip, write_clip_shard

    rng = np.random.default_rng(seed)
    index = empty_index(AlignConfig(crop_size=CROP, landmarks=landmarks))
    ages = {}
    for i in range(subjects):
        vid, age = f"clip{i:02d}-0000000{i}", float(rng.uniform(10, 70))
        clip = rng.integers(0, 256, (frames, CROP, CROP, 3), dtype=np.uint8)
        shard = f"shards/{vid}.tfrecord"
        stream, entry = {}, {}
        if landmarks:
            points, found = random_landmarks(1, frames, seed=seed + i)
            stream = {"landmarks": points[0], "landmark_found": found[0] > 0}
            entry = {"landmark_frames": int(found.sum())}
        records = encode_clip(vid, clip, np.ones(frames), np.arange(frames), age, f"s{i}", **stream)
        write_clip_shard(cache_dir / shard, records)
        index["videos"][vid] = {
            "source": f"{vid}.mp4", "source_sha256": "0" * 64, "shard": shard, "frames": frames, "faces": frames,
            **entry, "age": age, "subject": f"s{i}", "label": "", "split": "",
        }
        ages[vid] = age
    write_json_atomic(cache_dir / "index.json", index)
    return ages


def write_run_facts(run: Path, source: str = "synthetic") -> tuple[Any, Any]:
    """Write the ``interval.json`` and ``model_card.json`` training leaves in a run; returns both."""
    from age_estimation.atomic_files import write_json_atomic
    from age_estimation.config import load_config
    from age_estimation.inference.interval import fit_interval, interval_report
    from age_estimation.inference.model_card import ModelCard
    from age_estimation.inference.spec import INTERVAL_NAME, MODEL_CARD_NAME

    rng = np.random.default_rng(4)
    true = rng.uniform(10, 70, 60)
    pred = true + rng.normal(0, 1 + 0.1 * (true - 10))
    interval = fit_interval(true, pred, coverage=0.9)
    cfg = load_config(run / "config.yaml", [f"data.source={source}"])
    counts = {"train": {"videos": 40, "subjects": 12}, "val": {"videos": 10, "subjects": 3},
              "heldout": {"videos": 10, "subjects": 3}}
    card = ModelCard.from_run(cfg, counts, 4.25, interval_report(interval, true, pred), "2025-01-01")
    write_json_atomic(run / INTERVAL_NAME, interval.to_json())
    write_json_atomic(run / MODEL_CARD_NAME, card.to_json())
    return interval, card


@dataclasses.dataclass(frozen=True)
class TinyExport:
    """A tiny pixel-only run with its interval and model card, exported as ``export_run`` exports it: the
    SavedModel version folder and the float32 TFLite file (with its sidecar), linked to the run."""

    run: Path
    cfg: Any
    model: Any
    savedmodel: Path
    tflite: Path


def make_tiny_export(root: Path) -> TinyExport:
    """``make_tiny_run`` + ``write_run_facts`` under ``root``, then ``export_run`` (float32, no report)."""
    from age_estimation.export.run import export_run

    run = make_tiny_run(root)
    write_run_facts(run)
    result = export_run(run, variants=["float32"], report=False)
    cfg, model = load_tiny_run(run)
    return TinyExport(run, cfg, model, Path(result["savedmodel"]["path"]),
                      Path(result["tflite"]["variants"]["float32"]))
