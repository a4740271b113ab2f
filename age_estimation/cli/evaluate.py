"""``age-estimation evaluate``: subject-independent k-fold cross-validation of a pipeline config."""

from __future__ import annotations

import argparse
import json

from age_estimation.cli.common import add_config_arguments, output_dir, prepared_config


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--folds", type=int, nargs="*", help="only these fold numbers (default: all)")
    parser.add_argument("--out", help="output folder (default: <runs_dir>/<name>-cv-<time>)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = prepared_config(args)
    if cfg is None:
        return 2
    # Imported here so that `evaluate --help` does not load TensorFlow.
    from age_estimation.experiments.crossval import cross_validate

    out = output_dir(args, cfg, "cv")
    try:
        summary = cross_validate(cfg, out, args.folds)
    except ValueError as err:
        print(f"error: {err}")
        return 1
    if args.json:
        print(json.dumps(summary))
        return 0
    pooled = summary["pooled_val"]
    print(f"\n{len(summary['folds'])}-fold cross-validation ({out}):")
    print(f"  validation MAE {summary['val_mae_mean']:.2f} ± {summary['val_mae_std']:.2f} years, "
          f"CS(5) {pooled['cs5']:.2f}")
    print(f"  held-out MAE   {summary['heldout_mae_mean']:.2f} ± {summary['heldout_mae_std']:.2f} years")
    for group, values in pooled["age_groups"].items():
        print(f"  {group:>6}: MAE {values['mae']:.2f} (n={values['count']})")
    return 0
