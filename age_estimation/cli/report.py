"""``age-estimation report RUN_OR_ABLATION_DIR...``: the results page, written from run folders by code.

Reads ablation folders (``<variant>-fold<i>/`` runs) and single run folders (``metrics.json``) and writes
their tables as Markdown (``experiments.report``): held-out MAE per fold, the ratio to the oracle floor,
paired differences from a reference variant with subject-bootstrap intervals, interval coverage and
width, attention and cue usage, and a learning curve over ``data.train_subjects``. ``--out`` writes the
page (``docs/results.md``); without it the page is printed. Exit 2 when a folder holds no run.

``--compare`` puts several ablation folders in one table instead (rows ``variant (folder)``, paired
differences from the first folder's): the same variant trained two ways, e.g. on another backbone.

Example:
    age-estimation report runs/ablation-kfold runs/curve-100 runs/curve-200 --out docs/results.md
"""

from __future__ import annotations

import argparse
import shlex


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", metavar="RUN_OR_ABLATION_DIR",
                        help="an ablation output folder (<variant>-fold<i>/ runs) "
                             "or a run folder (metrics.json)")
    parser.add_argument("--out", help="write the page here (e.g. docs/results.md) instead of printing it")
    parser.add_argument("--reference", metavar="VARIANT",
                        help="the variant the others are compared with (default: the first present, in the "
                             "ablation's order: siam_dynamics, siam, ...)")
    parser.add_argument("--compare", action="store_true",
                        help="compare the ablation folders with each other in one table (rows 'variant "
                             "(folder)', paired on shared folds; the reference: the first folder's first variant)")


def run(args: argparse.Namespace) -> int:
    # Imported here so that `report --help` stays fast (the ablation module loads TensorFlow).
    from age_estimation.atomic_files import write_bytes_atomic
    from age_estimation.experiments.report import results_markdown
    from age_estimation.experiments.run_folders import compared_study, read_study

    try:
        studies = [read_study(folder) for folder in args.folders]
    except ValueError as err:
        print(f"error: {err}")
        return 2
    reference = args.reference
    if args.compare:
        if any(study.single for study in studies):
            print("error: --compare takes ablation folders (<variant>-fold<i>/ runs), not single runs")
            return 2
        studies = [compared_study(studies)]
        reference = reference or studies[0].runs[0].variant
    page = results_markdown(studies, command_line(args), reference=reference)
    if args.out:
        write_bytes_atomic(args.out, page.encode())
        print(f"written: {args.out}")
    else:
        print(page, end="")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The command as a person would retype it, for the page's header."""
    parts = ["age-estimation", "report", *args.folders]
    if args.reference:
        parts += ["--reference", args.reference]
    if args.compare:
        parts += ["--compare"]
    if args.out:
        parts += ["--out", args.out]
    return shlex.join(parts)
