"""How unlike the calibration videos a video's input is, and how much wider its interval must then be.

A video's *atypicality* is the root sum of squares of the robust z-scores of its input measures
(``MEASURES``: the face's brightness, contrast and sharpness, its re-blur ratio and sharpness per grey
level of contrast, its size, the detector's score, the landmarks' jitter, the share of frames the face
mesh found and the test-time-flip gap) against the clean validation videos read through ``predict``; a
measure counts only in the direction that makes the input worse (a smaller face, a lower score, more
jitter). ``fit_widening`` bins the atypicality of clean and corrupted copies of the validation
videos (``evaluation.input_calibration``) and gives each bin above the typical one the factor by which
its residuals' conformal quantile exceeds the clean one, so an input like a bin's copies gets an
interval that holds there too; beyond the atypicality the copies reached, ``predict`` refuses. numpy
only, so every runtime (the edge path included) widens the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "split-conformal per atypicality bin, over clean and corrupted copies of the validation videos"


@dataclass(frozen=True)
class Measure:
    """One input measure: its key in ``predict --json``'s quality (or the flip gap), whether it is compared
    on a log scale, and which way is worse (0 both, -1 lower, +1 higher)."""

    name: str
    log: bool
    worse: int
    words: str  # how a refusal names it


MEASURES = (
    Measure("brightness", False, 0, "mean brightness"),
    Measure("contrast", False, 0, "contrast"),
    Measure("sharpness", True, 0, "sharpness"),
    Measure("reblur_ratio", True, 0, "re-blur ratio (high: blurred, low: noisy)"),
    Measure("relative_sharpness", True, 0, "sharpness per grey level of contrast"),
    Measure("eye_distance_px", True, -1, "eye distance (px)"),
    Measure("detector_score", False, -1, "face detector score"),
    Measure("landmark_jitter", True, 1, "landmark jitter"),
    Measure("mesh_found", False, -1, "share of frames with a face mesh"),
    Measure("flip_gap", False, 1, "mirror-image disagreement (years)"),
)
BY_NAME = {m.name: m for m in MEASURES}
FLOOR = 1e-3  # smallest value of a log-scale measure, and smallest robust spread of any
MIN_PER_BIN = 20  # calibration copies a bin above the typical one needs for its own quantile
BINS = 4  # bins above the typical one, of equal counts of calibration copies
TYPICAL = 0.95  # the typical bin holds this share of the clean calibration videos
TYPICAL_Z = 2.0  # a refusal or note names a measure's clean range as its median +- this many spreads


def input_measures(quality: Mapping[str, Any] | None, flip_gap: float | None) -> dict[str, float]:
    """The measures of one answer: its quality object (``VideoQuality.to_json``) and flip gap; NaN where absent."""
    values = dict(quality or {}, flip_gap=flip_gap)
    return {m.name: float("nan") if values.get(m.name) is None else float(values[m.name]) for m in MEASURES}


@dataclass(frozen=True)
class Judgement:
    """What ``Atypicality.judge`` says of one video: its atypicality (None: not judged, the model has no
    widening), the interval's factor, and a refusal or a note for the reader (None when typical)."""

    score: float | None
    factor: float
    refusal: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Atypicality:
    """The clean validation videos' median and robust spread of each measure, the atypicality bins above the
    typical one (their lower edges) with their interval factors, and the highest atypicality calibrated;
    ``names`` are the measures it was calibrated with (a run calibrated before a measure was added keeps
    scoring without it)."""

    medians: tuple[float, ...]
    spreads: tuple[float, ...]
    edges: tuple[float, ...]
    factors: tuple[float, ...]
    limit: float
    videos: int
    names: tuple[str, ...] = tuple(BY_NAME)

    @property
    def measure_specs(self) -> list[Measure]:
        """The ``Measure`` of each of ``names``, in the order of ``medians`` and ``spreads``."""
        return [BY_NAME[name] for name in self.names]

    def score(self, measures: Mapping[str, float]) -> tuple[float, str]:
        """(atypicality, the measure furthest out) of a video's ``input_measures``: the root sum of squares of
        the measures' z-scores, so several measures at the edge of the clean range together count as far
        out as one beyond it; (0, '') when none is known."""
        best, which, total = 0.0, "", 0.0  # the largest z names the measure; all of them set the score
        for measure, median, spread in zip(self.measure_specs, self.medians, self.spreads):
            value = measures.get(measure.name, float("nan"))
            if not math.isfinite(value) or not math.isfinite(median):
                continue
            z = (_scaled(measure, value) - median) / spread
            z = abs(z) if measure.worse == 0 else max(0.0, z * measure.worse)
            total += z * z
            if z > best:
                best, which = z, measure.name
        return math.sqrt(total), which

    def factor(self, atypicality: float) -> float:
        """How many times the typical interval's width an input of this atypicality gets (1 when typical)."""
        bin_index = int(np.searchsorted(np.asarray(self.edges, float), atypicality, side="right"))
        return 1.0 if bin_index == 0 else float(self.factors[bin_index - 1])

    def judge(self, measures: Mapping[str, float]) -> Judgement:
        """The atypicality of a video's ``input_measures``, its interval factor, and a refusal (beyond the
        calibrated limit) or a note (widened) that names the measure furthest out and its typical range."""
        score, which = self.score(measures)
        factor = self.factor(score)
        if score <= self.limit and factor <= 1.0:
            return Judgement(score, 1.0)
        i = self.names.index(which)
        low, high = self.medians[i] - TYPICAL_Z * self.spreads[i], self.medians[i] + TYPICAL_Z * self.spreads[i]
        if BY_NAME[which].log:
            low, high = math.exp(low), math.exp(high)
        cause = (f"atypicality {score:.1f}, most of it its {BY_NAME[which].words} {measures[which]:.3g} (clean "
                 f"validation videos: {max(low, 0.0):.3g}-{high:.3g})")
        if score > self.limit:
            return Judgement(score, factor, refusal=(
                f"input unlike any video the interval was calibrated on: {cause}; calibrated up to {self.limit:.1f}"))
        return Judgement(score, factor, note=f"input less typical than the validation videos ({cause}): "
                                             f"interval widened {factor:.2f}x")

    def to_json(self) -> dict[str, Any]:
        """The ``atypicality`` object of ``interval.json`` and of every deployment spec's interval."""
        return {"method": METHOD, "measures": list(self.names), "medians": list(self.medians),
                "spreads": list(self.spreads), "edges": list(self.edges), "factors": list(self.factors),
                "limit": self.limit if math.isfinite(self.limit) else None, "videos": self.videos}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Atypicality:
        """What ``to_json`` wrote; a missing key, a measure this version does not know, or a median or spread
        too few is a ``ValueError`` naming it."""
        missing = [k for k in ("measures", "medians", "spreads", "edges", "factors") if k not in data]
        if missing:
            raise ValueError(f"interval widening (atypicality) lacks {', '.join(missing)}")
        names = tuple(str(name) for name in data["measures"])
        unknown = [name for name in names if name not in BY_NAME]
        if unknown:
            raise ValueError(f"atypicality measures {', '.join(unknown)} are not this version's "
                             f"({', '.join(BY_NAME)}); recalibrate the run")
        if not len(data["medians"]) == len(data["spreads"]) == len(names):
            raise ValueError(f"atypicality has {len(names)} measures but {len(data['medians'])} medians and "
                             f"{len(data['spreads'])} spreads")
        return cls(medians=tuple(float(v) for v in data["medians"]), spreads=tuple(float(v) for v in data["spreads"]),
                   edges=tuple(float(v) for v in data["edges"]), factors=tuple(float(v) for v in data["factors"]),
                   limit=math.inf if data.get("limit") is None else float(data["limit"]),
                   videos=int(data.get("videos", 0)), names=names)


