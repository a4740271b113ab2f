"""``age-estimation export``: a trained run -> SavedModel (TF Serving layout) + TFLite variants + report;
``--model face-age-v1``: the pretrained face-age network -> TFLite float32 and float16 + parity report.

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
from age_estimation.export.face_age import FACE_AGE_VARIANTS, export_face_age
from age_estimation.export.report import format_table
from age_estimation.export.run import export_run
from age_estimation.inference.face_age import FACE_AGE_V1
from age_estimation.inference.model_card import ModelCard
from age_estimation.runs import latest_run

FACE_AGE_MODELS = (FACE_AGE_V1,)  # built-in pretrained models `export --model` takes


def configure(parser: argparse.ArgumentParser) -> None:
    # No default config: without --config the run's own config.yaml is used whole; --set overrides it.
    add_config_arguments(parser, default=None)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="run directory to export (default: the newest under runtime.runs_dir)")
    source.add_argument("--model", choices=FACE_AGE_MODELS,
                        help="export a built-in pretrained model instead of a run: TFLite float32 and float16 "
                             "with a parity report (no SavedModel)")
    parser.add_argument("--out", metavar="DIR", help="export folder (default: the config's export.directory)")
    parser.add_argument(
        "--variants", help="comma-separated TFLite variants (default: export.tflite_variants; with --model: "
                           f"{','.join(FACE_AGE_VARIANTS)})"
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
    out = [f"export.directory={args.out}"] if args.out else []  # --out: the export folder, as any config gives it
    variants = args.variants.split(",") if args.variants else None
    if args.model:
        if args.no_tflite:
            raise ValueError(f"{args.model} exports only TFLite variants; drop --no-tflite")
        cfg = load_config(args.config, [*args.overrides, *out])  # the export section: folder and latency runs
        return export_face_age(cfg.export.directory, variants=variants, report=not args.no_report,
                               runs=cfg.export.latency_runs, name=args.model)
    pipeline = load_config(args.config, out) if args.config else None
    run_dir = Path(args.run) if args.run else latest_run(pipeline.runtime.runs_dir if pipeline else "runs")
    return export_run(
        run_dir,
        overrides=[*args.overrides, *out],
        export_cfg=pipeline.export if pipeline else None,
        variants=variants,
        tflite=not args.no_tflite,
        report=not args.no_report,
    )


def _print_human(result: dict[str, Any]) -> None:
    if "savedmodel" not in result:  # a pretrained model's TFLite export
        _print_tflite(result["tflite"], f"model       {result['model']}")
        return
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
    if result.get("tflite"):
        _print_tflite(result["tflite"])


def _print_tflite(tfl: dict[str, Any], first: str | None = None) -> None:
    if first:
        print(first)
    print(f"TFLite      {tfl['path']}")
    report = tfl.get("report")
    if report:
        print(f"parity on   {report['parity_source']}")
        print(format_table(report))
        for name, entry in report["variants"].items():
            for key, parity in entry.get("parity", {}).items():  # per parity set (the face-age export)
                print(f"{name} on {key}: max |diff| softmax {parity['max_abs_diff_softmax']:.3g}, "
                      f"age {parity['max_abs_diff_years']:.3g} years")
            print(f"ops {name}: {' '.join(entry['ops'])}")
        print(f"report      {report['report_path']}")
