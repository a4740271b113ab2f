from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from age_estimation.config import AtypicalityConfig
from age_estimation.evaluation.input_calibration import calibrate_atypicality, without_atypicality
from age_estimation.inference.interval import fit_interval
from age_estimation.inference.predict import PredictionError
from tests.evaluation.test_corruption import textured_frame, write_frames

AGES = [20.0 + 3 * i for i in range(16)]


@dataclass
class Quality:
    values: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.values


@dataclass
class Answer:
    age: float
    interval: tuple[float, float]
    quality: Quality
    flip_gap: float


def fake_predict(paths):
    """Clean videos: typical measures, an error of 1-3 years. Noisy copies: a detector score lowered by the
    severity and an error that grows with it. Dark copies: refused."""
    rng = np.random.default_rng(0)
    for path in paths:
        row, number = path.parent.name, int(path.stem.rsplit("v", 1)[-1])
        if row.startswith("dark"):
            yield PredictionError(f"{path}: too dark")
            continue
        severity = int(row[-1]) if row.startswith("noise") else 0
        error = (1 + number % 3) * (1 + 3 * severity) * rng.choice([-1, 1])
        quality = {"brightness": 120 + rng.normal(0, 10), "detector_score": 0.88 + rng.normal(0, 0.02) - 0.1 * severity}
        yield Answer(AGES[number] + error, (0.0, 100.0), Quality(quality), 1.0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration") / "originals"
    folder.mkdir()
    frames = [textured_frame(32, 32, seed=i) for i in range(3)]
    return [(write_frames(folder / f"v{i}.mp4", frames), age, f"s{i}") for i, age in enumerate(AGES)]


def test_the_widening_comes_from_the_copies_and_refused_ones_count_for_nothing(videos):
    interval = fit_interval(np.array(AGES), np.array(AGES) + 2.0, bins=1)
    cfg = AtypicalityConfig(videos=16, corruptions=["noise", "dark"], severities=[1, 2])
    widening, table = calibrate_atypicality(fake_predict, videos, interval, cfg)
    assert [row["corruption"] for row in table["rows"]] == ["clean", "noise", "noise", "dark", "dark"]
    assert widening.videos == 16 and len(widening.factors) >= 1
    assert widening.factors[-1] > 2  # a noisy copy errs by up to 21 years against a clean one's 3
    assert widening.limit < np.inf
    noisy = [r for r in table["rows"][2]["results"]]
    assert all("quality" in r and r["flip_gap"] == 1.0 for r in noisy)


def test_an_unknown_corruption_is_named(videos):
    interval = fit_interval(np.array(AGES), np.array(AGES) + 2.0, bins=1)
    with pytest.raises(ValueError, match="inference.atypicality.corruptions: unknown fog"):
        calibrate_atypicality(fake_predict, videos, interval, AtypicalityConfig(corruptions=["fog"]))


def test_without_atypicality_drops_only_the_widening():
    interval = fit_interval(np.array(AGES), np.array(AGES) + 2.0, bins=1)
    assert without_atypicality(interval) == interval and without_atypicality(None) is None


def test_validation_videos_come_through_the_cache_index_and_a_missing_source_is_named(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from age_estimation.atomic_files import write_json_atomic
    from age_estimation.config import AlignConfig, load_config
    from age_estimation.data.cache import empty_index
    from age_estimation.evaluation.input_calibration import validation_videos

    present = tmp_path / "a.mp4"
    present.write_bytes(b"x")
    index = empty_index(AlignConfig())
    index["videos"] = {"a-1": {"source": str(present), "subject": "s1", "age": 31},
                       "b-2": {"source": str(tmp_path / "gone.mp4"), "subject": "s2", "age": 40},
                       "c-3": {"source": str(present), "subject": "s3", "age": 50}}
    write_json_atomic(tmp_path / "cache" / "index.json", index)
    monkeypatch.setattr("age_estimation.evaluation.input_calibration.build_split_datasets",
                        lambda cfg, landmarks: SimpleNamespace(val_ids=["a-1", "b-2"]))
    videos = validation_videos(load_config(None, [f"data.cache_dir={tmp_path / 'cache'}"]))
    assert videos == [(present, 31.0, "s1")]
    assert "left out validation video b-2: source video" in capsys.readouterr().err
