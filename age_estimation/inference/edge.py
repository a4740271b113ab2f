"""The edge path, as a mobile app runs it: video -> alignment (BlazeFace, LiteRT) -> LiteRT model, no TensorFlow.

Everything the model needs (crop size, T, alignment template, the landmark stream's K) comes from the
``.tflite`` file's JSON sidecar, so a phone or a Raspberry Pi needs only the two files, MediaPipe's two
face models, OpenCV and LiteRT. For a model that reads the landmark stream the aligner also runs the face
mesh (with LiteRT) on every frame and the windows carry its landmarks into the model's ``landmarks`` inputs.

Example:
    python -m age_estimation.inference.edge exported/tflite/siam/1/float32.tflite clip.mp4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from age_estimation.config import AlignConfig
from age_estimation.inference.predict import PredictionError, VideoPrediction, model_notices, predict_videos
from age_estimation.inference.runtimes import TFLitePredictor
from age_estimation.inference.spec import sidecar_path


class EdgeEstimator:
    """Age estimation from videos with a TFLite variant and its sidecar; TensorFlow is never imported."""

    def __init__(self, tflite_path: str | Path, num_threads: int = 2, stride: int | None = None) -> None:
        self.predictor = TFLitePredictor(tflite_path, num_threads=num_threads)
        sidecar = sidecar_path(tflite_path)
        if not sidecar.is_file():
            raise FileNotFoundError(f"{sidecar}: the sidecar with the alignment template is missing")
        self.align: AlignConfig = self.predictor.spec.require("align").align
        self.stride = stride

    def estimate(self, videos: list[str | Path]) -> list[VideoPrediction | PredictionError]:
        """One result (or the error naming the file) per video."""
        window = int(self.predictor.clip_length or 1)
        return list(
            predict_videos([Path(v) for v in videos], self.predictor, self.align, window, self.stride)
        )


def main(argv: list[str] | None = None) -> int:
    """Print one JSON object per video (the model card and notices go to stderr once); exit 1 when any
    video gave no estimate."""
    parser = argparse.ArgumentParser(description="Age from face videos with LiteRT only (no TensorFlow).")
    parser.add_argument("model", help="a .tflite variant with its .json sidecar beside it")
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stride", type=int, default=None)
    args = parser.parse_args(argv)
    estimator = EdgeEstimator(args.model, args.threads, args.stride)
    for notice in model_notices(estimator.predictor.spec):
        print(notice, file=sys.stderr)
    failed = 0
    for result in estimator.estimate(args.videos):
        if isinstance(result, PredictionError):
            print(f"error: {result}", file=sys.stderr)
            failed += 1
        else:
            print(json.dumps(result.to_json()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
