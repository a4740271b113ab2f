"""A tiny trained run directory, random clips and landmarks, and a prepared cache, shared by the export and
inference tests. A run or cache with the landmark stream (``model.dynamics``) is made by the same functions."""

from __future__ import annotations

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
    """Train a tiny SIAM briefly on random clips (and random landmarks when the config reads them) and save
    it as a run dir (model.keras + config.yaml)."""
    import keras

    from age_estimation.config import load_config, save_config
    from age_estimation.models.siam.model import build_siam

    cfg = load_config(
        None, TINY_OVERRIDES + list(overrides or []) + [f"export.directory={root / 'exported'}"]
    )
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = {"frames": rng.integers(0, 256, (8, CLIP, CROP, CROP, 3), dtype=np.uint8),
              "mask": np.ones((8, CLIP), np.float32)}
    ages = rng.uniform(10, 70, (8, 1)).astype("float32")
    if cfg.model.dynamics:
        inputs["landmarks"], inputs["landmark_mask"] = random_landmarks(8, seed=0)
    model = build_siam(cfg.model, crop_size=CROP, age_prior=(33.0, 12.0))  # not the default prior
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"age": "mse"})
    model.fit({key: inputs[key] for key in model.input}, {"age": ages}, epochs=3, verbose=0)
    run = root / "runs" / name
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    save_config(cfg, run / "config.yaml")
    return run


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
