"""Keras Tuner search over SIAM's architecture and training settings, resumable and distributable.

The search space is one ``build(hp)`` that maps each choice onto the same typed ``PipelineConfig`` that
``build_siam`` and ``train`` read, so a tuned run and a hand-written one share one code path, and the best
trial is written back as a pipeline YAML (``<tune.directory>/<tune.project_name>/best.yaml``).

The space is scaled from the base config (so a tiny CI config searches tiny models):

===========================  ==========================================================================
hyperparameter               values
===========================  ==========================================================================
conv_depth                   len(conv_filters) - 1 .. + 1, limited so the last map is at least 2x2
conv_width                   conv_filters[0] x (0.5, 1, 2); block i gets width * (i + 1) filters
attention_block_d<depth>     0 .. depth - 1 (a block index valid for the chosen depth)
attention_normalization      softmax | sigmoid
attention_mode               residual | plain
rnn / rnn_units              lstm | gru / rnn_units x (0.5, 1, 2)
dropout                      0.0 .. 0.5, step 0.1
learning_rate                learning_rate / 10 .. x 3, log scale
batch_size                   batch_size x (0.5, 1, 2) (applied in ``HyperModel.fit``)
===========================  ==========================================================================

Distributed search uses Keras Tuner's chief/worker mode: every process runs the same command with
``KERASTUNER_TUNER_ID`` (``chief`` for the oracle, ``tuner0``, ``tuner1`` ... for the workers),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` set; the chief serves the oracle and, once every
trial is done, writes the trials table and ``best.yaml``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import yaml

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import PipelineConfig, to_dict
from age_estimation.data.cache import read_index
from age_estimation.data.pipeline import SplitData, build_dataset, build_split_datasets, steps_per_epoch
from age_estimation.models.siam.model import build_siam
from age_estimation.training.callbacks import weight_averaging_callbacks
from age_estimation.training.optim import make_loss, make_optimizer
from age_estimation.training.runtime import configure_runtime
from age_estimation.training.task import age_prior, age_targets, age_view, crop_size_of

OBJECTIVE = "val_age_mae"
BEST_CONFIG = "best.yaml"
SEARCH_CONFIG = "search_config.yaml"
TRIALS_JSON, TRIALS_CSV = "trials.json", "trials.csv"
SCALES = (0.5, 1.0, 2.0)
# Keras Tuner's own bookkeeping values in a trial's hyperparameters (Hyperband).
TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")
# Keys that may change between runs of one search: the budget, and where the search lives.
BUDGET_KEYS = ("max_trials", "max_epochs", "executions_per_trial", "directory", "project_name")


class TuneError(ValueError):
    """The search cannot run as configured; the message names the config file and the setting."""


@dataclass
class SearchSpace:
    """The choices of one search, derived from the base config by :func:`search_space`."""

    depths: list[int]
    widths: list[int]
    rnn_units: list[int]
    batch_sizes: list[int]
    learning_rate: tuple[float, float]
    dropout: tuple[float, float, float] = (0.0, 0.5, 0.1)
    normalizations: list[str] = field(default_factory=lambda: ["softmax", "sigmoid"])
    attention_modes: list[str] = field(default_factory=lambda: ["residual", "plain"])
    rnns: list[str] = field(default_factory=lambda: ["lstm", "gru"])
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class TuneResult:
    """What a search left behind (on a distributed worker only ``role`` and ``project_dir`` are set)."""

    project_dir: Path
    role: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_config: Path | None = None


def search_space(cfg: PipelineConfig, crop_size: int) -> SearchSpace:
    """The search space scaled from ``cfg`` (widths, units, batch and rate around the base values)."""
    model, n = cfg.model, len(cfg.model.conv_filters)
    max_depth = max(1, int(math.log2(crop_size)) - 1)  # the last pooled map stays at least 2x2
    space = SearchSpace(
        depths=sorted({d for d in (n - 1, n, n + 1) if 1 <= d <= max_depth} or {min(n, max_depth)}),
        widths=_scaled(model.conv_filters[0], minimum=4),
        rnn_units=_scaled(model.rnn_units, minimum=4),
        batch_sizes=_scaled(cfg.data.batch_size, minimum=1),
        learning_rate=(cfg.train.learning_rate / 10, cfg.train.learning_rate * 3),
    )
    low, high, step = space.dropout
    # The first point of the space (Keras Tuner's defaults) is the base config itself, where it lies inside.
    space.defaults = {
        "conv_depth": n if n in space.depths else space.depths[0],
        "conv_width": model.conv_filters[0] if model.conv_filters[0] in space.widths else space.widths[0],
        "attention_after_block": model.attention_after_block,
        "attention_normalization": model.attention_normalization,
        "attention_mode": model.attention_mode,
        "rnn": model.rnn,
        "rnn_units": model.rnn_units if model.rnn_units in space.rnn_units else space.rnn_units[0],
        "dropout": min(high, max(low, round(model.dropout / step) * step)),
        "learning_rate": cfg.train.learning_rate,
        "batch_size": cfg.data.batch_size if cfg.data.batch_size in space.batch_sizes else space.batch_sizes[0],
    }
    return space


def declare(hp: kt.HyperParameters, space: SearchSpace) -> dict[str, Any]:
    """Declare every hyperparameter of ``space`` on ``hp`` and return the values of this trial."""
    base = space.defaults
    depth = hp.Choice("conv_depth", space.depths, default=base.get("conv_depth"))
    values: dict[str, Any] = {"conv_depth": depth}
    values["conv_width"] = hp.Choice("conv_width", space.widths, default=base.get("conv_width"))
    for option in space.depths:
        with hp.conditional_scope("conv_depth", [option]):
            default = min(base.get("attention_after_block", 0), option - 1)
            block = hp.Int(f"attention_block_d{option}", 0, option - 1, default=default)
        if option == depth:
            values["attention_after_block"] = block
    for name, choices in (("attention_normalization", space.normalizations),
                          ("attention_mode", space.attention_modes), ("rnn", space.rnns),
                          ("rnn_units", space.rnn_units), ("batch_size", space.batch_sizes)):
        values[name] = hp.Choice(name, choices, default=base.get(name))
    low, high, step = space.dropout
    values["dropout"] = hp.Float("dropout", low, high, step=step, default=base.get("dropout"))
    low, high = space.learning_rate
    values["learning_rate"] = hp.Float("learning_rate", low, high, sampling="log", default=base.get("learning_rate"))
    return values


def apply_values(cfg: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """A copy of ``cfg`` with one trial's values in their config keys (the config ``build_siam`` reads)."""
    width, depth = int(values["conv_width"]), int(values["conv_depth"])
    model = dataclasses.replace(
        cfg.model,
        conv_filters=[width * (i + 1) for i in range(depth)],
        attention_after_block=int(values["attention_after_block"]),
        attention_normalization=values["attention_normalization"],
        attention_mode=values["attention_mode"],
        rnn=values["rnn"],
        rnn_units=int(values["rnn_units"]),
        dropout=round(float(values["dropout"]), 4),
    )
    data = dataclasses.replace(cfg.data, batch_size=int(values["batch_size"]))
    train = dataclasses.replace(cfg.train, learning_rate=float(values["learning_rate"]))
    return dataclasses.replace(cfg, model=model, data=data, train=train)


