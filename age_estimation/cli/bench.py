"""``age-estimation bench``: the performance table (speed ratios, latency, memory, sizes) in one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from age_estimation.bench.report import format_bench
from age_estimation.bench.suite import bench
from age_estimation.cli.common import add_config_arguments, config_or_none


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (CI)")
    parser.add_argument("--out", help="folder for bench.json and bench.md (default: <runs_dir>/bench-<time>)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = config_or_none(args)
    if cfg is None:
        return 2
    results = bench(cfg, quick=args.quick, out=Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(results, default=str))
    else:
        print(format_bench(results))
        print(f"written: {results['out']}/bench.json, bench.md")
    return 0
