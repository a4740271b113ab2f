"""``age-estimation tune``: a Keras Tuner search; prints the trials table and the path of the best YAML.

A rerun continues the same search (same ``tune.directory`` / ``tune.project_name``); ``--fresh`` starts
over. For a distributed search run the same command in every process with ``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` set (see the README, "Hyperparameter search").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from age_estimation.cli.common import add_config_arguments, config_or_none
from age_estimation.data.prepare import prepare_data
from age_estimation.training.runtime import progress_verbosity
from age_estimation.tuning.report import TRIALS_CSV, TRIALS_JSON, format_trials
from age_estimation.tuning.search import TuneError, check_search, distributed_role, run_search


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--max-trials", type=int, help="trial budget (overrides tune.max_trials)")
    parser.add_argument("--fresh", action="store_true", help="delete the previous search of this project first")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (search logs go to stderr)")


def run(args: argparse.Namespace) -> int:
    if args.max_trials is not None:
        args.overrides = [*args.overrides, f"tune.max_trials={args.max_trials}"]
    cfg = config_or_none(args)
    if cfg is None:
        return 2
    try:
        check_search(cfg)
    except TuneError as err:
        print(f"error: {err}")
        return 2
    logs = sys.stderr if args.json else sys.stdout
    try:
        with contextlib.redirect_stdout(logs):
            if distributed_role() == "single":
                prepare_data(cfg, progress=not args.json)
            result = run_search(cfg, fresh=args.fresh, verbose=0 if args.json else progress_verbosity("auto"))
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}")
        return 1
    if args.json:
        print(json.dumps({"role": result.role, "project_dir": str(result.project_dir), "trials": result.trials,
                          "best": result.best, "best_config": str(result.best_config or "")}))
        return 0
    if result.role == "worker":
        print(f"tuner worker finished; the chief writes the summary in {result.project_dir}")
        return 0
    print()
    print(format_trials(result.trials))
    print(f"trials table: {result.project_dir / TRIALS_CSV} (and {TRIALS_JSON})")
    if result.best_config is None:
        print("error: no trial finished with a score; see the trial logs in the project directory")
        return 1
    print(f"best trial {result.best['trial_id']}: val MAE {result.best['score']:.3f}")
    print(f"best config: {result.best_config}")
    return 0
