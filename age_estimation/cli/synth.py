"""``age-estimation synth``: write the synthetic face-video dataset with its ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from age_estimation.config import ConfigError, load_config
from age_estimation.data.synth.generator import generate_dataset


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the synth flags; each overrides one key of the config's ``synth`` section."""
    parser.add_argument("--out", help="output folder (default: the config's data.path)")
    parser.add_argument("--config", help="pipeline YAML; its `synth` section gives the defaults")
    parser.add_argument("--subjects", type=int, help="number of subjects (synth.subjects)")
    parser.add_argument("--videos-per-subject", type=int, help="videos per subject (synth.videos_per_subject)")
    parser.add_argument("--frames", type=int, help="frames per video (synth.frames)")
    parser.add_argument("--seed", type=int, help="random seed (synth.seed)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0 = all cores)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Generate (or resume) the dataset and print a summary; exit 2 on bad settings or paths."""
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    flags = {
        "subjects": args.subjects,
        "videos_per_subject": args.videos_per_subject,
        "frames": args.frames,
        "seed": args.seed,
    }
    synth = dataclasses.replace(cfg.synth, **{k: v for k, v in flags.items() if v is not None})
    out = Path(args.out or cfg.data.path)
    try:
        summary = generate_dataset(out, synth, cfg.align, workers=args.workers, progress=not args.json)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['videos']} videos of {summary['subjects']} subjects in {out} "
            f"({summary['written']} written, {summary['reused']} reused, {summary['seconds']} s)\n"
            f"manifest: {summary['manifest']}\nground truth: {summary['ground_truth']}\n"
            f"oracle floor MAE {summary['oracle_floor_mae']:.2f} years, "
            f"mean predictor MAE {summary['mean_predictor_mae']:.2f} years"
        )
    return 0
