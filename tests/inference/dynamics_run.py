"""A tiny trained run that reads the landmark stream, a prepared cache holding the stream, noise landmarks,
and that run exported once per test session (SavedModel, the four TFLite variants, the parity report).

``tests/tiny_run.py`` trains and caches pixels only; these are its counterparts for ``model.dynamics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.tiny_run import CLIP, CROP, TINY_OVERRIDES, random_clips, write_run_facts

DYNAMICS_OVERRIDES = ["model.conv_filters=[8, 16]", "model.dynamics=true", "model.dynamics_units=8"]


def random_landmarks(count: int, steps: int = CLIP, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(count, steps, K, 2) float32 landmarks (one face layout for every seed, moving a little) and a
    (count, steps) found mask with about one frame in eight missed (its landmarks zero, as the aligner gives them)."""
    layout = np.random.default_rng(0).normal(0.0, 0.6, (1, 1, LANDMARK_COUNT, 2))
    rng = np.random.default_rng(seed)
    points = layout + rng.normal(0.0, 0.05, (count, steps, LANDMARK_COUNT, 2))
    found = (rng.random((count, steps)) > 0.125).astype(np.float32)
    return (points * found[..., None, None]).astype(np.float32), found


def make_dynamics_run(root: Path, overrides: list[str] | None = None, name: str = "dynamics-20250101-000000") -> Path:
    """Train a tiny SIAM that reads the landmark stream briefly on noise and save it as a run directory."""
    import keras

    from age_estimation.config import load_config, save_config
    from age_estimation.models.siam.model import build_siam

    cfg = load_config(
        None, TINY_OVERRIDES + DYNAMICS_OVERRIDES + list(overrides or []) + [f"export.directory={root / 'exported'}"]
    )
    keras.utils.set_random_seed(0)
    landmarks, found = random_landmarks(8, seed=0)
    inputs = {"frames": random_clips(8, seed=0), "mask": np.ones((8, CLIP), np.float32), "landmarks": landmarks,
              "landmark_mask": found}
    ages = np.random.default_rng(0).uniform(10, 70, (8, 1)).astype("float32")
    model = build_siam(cfg.model, crop_size=CROP, age_prior=(33.0, 12.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"age": "mse"})
    model.fit({key: inputs[key] for key in model.input}, {"age": ages}, epochs=3, verbose=0)
    run = root / "runs" / name
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    save_config(cfg, run / "config.yaml")
    return run


def make_landmark_cache(cache_dir: Path, subjects: int = 6, frames: int = 10, seed: int = 2) -> dict[str, float]:
    """Write a prepared cache of noise clips with a landmark stream (cache format 3); returns id -> age."""
    from age_estimation.atomic_files import write_json_atomic
    from age_estimation.config import AlignConfig
    from age_estimation.data.cache import empty_index, encode_clip, write_clip_shard

    rng = np.random.default_rng(seed)
    index = empty_index(AlignConfig(crop_size=CROP, landmarks=True))
    ages = {}
    for i in range(subjects):
        vid, age = f"clip{i:02d}-0000000{i}", float(rng.uniform(10, 70))
        clip = rng.integers(0, 256, (frames, CROP, CROP, 3), dtype=np.uint8)
        points, found = random_landmarks(1, frames, seed=seed + i)
        shard = f"shards/{vid}.tfrecord"
        records = encode_clip(vid, clip, np.ones(frames), np.arange(frames), age, f"s{i}",
                              landmarks=points[0], landmark_found=found[0] > 0)
        write_clip_shard(cache_dir / shard, records)
        index["videos"][vid] = {
            "source": f"{vid}.mp4", "source_sha256": "0" * 64, "shard": shard, "frames": frames, "faces": frames,
            "landmark_frames": int(found.sum()), "age": age, "subject": f"s{i}", "label": "", "split": "",
        }
        ages[vid] = age
    write_json_atomic(cache_dir / "index.json", index)
    return ages


@dataclass(frozen=True)
class DynamicsExport:
    """The shared tiny dynamics run and what ``export_run`` made of it (read it, do not change it)."""

    root: Path
    run: Path
    cfg: Any
    model: Any
    result: dict[str, Any]

    @property
    def savedmodel(self) -> Path:
        return Path(self.result["savedmodel"]["path"])

    def tflite(self, variant: str) -> Path:
        return Path(self.result["tflite"]["variants"][variant])


_SHARED: list[DynamicsExport] = []


def dynamics_export(tmp_path_factory: Any) -> DynamicsExport:
    """The tiny dynamics run with a landmark cache, its interval and model card, exported with every TFLite
    variant and the parity report: made once per session, whichever test module asks first."""
    if not _SHARED:
        from age_estimation.export.run import export_run
        from tests.tiny_run import load_tiny_run

        root = tmp_path_factory.mktemp("dynamics")
        make_landmark_cache(root / "cache")
        run = make_dynamics_run(root, [f"data.cache_dir={root / 'cache'}", "export.latency_runs=2"])
        write_run_facts(run)
        result = export_run(run, variants=["float32", "float16", "dynamic_range", "int8"])
        cfg, model = load_tiny_run(run)
        _SHARED.append(DynamicsExport(root, run, cfg, model, result))
    return _SHARED[0]
