import math

import numpy as np
import pytest

from age_estimation.inference.atypicality import (
    BINS,
    MEASURES,
    MIN_PER_BIN,
    Atypicality,
    fit_reference,
    fit_widening,
    input_measures,
)
from age_estimation.inference.interval import IntervalCalibration, fit_interval


def measures(rng: np.random.Generator, score_drop: float = 0.0, **fixed: float) -> dict[str, float]:
    """A video's input measures like the clean synthetic ones, its detector score lowered by ``score_drop``."""
    values = {"brightness": rng.normal(120, 25), "contrast": rng.normal(28, 6), "sharpness": rng.lognormal(4.9, 0.2),
              "reblur_ratio": rng.lognormal(-0.8, 0.1), "relative_sharpness": rng.lognormal(1.3, 0.2),
              "eye_distance_px": rng.normal(35, 3), "detector_score": rng.normal(0.88, 0.03) - score_drop,
              "landmark_jitter": rng.lognormal(-4, 0.3), "mesh_found": min(1.0, rng.normal(0.95, 0.04)),
              "flip_gap": abs(rng.normal(0, 2))}
    return {**values, **fixed}


def test_input_measures_reads_the_quality_object_and_marks_what_is_missing():
    got = input_measures({"brightness": 100.0, "contrast": None, "damaged_frames": 2}, flip_gap=1.5)
    assert list(got) == [m.name for m in MEASURES]
    assert got["brightness"] == 100.0 and got["flip_gap"] == 1.5
    assert math.isnan(got["contrast"]) and math.isnan(got["detector_score"])


def test_a_measure_counts_only_in_the_direction_that_makes_the_input_worse():
    rng = np.random.default_rng(0)
    medians, spreads = fit_reference([measures(rng) for _ in range(200)])
    typical = Atypicality(medians, spreads, (), (), math.inf, 200)
    centre = {m.name: (math.exp(v) if m.log else v) for m, v in zip(MEASURES, medians)}
    assert typical.score(centre)[0] == pytest.approx(0.0, abs=1e-9)
    assert typical.score({**centre, "detector_score": 0.99})[0] == pytest.approx(0.0, abs=1e-9)  # surer: not worse
    low, which = typical.score({**centre, "detector_score": 0.6})
    assert which == "detector_score" and low > 5
    assert typical.score({**centre, "brightness": 250.0})[1] == "brightness"  # both ways count for brightness
    assert typical.score({**centre, "flip_gap": float("nan")})[0] == pytest.approx(0.0, abs=1e-9)  # unknown: ignored


def calibration_copies(rng: np.random.Generator, count: int = 600) -> tuple[list, list]:
    """Clean measures, and (measures, normalised residual) copies whose residual grows with the score drop."""
    clean = [measures(rng) for _ in range(150)]
    copies = []
    for i in range(count):
        drop = 0.0 if i < count // 3 else rng.uniform(0.0, 0.3)
        copies.append((measures(rng, drop), abs(rng.normal(0, 1.0 + 10 * drop))))
    return clean, copies


def test_the_widening_grows_with_atypicality_and_holds_in_every_bin():
    rng = np.random.default_rng(1)
    clean, copies = calibration_copies(rng)
    base = float(np.quantile([r for _, r in copies[:200]], 0.9))
    widening = fit_widening(clean, copies, base, 0.9)
    assert len(widening.factors) == BINS and list(widening.factors) == sorted(widening.factors)
    assert widening.factors[-1] > 2 and widening.limit == pytest.approx(max(widening.score(m)[0] for m, _ in copies))
    # New copies from the same process: each widened bin's copies are covered about 90% of the time (the
    # typical bin keeps the clean interval, whatever the copies that look typical there).
    _, fresh = calibration_copies(np.random.default_rng(2), 3000)
    scores = np.array([widening.score(m)[0] for m, _ in fresh])
    inside = np.array([r <= base * widening.factor(s) for (_, r), s in zip(fresh, scores)])
    for low, high in zip(widening.edges, (*widening.edges[1:], widening.limit)):
        chosen = (scores >= low) & (scores < high)
        assert inside[chosen].mean() > 0.84, (low, high, inside[chosen].mean())


