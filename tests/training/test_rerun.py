"""A run off a terminal logs one line per epoch, and a deterministic config gives the same held-out MAE twice."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from age_estimation.training.callbacks import read_history
from tests.training.processes import run_together, train_args, weights

pytestmark = pytest.mark.slow

EPOCHS = 2
STEP_LINE = re.compile(r"^\d+/\d+ ")  # Keras' progress: the bar ("2/3 ━━━ ...") or the epoch line ("3/3 - 4s ...")


def test_two_deterministic_runs_to_a_file_log_each_epoch_once_and_agree(tiny_root, tmp_path):
    overrides = ("runtime.deterministic=true", f"train.epochs={EPOCHS}", "train.steps_per_epoch=3",
                 "train.bn_recalibration_batches=2", "train.early_stopping_patience=5")
    commands = [(train_args(tiny_root, f"runtime.runs_dir={tmp_path / f'runs{i}'}", *overrides, as_json=False), {})
                for i in range(2)]
    outputs = run_together(commands, tmp_path, timeout=400)
    for out in outputs:
        assert "\r" not in out, out[-2000:]
        lines = out.splitlines()
        assert [line for line in lines if line.startswith("Epoch ")] == [f"Epoch {e}/{EPOCHS}" for e in
                                                                        range(1, EPOCHS + 1)], out[-2000:]
        progress = [line for line in lines if STEP_LINE.match(line)]
        assert len(progress) == EPOCHS and all(" - val_age_mae: " in line for line in progress), progress
        assert lines[-2].startswith("interval: 90% nominal, ") and lines[-1].startswith("held-out MAE: ")
    first, second = (next(line for line in out.splitlines() if line.startswith("held-out MAE: ")) for out in outputs)
    assert first == second
    # to the last bit: the same weights, training log and held-out figures
    runs = [Path(re.search(r"^run directory: (\S+)", out, re.MULTILINE).group(1)) for out in outputs]
    a, b = (weights(run / "checkpoints" / "best.weights.h5") for run in runs)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert read_history(runs[0]) == read_history(runs[1])
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert metrics[0]["heldout"] == metrics[1]["heldout"] and metrics[0]["interval"] == metrics[1]["interval"]
