"""The trials table: one row per trial with its score, the epochs it ran and its hyperparameters."""

import csv
import io
from types import SimpleNamespace

import keras_tuner as kt

from age_estimation.tuning.hypermodel import EPOCHS_METRIC, OBJECTIVE
from age_estimation.tuning.report import format_trials, trial_rows, trials_csv


def _trial(trial_id: str, epochs: int | None, score: float | None) -> kt.engine.trial.Trial:
    hp = kt.HyperParameters()
    hp.Choice("rnn", ["lstm", "gru"])
    hp.values["tuner/epochs"] = 9  # Hyperband's target, not what the trial ran
    trial = kt.engine.trial.Trial(hp, trial_id=trial_id, status="COMPLETED" if score is not None else "FAILED")
    if epochs is not None:
        for step in range(epochs):  # as the oracle records a trial: its values at the best epoch
            trial.metrics.update(EPOCHS_METRIC, float(epochs), step=step)
    if score is not None:
        trial.metrics.update(OBJECTIVE, score)
        trial.score = score
    return trial


def test_the_table_says_how_many_epochs_each_trial_ran():
    oracle = SimpleNamespace(trials={"00": _trial("00", 3, 5.5), "01": _trial("01", 1, 4.25),
                                     "02": _trial("02", None, None)})
    rows = trial_rows(oracle)
    assert [(row["trial_id"], row["epochs"], row["score"]) for row in rows] == [
        ("00", 3, 5.5), ("01", 1, 4.25), ("02", None, None)]
    assert rows[0]["hyperparameters"] == {"rnn": "lstm"}, "the tuner's own keys stay out of the table"
    table = list(csv.DictReader(io.StringIO(trials_csv(rows))))
    assert [row["epochs"] for row in table] == ["3", "1", ""]
    assert [row["score"] for row in table] == ["5.5000", "4.2500", ""]
    lines = format_trials(rows).splitlines()
    assert lines[0].split()[:4] == ["trial", "status", OBJECTIVE, "epochs"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["01", "COMPLETED", "4.250", "1"], ["00", "COMPLETED", "5.500", "3"], ["02", "FAILED", "-", "-"]]