def fit_reference(clean: list[Mapping[str, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Median and robust spread (1.4826 x the median absolute deviation, at least ``FLOOR``) of each measure
    over the clean videos' ``input_measures``; NaN for a measure no video has."""
    medians, spreads = [], []
    for measure in MEASURES:
        values = np.array([_scaled(measure, m[measure.name]) for m in clean if math.isfinite(m[measure.name])])
        if not len(values):
            medians.append(float("nan"))
            spreads.append(1.0)
            continue
        median = float(np.median(values))
        medians.append(median)
        spreads.append(max(1.4826 * float(np.median(np.abs(values - median))), FLOOR))
    return tuple(medians), tuple(spreads)


def fit_widening(
    clean: list[Mapping[str, float]],
    copies: list[tuple[Mapping[str, float], float]],
    base_quantile: float,
    coverage: float,
) -> Atypicality:
    """The atypicality bins and factors from clean validation videos' measures and from (measures, normalised
    residual) pairs of every answered copy, clean and corrupted: the residual |true - predicted| over the
    interval's residual scale at that prediction, whose ``coverage`` quantile on clean videos is
    ``base_quantile``.

    The typical bin holds ``TYPICAL`` of the clean videos and keeps the clean interval. Above it, ``BINS``
    bins of equal counts of copies each get the conformal quantile of their residuals over ``base_quantile``
    (never below the bin before), with fewer bins where ``MIN_PER_BIN`` copies a bin are lacking. The limit
    is the highest atypicality a calibrated bin reached; with no bin calibrated there is none (every input
    keeps the clean interval).
    """
    medians, spreads = fit_reference(clean)
    partial = Atypicality(medians, spreads, (), (), math.inf, len(clean))
    typical = float(np.quantile([partial.score(m)[0] for m in clean], TYPICAL)) if clean else 0.0
    scored = np.array([(partial.score(m)[0], r) for m, r in copies], float).reshape(-1, 2)
    above = scored[scored[:, 0] >= typical]
    above = above[np.argsort(above[:, 0])]
    edges, factors, lower, limit = [], [], typical, math.inf
    for chunk in np.array_split(above, min(BINS, len(above) // MIN_PER_BIN)) if len(above) >= MIN_PER_BIN else []:
        quantile = conformal_quantile(chunk[:, 1], coverage)
        edges.append(lower)
        factors.append(max(quantile / max(base_quantile, FLOOR), factors[-1] if factors else 1.0))
        lower = limit = float(chunk[-1, 0])
    return Atypicality(medians, spreads, tuple(edges), tuple(factors), limit, len(clean))


def conformal_quantile(residuals: np.ndarray, coverage: float) -> float:
    """The ⌈(n+1)·coverage⌉-th smallest residual (the largest with too few)."""
    ordered = np.sort(np.asarray(residuals, float))
    return float(ordered[min(math.ceil((len(ordered) + 1) * coverage), len(ordered)) - 1])


def _scaled(measure: Measure, value: float) -> float:
    return math.log(max(value, FLOOR)) if measure.log else value
