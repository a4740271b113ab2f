"""``age-estimation evaluate``: subject-independent k-fold cross-validation of a pipeline config, or with
``--corruptions`` the corruption benchmark of a trained model.

The benchmark predicts each video clean and as corrupted copies (dark, low contrast, blur, noise, small face,
rotated, JPEG, damaged bytes, occluded) through the same path as ``predict`` (``predict_videos`` with the run's
model, or ``--model``), and prints a markdown table of abstentions, interval coverage, MAE and interval width
per corruption and severity (``--json``: the table as JSON; ``--out FILE.md`` also writes it, with the JSON
beside it). Videos are the run's held-out videos, or a ``--manifest`` CSV (path, age, subject), cut to an
age-stratified ``--videos N``. Exit 0 when the benchmark ran (whatever it measured), 1 when predict failed on
every clean video, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from age_estimation.cli.common import add_config_arguments, config_or_none, output_dir, prepared_config

DEFAULT_VIDEOS = 40  # an age-stratified subset: 40 videos x 27 settings take minutes on 2 cores
BENCHMARK_FLAGS = ("run", "model", "manifest", "videos", "corruption", "severity", "workdir")


def configure(parser: argparse.ArgumentParser) -> None:
    from age_estimation.evaluation.corruptions import CORRUPTIONS

    add_config_arguments(parser)
    parser.add_argument("--folds", type=int, nargs="*", help="only these fold numbers (default: all)")
    parser.add_argument("--out", help="output folder (default: <runs_dir>/<name>-cv-<time>); with --corruptions: "
                                      "a markdown file to write the table to (and FILE.json beside it)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    bench = parser.add_argument_group("corruption benchmark")
    bench.add_argument("--corruptions", action="store_true",
                       help="run the corruption benchmark of a trained model instead of cross-validation")
    bench.add_argument("--run", help="run directory (default: the newest under the config's runtime.runs_dir)")
    bench.add_argument("--model", help="a .keras, .tflite or SavedModel to benchmark (default: what predict "
                                       "uses for the run: its exported float32 TFLite, else model.keras)")
    bench.add_argument("--manifest", metavar="CSV",
                       help="videos of a CSV manifest (path, age, subject) instead of the run's held-out videos")
    bench.add_argument("--videos", type=int, metavar="N",
                       help=f"an age-stratified subset of N videos (default {DEFAULT_VIDEOS}; 0 = all)")
    bench.add_argument("--corruption", nargs="+", choices=list(CORRUPTIONS), metavar="NAME",
                       help=f"only these corruptions (default: all: {', '.join(CORRUPTIONS)})")
    bench.add_argument("--severity", nargs="+", type=int, choices=(1, 2, 3),
                       help="only these severities, 1 mild to 3 severe (default: 1 2 3; the rotations have one)")
    bench.add_argument("--workdir", metavar="DIR",
                       help="write the corrupted copies here and keep them (default: a temporary folder)")
    bench.add_argument("--threads", type=int, default=2, help="LiteRT threads for a .tflite model")


def run(args: argparse.Namespace) -> int:
    if args.corruptions:
        return run_corruptions(args)
    stray = [f"--{name}" for name in BENCHMARK_FLAGS if getattr(args, name) is not None]
    if stray:
        print(f"error: {', '.join(stray)} only apply with --corruptions", file=sys.stderr)
        return 2
    return run_crossval(args)


def run_crossval(args: argparse.Namespace) -> int:
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


def run_corruptions(args: argparse.Namespace) -> int:
    """The corruption benchmark: open the model as predict does, pick the videos, run, print and write."""
    from age_estimation.evaluation.corruptions import CORRUPTIONS
    from age_estimation.evaluation.robustness import corruption_table, stratified_subset
    from age_estimation.evaluation.robustness_report import goals, markdown_report
    from age_estimation.inference.predict import predict_videos

    try:
        run_dir = _benchmark_run(args)
        videos = _benchmark_videos(args, run_dir)
        predictor = _open_predictor(args, run_dir)
        spec = predictor.spec.require("align")
        window = int(predictor.clip_length or spec.require("window").window)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    count = DEFAULT_VIDEOS if args.videos is None else args.videos
    chosen = stratified_subset(videos, count) if count > 0 else videos
    print(f"{len(chosen)} of {len(videos)} videos, {predictor.name} model", file=sys.stderr)

    def predict_fn(paths: list[Path]) -> Any:
        return predict_videos(paths, predictor, spec.align, window, progress=False)

    try:
        with _workdir(args.workdir) as folder:
            table = corruption_table(predict_fn, chosen, args.corruption or list(CORRUPTIONS),
                                     args.severity or [1, 2, 3], folder, keep_copies=bool(args.workdir))
    except ValueError as err:  # predict failed on every clean video
        print(f"error: {err}", file=sys.stderr)
        return 1
    table["header"] = _header(args, run_dir, predictor)
    table["goals"] = goals(table["rows"])
    text = markdown_report(table)
    if args.out:
        _write_outputs(Path(args.out), text, table)
    sys.stdout.write(json.dumps(table) + "\n" if args.json else text)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The benchmark's command as typed, rebuilt from its flags (the header of the table names it)."""
    words = ["age-estimation", "evaluate", "--corruptions"]
    for name in (*BENCHMARK_FLAGS, "out"):
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name}", *map(str, value if isinstance(value, list) else [value])]
    return " ".join(words + (["--json"] if args.json else []))


