"""``docs/results.md`` from run folders: the k-fold ablation's tables and the learning curve, written by code.

Every figure on the page is read from what training left in the run folders (``metrics.json``, the
held-out predictions CSV, an ablation run's ``result.json``, ``config.yaml``), so the page cannot drift
from the runs it names. Two kinds of folder are read:

- an ablation folder (``age-estimation ablation --out DIR``): one ``<variant>-fold<i>/`` run per variant
  and held-out fold. Its tables: held-out MAE per fold, mean and pooled, the ratio to the oracle floor,
  the paired difference from the reference variant with its subject-bootstrap interval, the age
  interval's coverage and width per fold, attention ratios, cue usage and its slope share where the runs
  carry them;
- a single run folder (``make train``): one row of a table of single runs.

Ablation runs of one dataset at several ``data.train_subjects`` settings (from any of the ablation folders)
make a learning curve. The header names the command, the date and the machine the page was written on.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from age_estimation.evaluation.attention import cue_usage, oracle_errors
from age_estimation.experiments.ablation import (
    CUE_FIGURES,
    FoldPredictions,
    cue_usage_markdown,
    difference_from,
    floor_ratio,
)
from age_estimation.experiments.run_folders import (
    RunRecord,
    Study,
    group_by_variant,
    unique_folds,
    unique_paths,
)

PAGE_NOTE = (
    "Every figure below is read from the run folders the command names; do not edit this page by hand, run "
    "the command again. The page gives the dates the runs were written, not the machines they were trained "
    "on: training is deterministic on one machine only, so a rerun elsewhere moves the figures."
)
MAE_NOTE = (
    "Held-out MAE of each fold's model on the subjects that fold holds out, their mean ± std (population "
    "form) and the MAE pooled over all held-out videos. x oracle floor: the pooled MAE over the generator "
    "oracle's on the same videos (synthetic data). minus {}: the difference paired on the same videos over "
    "the folds both have done. Intervals: 95%, from 4000 resamples of the held-out subjects, each with all "
    "its videos."
)
INTERVAL_NOTE = (
    "The calibrated age interval of each fold's model on its held-out subjects: its nominal coverage, the "
    "share of held-out ages inside it (pooled over the folds' videos) and its mean width."
)
ATTENTION_NOTE = (
    "Attention against the synthetic ground truth: temporal weight of an informative frame over a distractor "
    "frame, spatial attention inside the age-cue regions over outside (1.0 = no preference)."
)
CURVE_NOTE = (
    "Held-out MAE pooled over each setting's folds; `data.train_subjects` picks an age-stratified subset of "
    "a fold's training subjects (validation and held-out subjects unchanged)."
)


def fold_predictions(runs: Sequence[RunRecord]) -> FoldPredictions:
    """The held-out predictions of one variant's runs (one per fold), pooled."""
    return FoldPredictions.read({(r.fold if r.fold is not None else i): r.path for i, r in enumerate(runs)})


def oracle_lookup(runs: Sequence[RunRecord], predictions: FoldPredictions) -> dict[str, float] | None:
    """Per held-out video, the oracle's error, from the generator's ground truth named by the runs' config;
    None when the data is not synthetic or its ground truth and cache index are not where the config says."""
    data = runs[0].config.get("data") or {}
    if data.get("source", "synthetic") != "synthetic" or not data.get("path") or not data.get("cache_dir"):
        return None
    try:
        errors = oracle_errors(predictions.videos, Path(data["path"]), data["cache_dir"])
    except (OSError, ValueError, KeyError):
        return None
    return errors if all(v in errors for v in predictions.videos) else None


def fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """A figure for a table cell: 'n/a' when unknown."""
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def per_fold(values: Sequence[float | None], digits: int = 2) -> str:
    """'5.41 / 5.04 / 5.29': one figure per fold."""
    return " / ".join(fmt(v, digits) for v in values)


def with_interval(value: dict[str, float] | None, key: str, suffix: str = "", sign: bool = False) -> str:
    """'1.42x [1.32, 1.51]' or '+0.66 [+0.36, +0.98]' from a figure with its 95% interval."""
    if value is None:
        return "n/a"
    return (f"{fmt(value[key], sign=sign)}{suffix} "
            f"[{fmt(value['low'], sign=sign)}, {fmt(value['high'], sign=sign)}]")


