"""``age-estimation readout``: linear readers of the landmark stream, a reference for the learned models."""

from __future__ import annotations

import argparse
import json

from age_estimation.cli.common import add_config_arguments, prepared_config


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--stack", metavar="ABLATION_DIR",
                        help="also stack the track on the held-out ages of an ablation folder's variant")
    parser.add_argument("--variant", default="siam_dynamics", help="the ablation variant --stack reads")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = prepared_config(args)
    if cfg is None:
        return 2
    # Imported here so that `readout --help` does not load TensorFlow.
    from age_estimation.experiments.stream_readout import (
        ablation_predictions,
        readout_markdown,
        stream_readout,
    )

    try:
        network = ablation_predictions(args.stack, args.variant, cfg.data.folds) if args.stack else None
        summary = stream_readout(cfg, network=network)
    except ValueError as err:
        print(f"error: {err}")
        return 1
    print(json.dumps(summary) if args.json else "\n" + readout_markdown(summary))
    return 0