def _header(args: argparse.Namespace, run_dir: Path | None, predictor: Any) -> dict[str, str]:
    """What the table's page names first: the command, run, videos, model, date and machine."""
    from age_estimation.evaluation.robustness_report import machine_line
    from age_estimation.inference.predict import model_notices

    return {
        "command": command_line(args),
        "run": str(run_dir) if run_dir else "-",
        "videos from": args.manifest or f"{run_dir}/heldout_predictions.csv",
        "model runtime": f"{predictor.name} ({_model_file(predictor, args, run_dir)})",
        "model card": model_notices(predictor.spec)[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_line(),
    }


def _benchmark_run(args: argparse.Namespace) -> Path | None:
    """The run: ``--run``, else the newest under the config's runs_dir (none needed for --model with --manifest)."""
    if args.run:
        return Path(args.run)
    from age_estimation.runs import latest_run

    if args.model and args.manifest:
        return None
    cfg = config_or_none(args)
    if cfg is None:
        raise ValueError(f"{args.config}: cannot read the config to find the newest run; name one with --run")
    return latest_run(cfg.runtime.runs_dir)


def _benchmark_videos(args: argparse.Namespace, run_dir: Path | None) -> list[Any]:
    """(path, age, subject) of the manifest's or the run's held-out videos; warnings for those left out."""
    from age_estimation.evaluation.robustness import heldout_videos, manifest_videos

    videos, left_out = manifest_videos(args.manifest) if args.manifest else heldout_videos(run_dir)
    for line in left_out:
        print(f"warning: left out {line}", file=sys.stderr)
    if not videos:
        raise ValueError(f"{args.manifest or run_dir}: no usable videos to benchmark")
    return videos


def _open_predictor(args: argparse.Namespace, run_dir: Path | None) -> Any:
    """The predictor ``predict`` would open for ``--model``/the run, with its spec filled from the run (or,
    for a bare ``--model``, from the newest run, else the defaults), as ``cli.predict`` fills it."""
    from age_estimation.config import load_config
    from age_estimation.inference.run_exports import run_spec
    from age_estimation.inference.runtimes import open_predictor
    from age_estimation.inference.spec import DeploymentSpec
    from age_estimation.runs import latest_run

    predictor = open_predictor(model=args.model, run_dir=run_dir, num_threads=args.threads)
    if run_dir is None:
        try:
            fallback = run_spec(latest_run("runs"))
        except FileNotFoundError:
            fallback = DeploymentSpec.from_config(load_config(None))
    else:
        fallback = run_spec(run_dir)
    predictor.spec = predictor.spec.filled_from(fallback)
    return predictor


def _model_file(predictor: Any, args: argparse.Namespace, run_dir: Path | None) -> str:
    """The file the predictor runs: a TFLite export's path, ``--model``, else the run's model.keras."""
    from age_estimation.runs import MODEL_NAME

    return str(getattr(predictor, "path", None) or args.model or Path(run_dir or ".") / MODEL_NAME)


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    """``path`` (kept), or a temporary folder removed afterwards."""
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="corruptions-") as folder:
        yield Path(folder)


def _write_outputs(out: Path, text: str, table: dict[str, Any]) -> None:
    """The markdown at ``out`` (``.md`` when ``out`` ends in ``.json``) and the JSON beside it."""
    from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic

    markdown = out.with_suffix(".md") if out.suffix == ".json" else out
    write_bytes_atomic(markdown, text.encode())
    write_json_atomic(markdown.with_suffix(".json"), table)
    print(f"wrote {markdown} and {markdown.with_suffix('.json')}", file=sys.stderr)
