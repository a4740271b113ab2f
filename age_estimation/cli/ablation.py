"""``age-estimation ablation``: SIAM against its ablations, several seeds each, on held-out subjects."""

from __future__ import annotations

import argparse
import json

from age_estimation.cli.common import add_config_arguments, config_or_none, output_dir
from age_estimation.config import VARIANTS


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (0, 1, ...)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", help="output folder (default: <runs_dir>/<name>-ablation-<time>)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = config_or_none(args)
    if cfg is None:
        return 2
    # Imported here so that `ablation --help` does not load TensorFlow.
    from age_estimation.data.prepare import prepare_data
    from age_estimation.experiments.ablation import ablation, ablation_markdown

    prepare_data(cfg, progress=not args.json)
    out = output_dir(args, cfg, "ablation")
    summary = ablation(cfg, out, list(range(args.seeds)), tuple(args.variants))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"\nablation ({out}):\n")
        print(ablation_markdown(summary["table"]))
    return 0