class SiamHyperModel(kt.HyperModel):
    """SIAM as a Keras Tuner HyperModel: ``build`` compiles the age view, ``fit`` batches with the trial's size."""

    def __init__(self, cfg: PipelineConfig, split: SplitData):
        super().__init__(name="siam")
        index = read_index(split.cache_dir)
        self.cfg, self.split = cfg, split
        self.crop_size = crop_size_of(index)
        self.prior = age_prior(np.array([index["videos"][v]["age"] for v in split.train_ids], float))
        self.space = search_space(cfg, self.crop_size)

    def trial_config(self, hp: kt.HyperParameters) -> PipelineConfig:
        """The pipeline config of the trial ``hp`` describes."""
        return apply_values(self.cfg, declare(hp, self.space))

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        trial = self.trial_config(hp)
        # The schedule spans the search's epoch budget, not the final training's.
        schedule = dataclasses.replace(trial.train, epochs=self.cfg.tune.max_epochs)
        model = age_view(build_siam(trial.model, crop_size=self.crop_size, age_prior=self.prior))
        model.compile(
            optimizer=make_optimizer(schedule, steps_per_epoch(len(self.split.train_ids), trial.data.batch_size)),
            loss=make_loss(trial.train),
            metrics=[keras.metrics.MeanAbsoluteError(name="age_mae")],
        )
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        data = self.trial_config(hp).data
        seed = self.cfg.runtime.seed if (self.cfg.runtime.deterministic or self.cfg.data.deterministic) else None
        cache, split = self.split.cache_dir, self.split
        train = build_dataset(cache, split.train_ids, data, training=True, seed=seed)
        val = build_dataset(cache, split.val_ids, data, training=False)
        kwargs.setdefault("shuffle", False)  # the tf.data pipeline shuffles
        # Score the weights a trained run would keep (EMA, recalibrated BN), as train's checkpoint does.
        averaging = weight_averaging_callbacks(self.cfg.train, age_targets(train))
        kwargs["callbacks"] = averaging + list(kwargs.get("callbacks") or [])
        return model.fit(age_targets(train), validation_data=age_targets(val), **kwargs)


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
        _check_same_search(cfg, project_dir)
    tuner = make_tuner(cfg, hypermodel, overwrite=overwrite)
    if role != "worker":
        write_bytes_atomic(project_dir / SEARCH_CONFIG, yaml.safe_dump(_search_identity(cfg)).encode())
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=OBJECTIVE, mode="min", patience=cfg.train.early_stopping_patience),
        keras.callbacks.TerminateOnNaN(),
    ]
    tuner.search(epochs=cfg.tune.max_epochs, callbacks=callbacks, verbose=verbose)
    if role == "worker":
        return TuneResult(project_dir=project_dir, role=role)
    return summarize(cfg, tuner, hypermodel, project_dir, role)


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
    """One row per trial: id, status, score, epochs trained (Hyperband) and its hyperparameters."""
    rows = []
    for trial_id, trial in sorted(oracle.trials.items()):
        values = dict(trial.hyperparameters.values)
        score = trial.score
        rows.append({
            "trial_id": trial_id,
            "status": str(trial.status),
            "score": float(score) if score is not None else None,
            "epochs": values.get("tuner/epochs"),
            "hyperparameters": {k: v for k, v in values.items() if k not in TUNER_KEYS},
        })
    return rows


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """The trials table as CSV text, one hyperparameter per column."""
    names = sorted({name for row in rows for name in row["hyperparameters"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial_id", "status", "score", "epochs", *names])
    for row in rows:
        hps = row["hyperparameters"]
        writer.writerow([row["trial_id"], row["status"], "" if row["score"] is None else f"{row['score']:.4f}",
                         row["epochs"] or "", *[_short(hps.get(name, "")) for name in names]])
    return out.getvalue()


def format_trials(rows: list[dict[str, Any]]) -> str:
    """The trials table for a terminal, best score first, failed trials last."""
    ordered = sorted(rows, key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0.0))
    names = sorted({name for row in rows for name in row["hyperparameters"]})
    header = ["trial", "status", OBJECTIVE, "epochs", *names]
    body = [
        [row["trial_id"], row["status"], "-" if row["score"] is None else f"{row['score']:.3f}",
         str(row["epochs"] or "-"), *[_short(row["hyperparameters"].get(name, "")) for name in names]]
        for row in ordered
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in [header, *body]]
    return "\n".join(lines)


def _search_identity(cfg: PipelineConfig) -> dict[str, Any]:
    """The parts of ``cfg`` that define a search (everything but the budget and the location)."""
    identity = to_dict(cfg)
    for key in BUDGET_KEYS:
        identity["tune"].pop(key, None)
    return identity


def _check_same_search(cfg: PipelineConfig, project_dir: Path) -> None:
    """Refuse to continue a search that was started from a different config (data, model, space)."""
    path = project_dir / SEARCH_CONFIG
    if not path.is_file():
        return
    before = yaml.safe_load(path.read_text())
    now = _search_identity(cfg)
    changed = sorted(_diff(before, now))
    if changed:
        shown = ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")
        raise TuneError(
            f"{cfg.source_file}: the search in {project_dir} was started with a different config ({shown} "
            "changed); rerun with --fresh to start over, or set tune.project_name to keep both"
        )


def _diff(before: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(now, dict):
        keys = set(before) | set(now)
        return [d for k in keys for d in _diff(before.get(k), now.get(k), f"{prefix}{k}.")]
    return [] if before == now else [prefix.rstrip(".")]


def _scaled(base: int, minimum: int) -> list[int]:
    return sorted({max(minimum, round(base * scale)) for scale in SCALES})


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
