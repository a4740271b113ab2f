"""The search itself: check the settings, make the tuner, run (or continue) it, and distribute it.

A rerun of the same ``tune.directory``/``tune.project_name`` continues the search; one started from a
different config (data, model, space) is refused. Distributed search uses Keras Tuner's chief/worker
mode: every process runs the same command with ``KERASTUNER_TUNER_ID`` (``chief`` for the oracle,
``tuner0``, ``tuner1`` ... for the workers), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``
set; the chief serves the oracle and, once every trial is done, writes the trials table and ``best.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import yaml

from age_estimation.atomic_files import write_bytes_atomic
from age_estimation.config import ConfigError, PipelineConfig, load_config, to_dict
from age_estimation.data.pipeline import build_split_datasets
from age_estimation.training.runtime import configure_runtime
from age_estimation.tuning.hypermodel import OBJECTIVE, SiamHyperModel
from age_estimation.tuning.report import TuneResult, summarize

SEARCH_CONFIG = "search_config.yaml"
# Keys that may change between runs of one search: the budget, and where the search lives.
BUDGET_KEYS = ("max_trials", "max_epochs", "executions_per_trial", "directory", "project_name")


class TuneError(ValueError):
    """The search cannot run as configured; the message names the config file and the setting."""


def check_search(cfg: PipelineConfig) -> None:
    """Reject search settings that cannot work, before any data is read."""
    tune, origin = cfg.tune, cfg.source_file or "<config>"
    checks = [
        (tune.max_trials >= 1, f"tune.max_trials must be at least 1, got {tune.max_trials}"),
        (tune.max_epochs >= 1, f"tune.max_epochs must be at least 1, got {tune.max_epochs}"),
        (tune.hyperband_factor >= 2, f"tune.hyperband_factor must be at least 2, got {tune.hyperband_factor}"),
        (tune.executions_per_trial >= 1,
         f"tune.executions_per_trial must be at least 1, got {tune.executions_per_trial}"),
        (bool(tune.directory.strip()), "tune.directory must not be empty"),
        (bool(tune.project_name.strip()) and "/" not in tune.project_name and tune.project_name not in (".", ".."),
         f"tune.project_name must be a plain folder name, got {tune.project_name!r}"),
        (not cfg.model.backbone.name,
         f"the search tunes the from-scratch CNN; model.backbone.name={cfg.model.backbone.name!r} is set"),
    ]
    for ok, message in checks:
        if not ok:
            raise TuneError(f"{origin}: {message}")


def make_tuner(cfg: PipelineConfig, hypermodel: kt.HyperModel, overwrite: bool = False) -> kt.Tuner:
    """The configured tuner (Hyperband, Bayesian optimisation or random search) minimising validation MAE."""
    tune = cfg.tune
    common = {
        "objective": kt.Objective(OBJECTIVE, direction="min"),
        "executions_per_trial": tune.executions_per_trial,
        "directory": tune.directory,
        "project_name": tune.project_name,
        "overwrite": overwrite,
        "seed": tune.seed,
    }
    if tune.algorithm == "hyperband":
        tuner = kt.Hyperband(hypermodel, max_epochs=tune.max_epochs, factor=tune.hyperband_factor, **common)
        tuner.oracle.max_trials = tune.max_trials  # Hyperband has no trial cap of its own
        return tuner
    if tune.algorithm == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=tune.max_trials, **common)
    return kt.RandomSearch(hypermodel, max_trials=tune.max_trials, **common)


def distributed_role() -> str:
    """``single`` without Keras Tuner's distribution variables, else ``chief`` or ``worker``."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def tuner_env(tuner_id: str, oracle_ip: str, oracle_port: int) -> dict[str, str]:
    """The environment variables one process of a distributed search needs."""
    return {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": oracle_ip,
            "KERASTUNER_ORACLE_PORT": str(oracle_port)}


def run_search(cfg: PipelineConfig, fresh: bool = False, verbose: int = 1) -> TuneResult:
    """Run (or continue) the search of ``cfg``; the chief or a lone process writes the summary and best YAML.

    ``fresh`` deletes the previous search of the same directory/project first (ignored on a distributed
    worker, which must never delete what the chief serves).
    """
    check_search(cfg)
    role = distributed_role()
    project_dir = Path(cfg.tune.directory) / cfg.tune.project_name
    configure_runtime(cfg.runtime)
    split = build_split_datasets(cfg)  # also the clear "dataset too small" error
    hypermodel = SiamHyperModel(cfg, split)
    overwrite = fresh and role != "worker"
    if not overwrite and role != "worker":
        check_same_search(cfg, project_dir)
    tuner = make_tuner(cfg, hypermodel, overwrite=overwrite)
    if role != "worker":
        write_bytes_atomic(project_dir / SEARCH_CONFIG, yaml.safe_dump(search_identity(cfg)).encode())
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="min", patience=cfg.train.early_stopping_patience),
        keras.callbacks.TerminateOnNaN(),
    ]
    tuner.search(epochs=cfg.tune.max_epochs, callbacks=callbacks, verbose=verbose)
    if role == "worker":
        return TuneResult(project_dir=project_dir, role=role)
    return summarize(cfg, tuner, hypermodel, project_dir, role)


def search_identity(cfg: PipelineConfig) -> dict[str, Any]:
    """The parts of ``cfg`` that define a search (everything but the budget and the location)."""
    identity = to_dict(cfg)
    for key in BUDGET_KEYS:
        identity["tune"].pop(key, None)
    return identity


def check_same_search(cfg: PipelineConfig, project_dir: Path) -> None:
    """Refuse to continue a search that was started from a different config (data, model, space).

    The recorded config is read with today's defaults, so a key added since, at its default, is no change.
    """
    path = project_dir / SEARCH_CONFIG
    if not path.is_file():
        return
    try:
        before = search_identity(load_config(path))
    except ConfigError as err:
        raise TuneError(f"{cfg.source_file}: the search in {project_dir} was started with a config this version "
                        f"does not read ({err}); rerun with --fresh to start over") from err
    changed = sorted(_diff(before, search_identity(cfg)))
    if changed:
        shown = ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")
        raise TuneError(
            f"{cfg.source_file}: the search in {project_dir} was started with a different config ({shown} "
            "changed); rerun with --fresh to start over, or set tune.project_name to keep both"
        )


def _diff(before: Any, now: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = set(before) | set(now)
        return [d for k in keys for d in _diff(before.get(k), now.get(k), f"{prefix}{k}.")]
    return [] if before == now else [prefix.rstrip(".")]
