"""The corruption benchmark's goals and its markdown page.

The goals are issue 33's: on the videos that got an age, the interval covers the true age at least 85% of the
time at every corruption and severity; at most 2% of clean held-out videos are refused; and on average a
corrupted copy's interval is no narrower than its clean original's (mean width ratio at least 1). A row where
every video was refused has no coverage to miss. Any crash of predict (an error other than a refusal) is listed
too: the product must answer or refuse, never fail.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from age_estimation.evaluation.corruptions import CORRUPTIONS, number_text
from age_estimation.evaluation.robustness import row_label

MIN_COVERAGE = 0.85  # on answered videos, at every corruption and severity
MAX_CLEAN_ABSTENTION = 0.02  # on clean held-out videos
MIN_WIDTH_RATIO = 1.0  # corrupted width / clean width, on average
NOTE = ("Coverage, MAE and width are over the videos that got an age; width ratio is the mean of each copy's "
        "interval width over its clean original's, on videos answered in both.")


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which rows of a ``corruption_table`` miss the goals: coverage, clean abstentions, corrupted widths."""
    clean = rows[0]
    corrupted = [r for r in rows if r["corruption"] != "clean"]
    ratios = [r["width_ratio"] for r in corrupted if r["width_ratio"] is not None]
    return {
        "min_coverage": MIN_COVERAGE,
        "coverage_below": [row_label(r) for r in rows if r["coverage"] is not None and r["coverage"] < MIN_COVERAGE],
        "max_clean_abstention": MAX_CLEAN_ABSTENTION,
        "clean_abstention": clean["abstention_rate"],
        "clean_abstention_met": (clean["abstention_rate"] or 0.0) <= MAX_CLEAN_ABSTENTION,
        "min_width_ratio": MIN_WIDTH_RATIO,
        "mean_width_ratio": sum(ratios) / len(ratios) if ratios else None,
        "narrower_on_average": [row_label(r) for r in corrupted
                                if r["width_ratio"] is not None and r["width_ratio"] < MIN_WIDTH_RATIO],
        "crashed": [row_label(r) for r in rows if r["crashed"]],
    }


def machine_line() -> str:
    """The machine a benchmark ran on, e.g. 'host (Linux x86_64, 2 CPUs, Python 3.11.9)'."""
    return (f"{platform.node() or 'unknown host'} ({platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()})")


def markdown_report(table: dict[str, Any]) -> str:
    """The table as a markdown page: a header (``table["header"]``: command, run, runtime, date, machine),
    the corruptions used, one line per row, the abstention reasons and the goals."""
    lines = ["# Corruption benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in table.get("header", {}).items()]
    lines += [f"- videos: {len(table['videos'])}", ""]
    lines += _table_lines(table["rows"])
    lines += ["", NOTE, ""]
    lines += _reason_lines(table["rows"])
    lines += _goal_lines(table.get("goals") or goals(table["rows"]))
    used = dict.fromkeys(r["corruption"] for r in table["rows"] if r["corruption"] in CORRUPTIONS)
    lines += ["Corruptions: " + ("; ".join(_corruption_text(name) for name in used) or "none"), ""]
    return "\n".join(lines) + "\n"


def _table_lines(rows: list[dict[str, Any]]) -> list[str]:
    header = ("| corruption | severity | setting | videos | abstained | coverage | MAE | mean width "
              "| width ratio | narrower |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        severity = "-" if row["severity"] is None else str(row["severity"])
        narrower = "-" if not row["width_pairs"] else f"{row['narrower']}/{row['width_pairs']}"
        lines.append(
            f"| {row['corruption']} | {severity} | {row['setting']} | {row['videos']} "
            f"| {row['abstained']} ({_percent(row['abstention_rate'])}) | {_percent(row['coverage'])} "
            f"| {_number(row['mae'])} | {_number(row['mean_width'])} | {_number(row['width_ratio'], 2)} "
            f"| {narrower} |"
        )
    return lines


def _reason_lines(rows: list[dict[str, Any]]) -> list[str]:
    refused = [r for r in rows if r["reasons"] or r["not_written"] or r["crashed"]]
    if not refused:
        return ["No video was refused.", ""]
    lines = ["## Why videos were refused", ""]
    for row in refused:
        reasons = [f"{count} x \"{reason}\"" for reason, count in row["reasons"].items()]
        if row["not_written"]:
            reasons.append(f"{row['not_written']} x no copy written (unreadable source)")
        if row["crashed"]:
            reasons.append(f"{row['crashed']} x predict crashed (the error is in the JSON)")
        lines.append(f"- {row_label(row)}: " + "; ".join(reasons))
    return lines + [""]


def _goal_lines(met: dict[str, Any]) -> list[str]:
    coverage = ", ".join(met["coverage_below"]) or "none"
    narrower = ", ".join(met["narrower_on_average"]) or "none"
    clean = "met" if met["clean_abstention_met"] else "missed"
    ratio = _number(met["mean_width_ratio"], 2)
    return [
        "## Goals (issue 33)", "",
        f"- coverage at least {met['min_coverage']:.0%} on answered videos everywhere; below it: {coverage}",
        f"- clean abstentions at most {met['max_clean_abstention']:.0%}: {_percent(met['clean_abstention'])} ({clean})",
        f"- corrupted intervals no narrower than clean on average: mean width ratio {ratio}; below 1: {narrower}",
        f"- predict crashed (neither an age nor a refusal) in: {', '.join(met['crashed']) or 'none'}", "",
    ]


def _corruption_text(name: str) -> str:
    """'dark: 0.4/0.15/0.06 x brightness'."""
    corruption = CORRUPTIONS[name]
    return f"{name}: " + corruption.template.format("/".join(number_text(v) for v in corruption.levels.values()))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
