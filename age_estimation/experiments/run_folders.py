"""Run folders as training left them: one finished run (``RunRecord``) and the runs of a command-line folder
(``Study``). A run's config is read as plain YAML, not through today's config class, so a run of an older
version, with keys since removed, still reads.

A finished run has ``metrics.json`` and the held-out predictions CSV (``training.run.finish`` writes both);
an ablation run also has ``result.json`` (its attention ratios, oracle MAE and cue usage) and lives in
``<ablation folder>/<variant>-fold<i>/`` (``experiments.ablation.variant_run_dir``).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from age_estimation.experiments.ablation import ABLATION_VARIANTS
from age_estimation.runs import CONFIG_NAME, METRICS_NAME, PREDICTIONS_NAME

ABLATION_RESULT = "result.json"  # what experiments.ablation records in each finished run folder
RUN_FOLDER = re.compile(r"^(?P<variant>.+)-fold(?P<fold>\d+)$")  # experiments.ablation.variant_run_dir


@dataclass(frozen=True)
class RunRecord:
    """One finished training run as its folder recorded it."""

    path: Path
    variant: str
    fold: int | None
    metrics: dict[str, Any]
    result: dict[str, Any]
    config: dict[str, Any]

    @property
    def mae(self) -> float:
        """Held-out MAE in years."""
        return float(self.metrics["heldout"]["mae"])

    def figure(self, key: str) -> float | None:
        """An attention figure (``temporal_ratio``, ``spatial_ratio``) from the ablation's record or the
        run's own metrics (``make train`` keeps them under ``attention``)."""
        value = self.result.get(key, (self.metrics.get("attention") or {}).get(key))
        return None if value is None else float(value)

    @property
    def oracle_mae(self) -> float | None:
        """The oracle's MAE on this run's held-out videos (synthetic data), else None."""
        value = self.result.get("oracle_mae", (self.metrics.get("attention") or {}).get("heldout_oracle_mae"))
        return None if value is None else float(value)

    @property
    def cue_usage(self) -> dict[str, dict[str, float | None]] | None:
        """Per generator cue, the model's and the oracle's error correlation and the slope share (synthetic
        data; a record may lack the slope share)."""
        return self.result.get("cue_usage") or self.metrics.get("cue_usage")

    @property
    def interval(self) -> dict[str, Any] | None:
        """The held-out report of the calibrated interval (coverage, empirical coverage, mean width)."""
        return self.metrics.get("interval")

    def setting(self, section: str, key: str, default: Any = None) -> Any:
        """A key of the run's recorded config (read as plain YAML, so a config of an older version reads)."""
        return (self.config.get(section) or {}).get(key, default)

    @property
    def training_subjects(self) -> int | None:
        """How many subjects the run trained on."""
        return (self.metrics.get("counts") or {}).get("subjects_train")

    @property
    def written(self) -> str:
        """The date its ``metrics.json`` was written (YYYY-MM-DD)."""
        stamp = (self.path / METRICS_NAME).stat().st_mtime
        return datetime.date.fromtimestamp(stamp).isoformat()


@dataclass
class Study:
    """The runs read from one command-line folder: an ablation folder, or a single run (``single``)."""

    path: Path
    runs: list[RunRecord]
    single: bool = False
    unfinished: list[Path] = field(default_factory=list)

    def by_variant(self) -> dict[str, list[RunRecord]]:
        """Variant -> its runs by fold, the ablation's variants first in the ablation's order."""
        return group_by_variant(self.runs)


def compared_study(studies: Sequence[Study]) -> Study:
    """One study of several ablation folders, each variant labelled ``variant (folder name)``: the folders'
    models (another backbone, another setting) side by side, paired on the folds they share."""
    runs = [replace(run, variant=f"{run.variant} ({study.path.name})")
            for study in studies for run in study.runs]
    unfinished = [path for study in studies for path in study.unfinished]
    return Study(Path(" + ".join(str(study.path) for study in studies)), runs, unfinished=unfinished)


def group_by_variant(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Variant -> its runs sorted by fold; the ablation's entries first in their order, then the others."""
    order = list(ABLATION_VARIANTS)
    names = sorted({r.variant for r in runs}, key=lambda v: (order.index(v) if v in order else len(order), v))
    return {v: sorted((r for r in runs if r.variant == v), key=lambda r: (r.fold is None, r.fold or 0))
            for v in names}


def variant_of(config: dict[str, Any]) -> str:
    """The ablation entry whose model keys the config has (e.g. ``siam_dynamics``), else ``model.variant``."""
    model = config.get("model") or {}
    for name, keys in ABLATION_VARIANTS.items():
        if all(model.get(key, False if key == "dynamics" else None) == value for key, value in keys.items()):
            return name
    return str(model.get("variant", "unknown"))


def read_run(path: Path, variant: str | None = None, fold: int | None = None) -> RunRecord | None:
    """The run in ``path``, or None when it has not finished (no metrics or no held-out predictions)."""
    if not (path / METRICS_NAME).is_file() or not (path / PREDICTIONS_NAME).is_file():
        return None
    metrics = read_json(path / METRICS_NAME)
    result = read_json(path / ABLATION_RESULT) if (path / ABLATION_RESULT).is_file() else {}
    config_path = path / CONFIG_NAME
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    if fold is None:
        heldout_fold = (config.get("data") or {}).get("heldout_fold", -1)
        fold = int(heldout_fold) if heldout_fold is not None and int(heldout_fold) >= 0 else None
    variant = variant or result.get("variant") or variant_of(config)
    return RunRecord(path, variant, fold, metrics, result, config)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file the run wrote; a damaged one is an error that names it."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def read_study(path: str | Path) -> Study:
    """The runs of an ablation folder (``<variant>-fold<i>/``) or of one run folder; else a clear error."""
    path = Path(path)
    if (path / METRICS_NAME).is_file():
        run = read_run(path)
        if run is None:
            raise ValueError(f"{path}: the run has no {PREDICTIONS_NAME}; it has not finished")
        return Study(path, [run], single=True)
    folders = sorted(p for p in path.glob("*-fold*") if p.is_dir() and RUN_FOLDER.match(p.name))
    if not folders:
        raise ValueError(f"{path}: neither a run folder ({METRICS_NAME}) nor an ablation folder "
                         "(<variant>-fold<i>/ run folders)")
    runs, unfinished = [], []
    for folder in folders:
        match = RUN_FOLDER.match(folder.name)
        run = read_run(folder, match["variant"], int(match["fold"]))
        if run is None:
            unfinished.append(folder)
        else:
            runs.append(run)
    if not runs:
        raise ValueError(f"{path}: no finished run yet ({len(unfinished)} run folders without {METRICS_NAME} "
                         f"and {PREDICTIONS_NAME})")
    return Study(path, runs, unfinished=unfinished)


def unique_folds(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The runs with one run per (variant, fold): the first folder named wins over a later copy."""
    seen, kept = set(), []
    for run in runs:
        key = (run.variant, run.fold)
        if key not in seen:
            seen.add(key)
            kept.append(run)
    return kept


def unique_paths(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Each run once, however many command-line folders named it."""
    seen, kept = set(), []
    for run in runs:
        key = run.path.resolve()
        if key not in seen:
            seen.add(key)
            kept.append(run)
    return kept
