"""Run directories: where a training run keeps its config, model, checkpoints, metrics, plots and logs.

Layout of ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>/``::

    config.yaml        the resolved pipeline config (reload with load_config)
    model.keras        the trained model (best epoch), complete once training ends
    checkpoints/       best-checkpoint weights and BackupAndRestore state
    metrics.json       held-out metrics and the training summary
    interval.json      the interval calibration (split-conformal on the validation fold)
    model_card.json    what the model was trained on and how well it did, shown by predict and exports
    heldout_predictions.csv  one row per held-out video: true and predicted age
    exports.json       where the newest export of this run went (absolute paths), written by export
    plots/             PNG figures
    logs/              TensorBoard event files and training.csv
"""

from __future__ import annotations

import time
from pathlib import Path

MODEL_NAME = "model.keras"
CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"
PREDICTIONS_NAME = "heldout_predictions.csv"
EXPORTS_NAME = "exports.json"


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Create and return a fresh, timestamped run directory under ``runs_dir``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(runs_dir) / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        path = Path(runs_dir) / f"{name}-{stamp}-{suffix}"
        suffix += 1
    for sub in ("checkpoints", "plots", "logs"):
        (path / sub).mkdir(parents=True)
    return path


def latest_run(runs_dir: str | Path = "runs") -> Path:
    """The newest run directory that holds a finished model; a clear error when there is none."""
    root = Path(runs_dir)
    finished = sorted(
        (p.parent for p in root.glob(f"**/{MODEL_NAME}")), key=lambda p: (p / MODEL_NAME).stat().st_mtime
    )
    if not finished:
        raise FileNotFoundError(f"{root}: no trained run found (no {MODEL_NAME}); run `make train` first")
    return finished[-1]
