"""``age-estimation export``: a trained run -> SavedModel (TF Serving layout) + TFLite variants + report.

The run is ``--run DIR`` or the newest finished run under ``runtime.runs_dir``; its config.yaml gives the
model, alignment and T, and ``--config`` (when given) supplies the ``export`` section. The report
(parity vs Keras, sizes, ops, LiteRT latency at 1 and 2 threads) is printed and saved beside the
TFLite files. Parity uses cache clips (held-out first); without a cache it falls back to random clips.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from age_estimation.cli.common import add_config_arguments
from age_estimation.config import load_config
from age_estimation.export.report import format_table
from age_estimation.export.run import export_run
from age_estimation.inference.model_card import ModelCard
from age_estimation.runs import latest_run


def configure(parser: argparse.ArgumentParser) -> None:
    # No default config: without --config the run's own config.yaml is used whole; --set overrides it.
    add_config_arguments(parser, default=None)
    parser.add_argument("--run", help="run directory to export (default: the newest under runtime.runs_dir)")
    parser.add_argument(
        "--variants", help="comma-separated TFLite variants (default: export.tflite_variants)"
    )
    parser.add_argument("--no-tflite", action="store_true", help="write only the SavedModel")
    parser.add_argument("--no-report", action="store_true", help="skip the parity / size / latency report")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        result = export(args)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result)
    return 0


def export(args: argparse.Namespace) -> dict[str, Any]:
    """Do the export described by ``args``; returns the JSON-ready summary."""
    pipeline = load_config(args.config) if args.config else None
    run_dir = Path(args.run) if args.run else latest_run(pipeline.runtime.runs_dir if pipeline else "runs")
    return export_run(
        run_dir,
        overrides=args.overrides,
        export_cfg=pipeline.export if pipeline else None,
        variants=args.variants.split(",") if args.variants else None,
        tflite=not args.no_tflite,
        report=not args.no_report,
    )


def _print_human(result: dict[str, Any]) -> None:
    saved = result["savedmodel"]
    print(f"run         {result['run']}")
    card = result.get("model_card")
    print(f"model card  {ModelCard.from_json(card).summary_line() if card else 'none (the run has no model_card.json)'}")
    interval = result.get("interval")
    print(
        f"interval    {interval['coverage']:.0%}, calibrated on {interval['calibration_videos']} videos"
        if interval
        else "interval    none (the run has no interval.json): predict gives ages without an interval"
    )
    print(f"SavedModel  {saved['path']}  (max |age diff| vs Keras {saved['max_abs_diff_years']:.2g} years)")
    tfl = result.get("tflite")
    if not tfl:
        return
    print(f"TFLite      {tfl['path']}")
    report = tfl.get("report")
    if report:
        print(f"parity on   {report['parity_source']}")
        print(format_table(report))
        for name, entry in report["variants"].items():
            print(f"ops {name}: {' '.join(entry['ops'])}")
        print(f"report      {report['report_path']}")