def test_judge_keeps_typical_input_widens_atypical_and_refuses_beyond_the_limit():
    rng = np.random.default_rng(3)
    clean, copies = calibration_copies(rng)
    widening = fit_widening(clean, copies, 1.6, 0.9)
    typical = widening.judge(clean[0] if widening.score(clean[0])[0] < widening.edges[0] else clean[1])
    assert typical.factor == 1.0 and typical.refusal is None and typical.note is None
    worse = widening.judge(measures(rng, 0.15))
    assert worse.factor > 1 and worse.refusal is None and "face detector score" in worse.note
    assert f"widened {worse.factor:.2f}x" in worse.note
    beyond = widening.judge(measures(rng, detector_score=0.05))
    assert beyond.refusal.startswith("input unlike any video the interval was calibrated on")
    assert "face detector score 0.05" in beyond.refusal and f"calibrated up to {widening.limit:.1f}" in beyond.refusal


def test_too_few_atypical_copies_calibrate_no_bin_and_refuse_nothing():
    rng = np.random.default_rng(4)
    clean = [measures(rng) for _ in range(40)]
    copies = [(measures(rng, 0.2), 5.0) for _ in range(MIN_PER_BIN - 1)]
    widening = fit_widening(clean, copies, 1.6, 0.9)
    assert widening.factors == () and widening.limit == math.inf
    judged = widening.judge(measures(rng, 0.3))
    assert judged.factor == 1.0 and judged.refusal is None


def test_the_interval_carries_the_widening_through_json():
    rng = np.random.default_rng(5)
    clean, copies = calibration_copies(rng)
    interval = fit_interval(np.arange(40.0), np.arange(40.0) + rng.normal(0, 3, 40), bins=1)
    widened = IntervalCalibration.from_json({**interval.to_json(),
                                             "atypicality": fit_widening(clean, copies, 1.6, 0.9).to_json()})
    assert widened.atypicality == fit_widening(clean, copies, 1.6, 0.9)
    low, high = widened.bounds(30.0)
    wide_low, wide_high = widened.bounds(30.0, factor=2.0)
    assert wide_high - wide_low == pytest.approx(2 * (high - low))
    assert IntervalCalibration.from_json(interval.to_json()).atypicality is None
    unbounded = fit_widening(clean, copies[:5], 1.6, 0.9)
    assert Atypicality.from_json(unbounded.to_json()).limit == math.inf


def test_widening_of_unknown_measures_is_refused_by_name():
    rng = np.random.default_rng(6)
    data = fit_widening(*calibration_copies(rng), 1.6, 0.9).to_json()
    with pytest.raises(ValueError, match="measures glare are not this version's .*recalibrate the run"):
        Atypicality.from_json({**data, "measures": ["glare", *data["measures"][1:]]})
    with pytest.raises(ValueError, match="1 measures but"):
        Atypicality.from_json({**data, "measures": ["brightness"]})
    with pytest.raises(ValueError, match="interval widening .atypicality. lacks spreads, factors"):
        Atypicality.from_json({k: v for k, v in data.items() if k not in ("spreads", "factors")})


def test_a_widening_calibrated_on_fewer_measures_scores_with_those_alone():
    rng = np.random.default_rng(7)
    data = fit_widening(*calibration_copies(rng), 1.6, 0.9).to_json()
    keep = [i for i, name in enumerate(data["measures"]) if name not in ("reblur_ratio", "relative_sharpness")]
    older = Atypicality.from_json({**data, **{key: [data[key][i] for i in keep]
                                              for key in ("measures", "medians", "spreads")}})
    assert older.names == tuple(data["measures"][i] for i in keep)
    video = measures(rng)
    blurred = {**video, "reblur_ratio": 0.9}  # far out on a measure the older widening does not have
    assert older.score(blurred) == older.score(video)
    assert Atypicality.from_json(data).score(blurred)[1] == "reblur_ratio"
