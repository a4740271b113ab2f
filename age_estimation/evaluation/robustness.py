"""The corruption benchmark: how predict behaves on videos unlike its training data.

Every video is predicted clean and as each corrupted copy (``evaluation.corruptions``). Per corruption and
severity the table counts abstentions (a ``PredictionError`` result, its reasons counted by their first words)
and, on the videos that got an age, the interval's coverage of the true age, the MAE, the mean interval width
and the mean ratio of each copy's width to its clean original's (``robustness_report`` checks the goals and
writes the markdown). The benchmark measures whatever abstention predict implements; it does not know how.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.evaluation.corruptions import CORRUPTIONS, CorruptionError, write_corrupted
from age_estimation.inference.predict import PredictionError
from age_estimation.logs import progress_bar

REASON_WORDS = 5  # an abstention reason is counted by this many of its first words

Video = tuple[Path, float, str]  # (path, true age, subject)
PredictFn = Callable[[list[Path]], Iterable[Any]]  # paths -> a result or a PredictionError each, in order


class PredictCrash(RuntimeError):
    """Predict raised something other than a ``PredictionError`` on a video: the message names it and the error."""


def corruption_table(
    predict_fn: PredictFn,
    videos: list[Video],
    corruptions: list[str],
    severities: list[int],
    workdir: str | Path,
    progress: bool = True,
    keep_copies: bool = False,
) -> dict[str, Any]:
    """The benchmark table: a ``clean`` row, then one row per corruption and severity
    (``robustness_report.goals`` reads it against the issue's goals).

    ``predict_fn`` maps a list of video paths to one result each (an object with ``age`` and ``interval``)
    or a ``PredictionError``; when it fails on every clean video (a setup problem) this is a ``ValueError``.
    Corrupted copies go to ``workdir/<corruption>-s<severity>/`` and are deleted
    after their row unless ``keep_copies``. Progress goes to stderr.
    """
    paths, ages = [Path(v[0]) for v in videos], np.array([v[1] for v in videos], float)
    clean = _predicted(predict_fn, paths, "clean", progress)
    if clean and all(isinstance(r, PredictCrash) for r in clean):
        raise ValueError(f"predict failed on every clean video, so nothing can be measured: {clean[0]}")
    rows = [summarise("clean", None, "original file", ages, clean, None)]
    clean_widths = [interval_width(r) for r in clean]
    _report(rows[-1], progress)
    for name in corruptions:
        corruption = CORRUPTIONS[name]
        for severity in corruption.severities(severities):
            label = name if severity is None else f"{name} s{severity}"
            folder = Path(workdir) / f"{name}-s{severity or 0}"
            copies, failures = _write_copies(paths, folder, name, severity, label, progress)
            results = _predicted(predict_fn, [c for c in copies if c is not None], label, progress)
            merged = _merge(copies, results, failures)
            rows.append(summarise(name, severity, corruption.setting(severity), ages, merged, clean_widths))
            _report(rows[-1], progress)
            if not keep_copies:
                shutil.rmtree(folder, ignore_errors=True)
    return {
        "videos": [{"path": str(p), "age": float(a), "subject": str(s)} for p, a, s in videos],
        "severities": list(severities),
        "rows": rows,
    }


def summarise(
    name: str,
    severity: int | None,
    setting: str,
    ages: np.ndarray,
    results: list[Any],
    clean_widths: list[float | None] | None,
) -> dict[str, Any]:
    """One row of the table from the per-video ``results`` (a result, a ``PredictionError``, a
    ``PredictCrash``, or a ``CorruptionError`` when no copy could be written), in the order of ``ages``.
    Abstention rates are over the copies written; a crash is neither an answer nor an abstention."""
    written = [i for i, r in enumerate(results) if not isinstance(r, CorruptionError)]
    abstained = [i for i in written if isinstance(results[i], PredictionError)]
    crashed = [i for i in written if isinstance(results[i], PredictCrash)]
    answered = [i for i in written if not isinstance(results[i], Exception)]
    with_interval = [i for i in answered if results[i].interval is not None]
    covered = [i for i in with_interval if results[i].interval[0] <= ages[i] <= results[i].interval[1]]
    widths = {i: interval_width(results[i]) for i in with_interval}
    ratios = [] if clean_widths is None else [
        widths[i] / clean_widths[i] for i in with_interval if (clean_widths[i] or 0) > 0
    ]
    return {
        "corruption": name,
        "severity": severity,
        "setting": setting,
        "videos": len(written),
        "not_written": len(results) - len(written),
        "answered": len(answered),
        "abstained": len(abstained),
        "abstention_rate": len(abstained) / len(written) if written else None,
        "reasons": dict(Counter(reason_key(results[i]) for i in abstained).most_common()),
        "crashed": len(crashed),
        "with_interval": len(with_interval),
        "coverage": len(covered) / len(with_interval) if with_interval else None,
        "mae": _mean([abs(results[i].age - ages[i]) for i in answered]),
        "mean_width": _mean(list(widths.values())),
        "width_ratio": _mean(ratios),
        "width_pairs": len(ratios),
        "narrower": sum(ratio < 1.0 - 1e-9 for ratio in ratios),
        "results": [_result_json(r) for r in results],
    }


def interval_width(result: Any) -> float | None:
    """High minus low of a result's interval; None for an abstention or a result without an interval."""
    if isinstance(result, Exception) or result.interval is None:
        return None
    low, high = result.interval
    return float(high - low)


def reason_key(error: Exception) -> str:
    """The first words of an abstention's reason, so that the same reason on different videos counts once:
    the file name before it dropped, cut at its first ':', ';', ',' or '(' and numbers written 'N'.
    '/v/a.mp4: face too dark: mean brightness 12' -> 'face too dark'."""
    message = str(error)
    _, sep, rest = message.partition(": ")
    reason = re.split(r"[:;,(]", rest if sep else message, maxsplit=1)[0]
    words = ["N" if any(ch.isdigit() for ch in word) else word for word in reason.split()[:REASON_WORDS]]
    return " ".join(words).rstrip(".")


def row_label(row: dict[str, Any]) -> str:
    """'dark s2', 'rotate90' (a fixed corruption) or 'clean'."""
    return row["corruption"] if row["severity"] is None else f"{row['corruption']} s{row['severity']}"


def stratified_subset(videos: list[Video], count: int) -> list[Video]:
    """``count`` videos spread evenly over the age order (all when there are no more), youngest first."""
    ordered = sorted(videos, key=lambda v: (v[1], str(v[0])))
    if count >= len(ordered):
        return ordered
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, max(count, 1))).astype(int))
    return [ordered[i] for i in picks]


