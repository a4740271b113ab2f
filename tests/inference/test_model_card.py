"""The model card: built from a run's config and figures, JSON round trip, the lines predict shows."""

import json

import pytest

from age_estimation.config import load_config
from age_estimation.inference.model_card import SYNTHETIC_NOTICE, ModelCard

COUNTS = {"train": {"videos": 40, "subjects": 12}, "heldout": {"videos": 10, "subjects": 3}}
INTERVAL = {"coverage": 0.9, "empirical_coverage": 0.88, "mean_width": 11.5}


def test_from_run_reads_the_config_and_figures(tmp_path):
    config = tmp_path / "default.yaml"
    config.write_text("data:\n  source: csv\n  path: data/real\n")
    card = ModelCard.from_run(load_config(config), COUNTS, 5.123456, INTERVAL, "2025-03-04")
    assert (card.config, card.data_source, card.data_path, card.synthetic) == ("default.yaml", "csv", "data/real", False)
    assert card.splits == COUNTS and card.trained == "2025-03-04"
    assert (card.coverage, card.heldout_coverage, card.mean_interval_width) == (0.9, 0.88, 11.5)
    assert card.heldout_mae == 5.1235
    assert card.synthetic_notice() is None
    line = card.summary_line()
    for part in ("2025-03-04", "csv data at data/real, 40/10 videos and 12/3 subjects (train/heldout)",
                 "MAE 5.12 years", "90% interval held 88%", "config default.yaml"):
        assert part in line
    assert card.short() == "csv data, held-out MAE 5.1 y, 2025-03-04"


def test_synthetic_card_has_the_notice_and_a_date_by_default():
    card = ModelCard.from_run(load_config(None), COUNTS, None)
    assert card.synthetic and card.synthetic_notice() == SYNTHETIC_NOTICE
    assert card.config == "<defaults>" and len(card.trained) == 10 and card.heldout_mae is None
    assert "MAE" not in card.summary_line() and card.short().startswith("synthetic data, ")


def test_json_round_trip_and_missing_keys():
    card = ModelCard.from_run(load_config(None), COUNTS, 5.0, INTERVAL, "2025-01-01")
    assert ModelCard.from_json(json.loads(json.dumps(card.to_json())) | {"future_key": 1}) == card
    with pytest.raises(ValueError, match="model card lacks data_source, synthetic"):
        ModelCard.from_json({"config": "x", "data_path": "p", "splits": {}})
