"""A tiny trained run that reads the landmark stream, a prepared cache holding the stream,
and that run exported once per test session (SavedModel, the four TFLite variants, the parity report).

``tests/tiny_run.py`` trains the run and writes the cache; this module names their ``model.dynamics`` form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.tiny_run import make_tiny_cache, make_tiny_run, write_run_facts

DYNAMICS_OVERRIDES = ["model.conv_filters=[8, 16]", "model.dynamics=true", "model.dynamics_units=8"]


def make_dynamics_run(root: Path, overrides: list[str] | None = None, name: str = "dynamics-20250101-000000") -> Path:
    """Train a tiny SIAM that reads the landmark stream briefly on noise and save it as a run directory."""
    return make_tiny_run(root, DYNAMICS_OVERRIDES + list(overrides or []), name)


def make_landmark_cache(cache_dir: Path, subjects: int = 6, frames: int = 10, seed: int = 2) -> dict[str, float]:
    """Write a prepared cache of noise clips with a landmark stream (cache format 3); returns id -> age."""
    return make_tiny_cache(cache_dir, subjects, frames, seed, landmarks=True)


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
