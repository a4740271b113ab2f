"""``age-estimation ablation``: SIAM against its ablations, each trained on every fold of a subject k-fold."""

from __future__ import annotations

import argparse
import json

from age_estimation.cli.common import add_config_arguments, config_or_none, output_dir

# The names of ``experiments.ablation.ABLATION_VARIANTS``, repeated here so that `ablation --help` does not
# load TensorFlow; a test keeps the two equal.
VARIANT_NAMES = ("siam_dynamics", "siam", "no_spatial", "no_temporal", "frame_average", "dynamics_only")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--variants", nargs="+", default=list(VARIANT_NAMES), choices=VARIANT_NAMES,
                        help="ablation entries to train (default: all)")
    parser.add_argument("--folds", type=int, nargs="+",
                        help="held-out fold indices, each in [0, data.folds) (default: all)")
    parser.add_argument("--out", help="output folder (default: <runs_dir>/<name>-ablation-<time>); "
                                      "rerun with the same one to resume")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = config_or_none(args)
    if cfg is None:
        return 2
    # Imported here so that `ablation --help` does not load TensorFlow.
    from age_estimation.data.prepare import prepare_data
    from age_estimation.experiments.ablation import ablation, ablation_markdown, ablation_plan

    try:
        variants, folds = ablation_plan(cfg, args.variants, args.folds)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    prepare_data(cfg, progress=not args.json)
    out = output_dir(args, cfg, "ablation")
    summary = ablation(cfg, out, variants, folds)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"\nablation ({out}):\n")
        print(ablation_markdown(summary["table"]))
    return 0
