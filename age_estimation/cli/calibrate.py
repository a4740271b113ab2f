"""``age-estimation calibrate``: (re)calibrate a trained run's interval widening on atypical input.

``make train`` does this after training (``inference.atypicality``); this command does it again for a run
trained before, one whose calibration was interrupted, or with other settings (``--set
inference.atypicality.videos=80``). It rewrites the run's ``interval.json``; the run's exports keep the
interval they were written with until it is exported again. Exit 0 when calibrated, 1 when it could not
be (the reason on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="run directory (default: the newest under runs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the run's config, e.g. --set inference.atypicality.videos=80")


def run(args: argparse.Namespace) -> int:
    from age_estimation.config import ConfigError, load_config
    from age_estimation.runs import CONFIG_NAME, latest_run

    try:
        run_dir = Path(args.run) if args.run else latest_run("runs")
        cfg = load_config(run_dir / CONFIG_NAME, args.overrides)
    except (FileNotFoundError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cfg.inference.atypicality.videos < 1:
        print("error: inference.atypicality.videos is 0: nothing to calibrate", file=sys.stderr)
        return 2
    # Imported here so that `calibrate --help` does not load TensorFlow.
    from age_estimation.cli.train import atypicality_line
    from age_estimation.evaluation.input_calibration import calibrate_run

    try:
        widening = calibrate_run(cfg, run_dir, progress=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {run_dir}: {err}", file=sys.stderr)
        return 1
    if widening is None:
        print(f"error: {run_dir}: the run has no interval.json to widen (not a finished training run?)",
              file=sys.stderr)
        return 1
    print(atypicality_line(widening))
    print(f"wrote {run_dir / 'interval.json'}; export the run again (age-estimation export --run {run_dir}) "
          "for its SavedModel and TFLite files to carry it")
    return 0
