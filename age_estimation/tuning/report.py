"""What a search leaves behind: the trials table (JSON, CSV, terminal) and the best trial as a pipeline YAML."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras_tuner as kt
import yaml

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import PipelineConfig, to_dict
from age_estimation.tuning.hypermodel import EPOCHS_METRIC, OBJECTIVE, SiamHyperModel

BEST_CONFIG = "best.yaml"
TRIALS_JSON, TRIALS_CSV = "trials.json", "trials.csv"
# Keras Tuner's own bookkeeping values in a trial's hyperparameters (Hyperband).
TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


@dataclass
class TuneResult:
    """What a search left behind (on a distributed worker only ``role`` and ``project_dir`` are set)."""

    project_dir: Path
    role: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_config: Path | None = None


def summarize(
    cfg: PipelineConfig, tuner: kt.Tuner, hypermodel: SiamHyperModel, project_dir: Path, role: str = "single"
) -> TuneResult:
    """Write the trials table (JSON, CSV) and the best trial's pipeline YAML into ``project_dir``."""
    rows = trial_rows(tuner.oracle)
    write_json_atomic(project_dir / TRIALS_JSON, rows)
    write_bytes_atomic(project_dir / TRIALS_CSV, trials_csv(rows).encode())
    result = TuneResult(project_dir=project_dir, role=role, trials=rows)
    done = [row for row in rows if row["score"] is not None and math.isfinite(row["score"])]
    if not done:
        return result
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best_cfg = hypermodel.trial_config(best_trial.hyperparameters.copy())
    best_cfg.name = f"{cfg.name}_tuned"
    result.best = next(row for row in rows if row["trial_id"] == best_trial.trial_id)
    result.best_config = project_dir / BEST_CONFIG
    header = (f"# Best trial {best_trial.trial_id} of the Keras Tuner search {project_dir} "
              f"({cfg.tune.algorithm}): {OBJECTIVE} {best_trial.score:.4f}\n"
              f"# Base config: {cfg.source_file}. Train it with: make train CONFIG={result.best_config}\n")
    write_bytes_atomic(result.best_config, (header + yaml.safe_dump(to_dict(best_cfg), sort_keys=False)).encode())
    return result


def trial_rows(oracle: kt.Oracle) -> list[dict[str, Any]]:
    """One row per trial: id, status, score, the epochs it trained and its hyperparameters."""
    rows = []
    for trial_id, trial in sorted(oracle.trials.items()):
        values = dict(trial.hyperparameters.values)
        score = trial.score
        rows.append({
            "trial_id": trial_id,
            "status": str(trial.status),
            "score": float(score) if score is not None else None,
            "epochs": trial_epochs(trial),
            "hyperparameters": {k: v for k, v in values.items() if k not in TUNER_KEYS},
        })
    return rows


def trial_epochs(trial: kt.engine.trial.Trial) -> int | float | None:
    """The epochs ``trial`` ran (its mean over executions), None if it reported none (failed early)."""
    if not trial.metrics.exists(EPOCHS_METRIC):
        return None
    epochs = float(trial.metrics.get_last_value(EPOCHS_METRIC))
    return int(epochs) if epochs.is_integer() else round(epochs, 2)


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """The trials table as CSV text, one hyperparameter per column."""
    names = sorted({name for row in rows for name in row["hyperparameters"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial_id", "status", "score", "epochs", *names])
    for row in rows:
        hps = row["hyperparameters"]
        writer.writerow([row["trial_id"], row["status"], "" if row["score"] is None else f"{row['score']:.4f}",
                         _blank_if_none(row["epochs"]), *[_short(hps.get(name, "")) for name in names]])
    return out.getvalue()


def format_trials(rows: list[dict[str, Any]]) -> str:
    """The trials table for a terminal, best score first, failed trials last."""
    ordered = sorted(rows, key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0.0))
    names = sorted({name for row in rows for name in row["hyperparameters"]})
    header = ["trial", "status", OBJECTIVE, "epochs", *names]
    body = [
        [row["trial_id"], row["status"], "-" if row["score"] is None else f"{row['score']:.3f}",
         _blank_if_none(row["epochs"]) or "-", *[_short(row["hyperparameters"].get(name, "")) for name in names]]
        for row in ordered
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in [header, *body]]
    return "\n".join(lines)


def _blank_if_none(value: Any) -> str:
    return "" if value is None else str(value)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