def floor_cell(runs: Sequence[RunRecord], pooled: FoldPredictions) -> str:
    """Pooled MAE over the oracle's MAE on the same videos: with its subject interval from the ground truth,
    else from the runs' recorded oracle MAEs without one, else 'n/a' (real data)."""
    oracle = oracle_lookup(runs, pooled)
    if oracle is not None:
        return with_interval(floor_ratio(pooled, oracle), "ratio", "x")
    floors = [r.oracle_mae for r in runs]
    if any(f is None for f in floors):
        return "n/a"
    counts = [int(np.sum(pooled.folds == (r.fold if r.fold is not None else i))) for i, r in enumerate(runs)]
    floor = float(np.average(floors, weights=counts)) if sum(counts) else float(np.mean(floors))
    return f"{pooled.mae() / floor:.2f}x (no interval: ground truth not found)"


def difference_cell(pooled: FoldPredictions, reference: FoldPredictions, folds: int) -> str:
    """The paired difference from the reference over the folds both have done, with its subject interval."""
    try:
        value = difference_from(pooled, reference)
    except ValueError:
        return "n/a (other held-out videos)"
    if value is None:
        return "n/a (no common fold)"
    fewer = f" (over {value['folds']} folds)" if value["folds"] < folds else ""
    return with_interval(value, "difference", sign=True) + fewer


def choose_reference(variants: Sequence[str], wanted: str | None) -> str:
    """``wanted`` when these runs have it, else the first variant (the ablation's order)."""
    return wanted if wanted in variants else variants[0]


def mae_table(groups: dict[str, list[RunRecord]], reference: str) -> list[str]:
    """Per variant: folds, MAE per fold, mean ± std, pooled, x oracle floor and minus the reference."""
    pooled = {v: fold_predictions(runs) for v, runs in groups.items()}
    columns = ["variant", "folds", "held-out MAE per fold (years)", "mean ± std", "pooled MAE",
               "x oracle floor [95% CI]", f"minus {reference} [95% CI]"]
    lines = [table_row(columns), "|" + "---|" * len(columns)]
    for variant, runs in groups.items():
        maes = [r.mae for r in runs]
        spread = f" ± {np.std(maes):.2f}" if len(maes) > 1 else ""
        versus = "reference" if variant == reference else difference_cell(pooled[variant], pooled[reference],
                                                                             len(runs))
        lines.append(table_row([variant, ", ".join(str(r.fold) for r in runs), per_fold(maes),
                                f"{np.mean(maes):.2f}{spread}", fmt(pooled[variant].mae()),
                                floor_cell(runs, pooled[variant]), versus]))
    return lines


def interval_table(groups: dict[str, list[RunRecord]]) -> list[str]:
    """Per variant: the interval's nominal coverage, the share of held-out ages inside it per fold and
    pooled, and its mean width per fold; nothing when no run recorded an interval."""
    if not any(r.interval for runs in groups.values() for r in runs):
        return []
    columns = ["variant", "nominal", "held-out ages inside, per fold", "pooled",
               "mean width per fold (years)"]
    lines = [table_row(columns), "|" + "---|" * len(columns)]
    for variant, runs in groups.items():
        reports = [r.interval or {} for r in runs]
        nominal = sorted({f"{rep['coverage']:.0%}" for rep in reports if "coverage" in rep})
        inside = [rep.get("empirical_coverage") for rep in reports]
        videos = [rep.get("videos", 0) for rep in reports]
        known = [(c, n) for c, n in zip(inside, videos) if c is not None and n]
        pooled = (sum(c * n for c, n in known) / sum(n for _, n in known)) if known else None
        lines.append(table_row([variant, ", ".join(nominal) or "n/a",
                                " / ".join("n/a" if c is None else f"{c:.1%}" for c in inside),
                                "n/a" if pooled is None else f"{pooled:.1%}",
                                per_fold([rep.get("mean_width") for rep in reports], 1)]))
    return lines


