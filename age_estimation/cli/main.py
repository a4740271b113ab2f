"""The ``age-estimation`` console entry point: one subcommand per job, each in ``age_estimation.cli.<command>``.

``COMMANDS`` maps each command to its one-line help. Each command module defines
``configure(parser)`` and ``run(args) -> int``; a module is imported only when its command runs, so
the top-level ``--help`` stays fast.

Example:
    age-estimation train --config pipelines/default.yaml --set train.epochs=3
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from age_estimation.logs import set_library_logs
from age_estimation.video.face_models import AssetError

COMMANDS = {
    "assets": "Fetch and verify the model files: MediaPipe face models, face-age network (once; then offline).",
    "synth": "Write the synthetic face-video dataset with its ground truth.",
    "prepare": "Detect, align and cache the face clips of a manifest or UvA-NEMO.",
    "train": "Train a pipeline config and write a run directory under runs/.",
    "evaluate": "Subject-independent k-fold cross-validation with plots.",
    "ablation": "The ablation: SIAM, its variants and the landmark stream over subject-independent k folds.",
    "readout": "Linear readers of the landmark stream: the age and smile cues it offers a model.",
    "report": "Write the results page (ablation tables, learning curve) from run folders.",
    "tune": "Keras Tuner hyperparameter search; writes the best config as YAML.",
    "calibrate": "Calibrate a trained run's interval widening on corrupted copies of its validation videos.",
    "export": "Export a trained model as a SavedModel (TF Serving) and TFLite.",
    "predict": "Estimate the age of the person in each video.",
    "bench": "Measure speed, memory and size; print a table and write JSON.",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with a subparser per command (configured lazily on use)."""
    parser = argparse.ArgumentParser(prog="age-estimation", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    set_library_logs(known.verbose)  # before any command module imports TensorFlow or MediaPipe
    logging.basicConfig(level=logging.INFO if known.verbose else logging.WARNING, format="%(message)s")
    module = importlib.import_module(f"age_estimation.cli.{known.command}")
    command_parser = argparse.ArgumentParser(
        prog=f"age-estimation {known.command}", description=COMMANDS[known.command]
    )
    module.configure(command_parser)
    rest = argv[argv.index(known.command) + 1 :]
    args = command_parser.parse_args(rest)
    args.verbose = known.verbose
    try:
        return int(module.run(args) or 0)
    except AssetError as err:  # any command that loads a face model: a set-up step is missing, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