def heldout_videos(run_dir: str | Path) -> tuple[list[Video], list[str]]:
    """The held-out videos of a run (its ``heldout_predictions.csv``), each found through the cache index at
    the run config's ``data.cache_dir``; and a line for each one whose source file is gone."""
    from age_estimation.config import load_config
    from age_estimation.runs import CONFIG_NAME, PREDICTIONS_NAME

    run_dir = Path(run_dir)
    table = run_dir / PREDICTIONS_NAME
    if not table.is_file():
        raise FileNotFoundError(f"{table}: the run has no held-out predictions (not a finished training run?)")
    return cached_sources(load_config(run_dir / CONFIG_NAME).data.cache_dir, _heldout_ages(table))


def cached_sources(cache_dir: str | Path, ages: dict[str, tuple[str, float]]) -> tuple[list[Video], list[str]]:
    """(source path, age, subject) of each video id of ``ages`` (id -> (subject, true age)), found through
    the cache index at ``cache_dir``; and a line for each one whose source file is gone."""
    from age_estimation.data.cache import read_index

    index = read_index(cache_dir)["videos"]
    videos, missing = [], []
    for vid, (subject, age) in ages.items():
        source = Path(index[vid]["source"]) if vid in index else None
        if source is None or not source.is_file():
            missing.append(f"{vid}: " + (f"source video {source} not found" if source else
                                         f"not in the cache index at {cache_dir}"))
            continue
        videos.append((source, age, subject))
    return videos, missing


def _heldout_ages(path: Path) -> dict[str, tuple[str, float]]:
    """Video id -> (subject, true age) of a ``heldout_predictions.csv``. Read here rather than with
    ``evaluation.predictions.read_predictions_csv``, whose module imports Keras, so a TFLite run stays light."""
    with open(path, newline="") as handle:
        return {row["video_id"]: (row["subject"], float(row["age"])) for row in csv.DictReader(handle)}