def attention_table(groups: dict[str, list[RunRecord]]) -> list[str]:
    """Per variant: temporal and spatial attention ratios per fold with their minimum; nothing when no run
    has them (real data)."""
    if not any(r.figure(k) is not None for runs in groups.values() for r in runs
               for k in ("temporal_ratio", "spatial_ratio")):
        return []
    columns = ["variant", "temporal ratio per fold", "min", "spatial ratio per fold", "min"]
    lines = [table_row(columns), "|" + "---|" * len(columns)]
    for variant, runs in groups.items():
        cells = [variant]
        for key in ("temporal_ratio", "spatial_ratio"):
            values = [r.figure(key) for r in runs]
            known = [v for v in values if v is not None]
            cells += [per_fold(values) if known else "n/a", fmt(min(known)) if known else "n/a"]
        lines.append(table_row(cells))
    return lines


def cue_table(groups: dict[str, list[RunRecord]]) -> list[str]:
    """Cue usage and slope share of each variant with the oracle's usage (``ablation.cue_usage_markdown``):
    scored on the held-out videos of all its folds pooled where the ground truth is at hand (a per-fold
    slope share divides by a small, noisy oracle slope), else the mean of the folds' records."""
    rows, pooled_everywhere = [], True
    for variant, runs in groups.items():
        usage = pooled_cue_usage(runs)
        if usage is None:
            pooled_everywhere = False
            records = [r.cue_usage for r in runs if r.cue_usage]
            usage = mean_usage(records) if records else None
        if usage:
            rows.append({"variant": variant, "folds": [r.fold for r in runs], "cue_usage": usage})
    return cue_usage_markdown(rows, over="pooled over the folds' held-out videos" if pooled_everywhere
                              else "mean over the folds")


def pooled_cue_usage(runs: Sequence[RunRecord]) -> dict[str, dict[str, float | None]] | None:
    """Cue usage scored once on the held-out predictions of all ``runs`` (one per fold) pooled; None when
    the data is not synthetic or its ground truth and cache index are not where the config says."""
    data = runs[0].config.get("data") or {}
    if data.get("source", "synthetic") != "synthetic" or not data.get("path") or not data.get("cache_dir"):
        return None
    try:
        pooled = fold_predictions(runs)
        return cue_usage(HeldOut(pooled.videos, pooled.predicted), Path(data["path"]), data["cache_dir"])
    except (OSError, ValueError, KeyError):
        return None


class HeldOut(NamedTuple):
    """The fields of a run's held-out predictions that ``cue_usage`` reads."""

    video_ids: list[str]
    pred: np.ndarray


