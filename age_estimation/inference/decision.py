"""An age-threshold decision from the calibrated interval: is this person at least T years old?

The answer is ``yes`` only when the whole interval lies at or above T, ``no`` when it lies wholly below,
and ``cannot tell`` otherwise, so a ``yes`` is wrong only when the true age falls below the interval's
lower bound (at most about half of the interval's miss rate). ``threshold_rates`` scores these decisions
on held-out videos with the rates that age-verification evaluations report (NIST FATE, age estimation
and verification): under-T subjects passed (false positives), over-T subjects refused, and undecided.
numpy only: every runtime decides the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

Decision = Literal["yes", "no", "cannot tell"]
THRESHOLDS = (13, 18, 21, 25)


def age_decision(low: float, high: float, threshold: float) -> Decision:
    """``yes`` if the interval (``low``, ``high``) is at or above ``threshold``, ``no`` if below it."""
    if low >= threshold:
        return "yes"
    if high < threshold:
        return "no"
    return "cannot tell"


def threshold_rates(
    true: Any, low: Any, high: Any, thresholds: Iterable[float] = THRESHOLDS
) -> dict[str, dict[str, Any]]:
    """Per threshold T: of the videos truly under T, the share passed (false positive rate) and undecided;
    of those at or over T, the share refused (``no``) and undecided; counts beside every rate (a rate of
    no video is None)."""
    true, low, high = (np.asarray(a, float).ravel() for a in (true, low, high))
    if not len(true) == len(low) == len(high):
        raise ValueError(f"need one interval per true age, got {len(true)}, {len(low)} and {len(high)}")
    rates = {}
    for threshold in thresholds:
        yes, no = low >= threshold, high < threshold
        undecided = ~(yes | no)
        under, over = true < threshold, true >= threshold
        rates[str(threshold)] = {
            "under": int(under.sum()),
            "over": int(over.sum()),
            "false_positive_rate": _share(yes, under),
            "under_undecided_rate": _share(undecided, under),
            "over_refused_rate": _share(no, over),
            "over_undecided_rate": _share(undecided, over),
            "undecided_rate": float(undecided.mean()) if len(true) else None,
        }
    return rates


def _share(event: np.ndarray, among: np.ndarray) -> float | None:
    return float(event[among].mean()) if among.any() else None
