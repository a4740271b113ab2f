"""``age-estimation predict VIDEO...``: the age of the person in each video, on any runtime.

The model is ``--model`` (``.keras``, a SavedModel folder or a ``.tflite`` variant), ``--server URL``
(TF Serving, REST ``http://`` or gRPC ``grpc://``), or the run's own float32 TFLite export when it has one
(no TensorFlow import), else its ``model.keras``; the line names the runtime that answered. A model that
reads the landmark stream gets it from the alignment (the face mesh runs only for such a model). Each age comes
with the model's calibrated interval; the model card (and, for a model trained on synthetic faces, a
warning) is printed once on stderr. A video with too little face, or a face unlike any the model can
judge (too dark, blurred, small or turned: ``inference.quality``), gets no age; damaged frames and other
persons in view are noted under the answer. ``--at-least AGE`` adds a yes / no / cannot tell from the
interval. Exit 0 when every video gave an age, 1 when some gave none (each named with its reason on
stderr), 2 on a setup error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from age_estimation.config import load_config
from age_estimation.inference.decision import age_decision
from age_estimation.inference.explain import write_explanation
from age_estimation.inference.predict import (
    PredictionError,
    VideoPrediction,
    collect_videos,
    model_notices,
    predict_videos,
)
from age_estimation.inference.run_exports import run_spec
from age_estimation.inference.runtimes import Predictor, ServingPredictor, open_predictor
from age_estimation.inference.spec import DeploymentSpec
from age_estimation.runs import latest_run


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument(
        "--model",
        help="a .keras file, a SavedModel folder, a .tflite file, or face-age-v1 (the pretrained per-frame "
             "face-age network: `age-estimation assets` fetches it)",
    )
    parser.add_argument(
        "--server", metavar="URL", help="TF Serving URL: http://host:8501 or grpc://host:8500"
    )
    parser.add_argument("--run", help="run directory (default: the newest under runtime.runs_dir)")
    parser.add_argument("--config", help="pipeline YAML (alignment and T when the model carries none)")
    parser.add_argument("--stride", type=int, help="source frames between window starts (default: half of inference.window_span)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads for a .tflite model")
    parser.add_argument("--explain", metavar="DIR", help="write attention pictures for each video into DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    parser.add_argument(
        "--at-least", type=float, metavar="AGE",
        help="also answer yes / no / cannot tell: is the person at least AGE years old? yes only when the whole "
             "calibrated interval is at or above AGE",
    )
    parser.add_argument(
        "--all-faces", action="store_true",
        help="estimate every person in view (each face seen in enough frames), not only the largest, most central",
    )
    parser.add_argument(
        "--timings", action="store_true",
        help="print on stderr a JSON line of Unix times: when decoding started and when predict ended",
    )


def run(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    try:
        predictor = _open(args)
        spec = predictor.spec.require("align")
        window = int(predictor.clip_length or spec.require("window").window)
        videos = collect_videos(args.videos)
        if args.at_least is not None and spec.interval is None:
            raise ValueError(f"--at-least needs the model's calibrated interval; {spec.origin or 'its spec'} has none")
        results = predict_videos(
            videos,
            predictor,
            spec.align,
            window,
            args.stride,
            keep_frames=bool(args.explain),
            progress=len(videos) > 1 or sys.stderr.isatty(),
            timings=timings,
            all_faces=args.all_faces,
        )
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for notice in model_notices(predictor.spec):
        print(notice, file=sys.stderr)
    failed = 0
    for result in results:
        if isinstance(result, PredictionError):
            failed += 1
            print(f"error: {result}", file=sys.stderr)
            continue
        if args.explain:
            write_explanation(result, args.explain)
        decision = None if args.at_least is None else age_decision(*result.interval, args.at_least)
        text = json.dumps(_json(result, args.at_least, decision)) if args.json else _human(result, args.at_least, decision)
        print(text, flush=True)
    if args.timings:
        print(json.dumps({"timings": {**timings, "finished": time.time()}}), file=sys.stderr, flush=True)
    return 1 if failed else 0


def _open(args: argparse.Namespace) -> Predictor:
    """The predictor, with alignment and window settings filled from the run or config when it lacks them."""
    fallback = _fallback_spec(args)
    if args.server:
        return ServingPredictor(args.server, model_name=fallback.model_name, spec=fallback)
    predictor = open_predictor(
        model=args.model, run_dir=args.run, runs_dir=_runs_dir(args), num_threads=args.threads
    )
    predictor.spec = predictor.spec.filled_from(fallback)
    return predictor


def _fallback_spec(args: argparse.Namespace) -> DeploymentSpec:
    """Spec from --run, else --config, else the newest run, else the built-in defaults.

    A run's spec has its interval and model card (a served model gets them from there)."""
    if args.run:
        return run_spec(Path(args.run))
    if args.config:
        return DeploymentSpec.from_config(load_config(args.config))
    try:
        return run_spec(latest_run(_runs_dir(args)))
    except FileNotFoundError:
        return DeploymentSpec.from_config(load_config(None))


def _runs_dir(args: argparse.Namespace) -> str:
    return load_config(args.config).runtime.runs_dir if args.config else "runs"


def _json(result: VideoPrediction, at_least: float | None, decision: str | None) -> dict[str, Any]:
    out = result.to_json()
    if at_least is not None:
        out["at_least"] = {"age": at_least, "answer": decision, "coverage": result.coverage}
    return out


def _human(result: VideoPrediction, at_least: float | None = None, decision: str | None = None) -> str:
    partial = (
        ""
        if result.frames_used == result.frames_total
        else f", face in {result.frames_used}/{result.frames_total} frames"
    )
    windows = len(result.window_ages)
    spread = f", spread ± {result.spread:.1f}" if windows > 1 else ""
    face = "" if result.face is None else f" [face {result.face}, box ({', '.join(f'{v:.0f}' for v in result.face_box)})]"
    line = (
        f"{result.path}{face}: {result.age_text()} years ({windows} window(s){spread}{partial}; "
        f"{result.runtime}, {result.seconds:.2f} s)"
    )
    if at_least is not None:
        line += f"\n  at least {at_least:g}? {decision}"
    return "\n".join([line, *(f"  note: {note}" for note in result.notes)])