def mean_usage(usages: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """Per cue, the model's and the oracle's correlations and the slope share averaged over the runs that
    know them."""
    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if known else None

    return {cue: {key: mean([u.get(cue, {}).get(key) for u in usages]) for key in CUE_FIGURES}
            for cue in usages[0]}


def table_row(cells: Sequence[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def setting_summary(runs: Sequence[RunRecord]) -> str:
    """The settings a reader needs beside the tables: data, T, training and held-out subjects, run dates."""
    first = runs[0]
    subjects = sorted({r.training_subjects for r in runs if r.training_subjects is not None})
    heldout = sorted({(r.metrics.get("counts") or {}).get("subjects_heldout") for r in runs} - {None})
    dates = sorted(r.written for r in runs)
    parts = [f"data `{first.setting('data', 'path', 'n/a')}` ({first.setting('data', 'source', 'n/a')})",
             f"T = {first.setting('data', 'clip_length', 'n/a')}",
             f"training subjects per run {span(subjects)}", f"held-out subjects per fold {span(heldout)}",
             f"runs written {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")]
    return "; ".join(parts) + "."


def span(values: Sequence[int]) -> str:
    """'256' or '255-257' (or 'n/a')."""
    if not values:
        return "n/a"
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def ablation_section(study: Study, reference: str | None) -> list[str]:
    """The tables of one ablation folder."""
    groups = study.by_variant()
    chosen = choose_reference(list(groups), reference)
    lines = [f"## Ablation: `{study.path}`", "", setting_summary(study.runs), "", MAE_NOTE.format(chosen), "",
             *mae_table(groups, chosen)]
    for note, part in ((INTERVAL_NOTE, interval_table(groups)), (ATTENTION_NOTE, attention_table(groups))):
        if part:
            lines += ["", note, "", *part]
    lines += cue_table(groups)
    if study.unfinished:
        lines += ["", "Not finished (left out): " + ", ".join(f"`{p.name}`" for p in study.unfinished) + "."]
    return lines + [""]


def single_runs_section(runs: Sequence[RunRecord]) -> list[str]:
    """One row per single run folder: held-out MAE, its floors, interval and attention."""
    columns = ["run", "variant", "held-out fold", "held-out MAE", "oracle floor", "mean predictor",
               "interval: nominal, inside, mean width", "temporal ratio", "spatial ratio"]
    lines = ["## Single runs", "", table_row(columns), "|" + "---|" * len(columns)]
    for run in runs:
        interval = run.interval
        interval_text = "n/a" if not interval else (
            f"{interval['coverage']:.0%}, {interval['empirical_coverage']:.1%}, "
            f"{interval['mean_width']:.1f} years")
        floor = run.oracle_mae if run.oracle_mae is not None else run.metrics.get("oracle_floor_mae")
        lines.append(table_row([f"`{run.path}`", run.variant, "n/a" if run.fold is None else str(run.fold),
                                fmt(run.mae), fmt(floor),
                                fmt(run.metrics["heldout"].get("mean_predictor_mae")), interval_text,
                                fmt(run.figure("temporal_ratio")), fmt(run.figure("spatial_ratio"))]))
    return lines + [""]


def learning_curve_sections(runs: Sequence[RunRecord], reference: str | None) -> list[str]:
    """A table per dataset whose ablation runs were trained at two or more ``data.train_subjects`` settings
    (single runs stay out: their held-out subjects are not a fold of the ablation's)."""
    lines: list[str] = []
    datasets: dict[str, list[RunRecord]] = {}
    for run in runs:
        datasets.setdefault(str(run.setting("data", "path", "n/a")), []).append(run)
    for dataset, members in datasets.items():
        levels: dict[int, list[RunRecord]] = {}
        for run in members:
            levels.setdefault(int(run.setting("data", "train_subjects", 0) or 0), []).append(run)
        if len(levels) > 1:
            lines += learning_curve_table(dataset, levels, reference)
    return lines


def learning_curve_table(
    dataset: str, levels: dict[int, list[RunRecord]], reference: str | None
) -> list[str]:
    """Rows by training subjects (``data.train_subjects``; 0 = all): each variant's pooled MAE over its
    folds, and every other variant minus the reference, paired over the folds both have done."""
    variants = list(group_by_variant([r for runs in levels.values() for r in runs]))
    chosen = choose_reference(variants, reference)
    others = [v for v in variants if v != chosen]
    columns = ["training subjects", "folds", *(f"{v} MAE" for v in variants),
               *(f"{v} minus {chosen} [95% CI]" for v in others)]
    lines = [f"## Learning curve: `{dataset}`", "", CURVE_NOTE, "", table_row(columns),
             "|" + "---|" * len(columns)]
    for setting in sorted(levels, key=lambda s: (s == 0, s)):
        groups = group_by_variant(unique_folds(levels[setting]))
        pooled = {v: fold_predictions(runs) for v, runs in groups.items()}
        counts = sorted({r.training_subjects for r in levels[setting] if r.training_subjects is not None})
        label = span(counts) if setting else f"all ({span(counts)})"
        folds = sorted({r.fold for r in levels[setting] if r.fold is not None})
        cells = [label, ", ".join(map(str, folds)) or "n/a"]
        cells += [fmt(pooled[v].mae()) if v in pooled else "n/a" for v in variants]
        cells += [difference_cell(pooled[v], pooled[chosen], len(groups[v]))
                  if v in pooled and chosen in pooled else "n/a" for v in others]
        lines.append(table_row(cells))
    return lines + [""]


def machine_line() -> str:
    """The machine the page is written on: platform, CPU model and core count."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.platform()}, {model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def results_markdown(studies: Sequence[Study], command: str, reference: str | None = None,
                     today: str | None = None, machine: str | None = None) -> str:
    """The whole page: header (command, date, machine), each ablation, the single runs, learning curves."""
    today = today or datetime.date.today().isoformat()
    lines = [f"<!-- written by: {command} on {today} -->", "", "# Results", "",
             f"Written by `{command}` on {today}, on {machine or machine_line()}.", "", PAGE_NOTE, ""]
    for study in studies:
        if not study.single:
            lines += ablation_section(study, reference)
    singles = [s.runs[0] for s in studies if s.single]
    if singles:
        lines += single_runs_section(singles)
    ablation_runs = unique_paths([r for s in studies if not s.single for r in s.runs])
    lines += learning_curve_sections(ablation_runs, reference)
    return "\n".join(lines).rstrip("\n") + "\n"