def manifest_videos(path: str | Path) -> tuple[list[Video], list[str]]:
    """The videos of a CSV manifest (path, age, subject columns); and a line for each row left out."""
    from age_estimation.data.manifest import scan_csv_manifest

    scan = scan_csv_manifest(path)
    return [(row.path, row.age, row.subject) for row in scan.rows], [str(p) for p in scan.problems]


def _predicted(predict_fn: PredictFn, paths: list[Path], label: str, progress: bool) -> list[Any]:
    """``predict_fn``'s results for ``paths``, with a progress bar. A video whose prediction raised anything
    but a ``PredictionError`` is a ``PredictCrash`` (predict is called again for the videos after it); an
    error from calling ``predict_fn`` itself (its setup) propagates."""
    results: list[Any] = []
    with progress_bar(total=len(paths), desc=f"{label}: predict", unit="video", leave=False,
                      disable=not progress, file=sys.stderr) as bar:
        while len(results) < len(paths):
            rest = paths[len(results):]
            answers = iter(predict_fn(rest))
            done = len(results)
            try:
                for answer in answers:
                    results.append(answer)
                    bar.update()
            except Exception as err:  # noqa: BLE001 - a crash in predict is a finding, not the end of the run
                results.append(PredictCrash(f"{rest[len(results) - done]}: {type(err).__name__}: {err}"))
                bar.update()
                continue
            if len(results) < len(paths):
                raise ValueError(f"{label}: predict gave {len(results)} results for {len(paths)} videos")
    return results


def _write_copies(
    paths: list[Path], folder: Path, name: str, severity: int | None, label: str, progress: bool
) -> tuple[list[Path | None], dict[int, CorruptionError]]:
    """The corrupted copy of each video (None where it could not be written, with the error by position)."""
    copies: list[Path | None] = []
    failures: dict[int, CorruptionError] = {}
    for i, path in enumerate(progress_bar(paths, desc=f"{label}: corrupt", unit="video", leave=False,
                                          disable=not progress, file=sys.stderr)):
        suffix = path.suffix if name == "byte_damage" else ".mp4"
        try:
            copies.append(write_corrupted(path, folder / f"{i:04d}-{path.stem}{suffix}", name, severity))
        except CorruptionError as err:
            copies.append(None)
            failures[i] = err
    return copies, failures


def _merge(copies: list[Path | None], results: list[Any], failures: dict[int, CorruptionError]) -> list[Any]:
    """Results back in video order, with each copy that could not be written as its ``CorruptionError``."""
    answers = iter(results)
    return [failures[i] if copy is None else next(answers) for i, copy in enumerate(copies)]


def _report(row: dict[str, Any], progress: bool) -> None:
    """One line on stderr per finished row."""
    if not progress:
        return
    coverage = "-" if row["coverage"] is None else f"{row['coverage']:.0%}"
    ratio = "-" if row["width_ratio"] is None else f"{row['width_ratio']:.2f}"
    crashed = f", {row['crashed']} crashed" if row["crashed"] else ""
    print(f"{time.strftime('%H:%M:%S')} {row_label(row):<16} {row['abstained']}/{row['videos']} abstained{crashed}, "
          f"coverage {coverage}, width ratio {ratio}", file=sys.stderr, flush=True)


def _result_json(result: Any) -> dict[str, Any]:
    """One video's outcome in a row: its age and interval, or why it has none."""
    if isinstance(result, CorruptionError):
        return {"not_written": str(result)}
    if isinstance(result, PredictionError):
        return {"abstained": str(result)}
    if isinstance(result, PredictCrash):
        return {"crashed": str(result)}
    interval = None if result.interval is None else [round(float(b), 3) for b in result.interval]
    out: dict[str, Any] = {"age": round(float(result.age), 3), "interval": interval}
    # What the widening on atypical input is calibrated from (evaluation.input_calibration), where predict gave it.
    for name in ("flip_gap", "atypicality"):
        if getattr(result, name, None) is not None:
            out[name] = round(float(getattr(result, name)), 4)
    if getattr(result, "quality", None) is not None:
        out["quality"] = result.quality.to_json()
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
