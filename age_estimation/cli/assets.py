"""``age-estimation assets``: fetch and verify the face models once."""

from __future__ import annotations

import argparse
import json

from age_estimation.video.face_models import AssetError, ensure_assets


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-wheel", help="extract from a downloaded mediapipe==0.10.21 wheel (offline)")
    parser.add_argument("--json", action="store_true", help="print the model paths as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        paths = ensure_assets(args.from_wheel)
    except AssetError as err:
        print(f"error: {err}")
        return 2
    if args.json:
        print(json.dumps({"models": [str(p) for p in paths]}))
    else:
        for path in paths:
            print(f"ok  {path}")
    return 0
