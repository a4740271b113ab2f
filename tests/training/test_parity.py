"""One deterministic training three times at once: ``fit`` twice (a run off a terminal logs one line per epoch,
and the second run is the first to the last bit) and the multi-worker loop with one worker (the same weights
and logs as ``fit``); and the learning-rate plateau in both."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from age_estimation.training.callbacks import read_history
from tests.training.processes import run_together, train_args, weights

pytestmark = pytest.mark.slow

DETERMINISTIC = ("runtime.deterministic=true", "runtime.seed=3")
EPOCHS = 2
STEP_LINE = re.compile(r"^\d+/\d+ ")  # Keras' progress: the bar ("2/3 ━━━ ...") or the epoch line ("3/3 - 4s ...")


def train_together(root: Path, folder: Path, strategies: tuple[str, ...], *overrides: str) -> list[tuple[Path, str]]:
    """Train once per strategy (``default``: ``fit``; ``multi_worker`` without TF_CONFIG: the loop, one worker),
    all at once, printing the summary (not JSON); returns each run's (run directory, output)."""
    commands = [
        (train_args(root, f"runtime.runs_dir={folder / f'runs{i}'}", f"runtime.strategy={strategy}", *DETERMINISTIC,
                    *overrides, as_json=False), {})
        for i, strategy in enumerate(strategies)
    ]
    outputs = run_together(commands, folder, timeout=400)
    return [(Path(re.search(r"^run directory: (\S+)", out, re.MULTILINE).group(1)), out) for out in outputs]


def test_fit_twice_and_the_one_worker_loop_end_with_the_same_weights_and_logs(tiny_root, tmp_path):
    (fit_run, fit_out), (again_run, again_out), (loop_run, _) = train_together(
        tiny_root, tmp_path, ("default", "default", "multi_worker"), f"train.epochs={EPOCHS}",
        "train.steps_per_epoch=3", "train.ema=true", "train.bn_recalibration_batches=2",
        "train.early_stopping_patience=5", "inference.test_time_flip=false")

    # off a terminal, fit logs each epoch once and ends with the summary
    for out in (fit_out, again_out):
        assert "\r" not in out, out[-2000:]
        lines = out.splitlines()
        assert [line for line in lines if line.startswith("Epoch ")] == [f"Epoch {e}/{EPOCHS}" for e in
                                                                        range(1, EPOCHS + 1)], out[-2000:]
        progress = [line for line in lines if STEP_LINE.match(line)]
        assert len(progress) == EPOCHS and all(" - val_age_mae: " in line for line in progress), progress
        assert any(line.startswith("interval: 90% nominal, ") for line in lines[-3:]), lines[-3:]
        assert lines[-1].startswith("held-out MAE: "), lines[-1]
    first, second = (next(line for line in out.splitlines() if line.startswith("held-out MAE: "))
                     for out in (fit_out, again_out))
    assert first == second

    # a deterministic config trains the same run to the last bit: weights, training log, held-out figures
    a, b = weights(fit_run / "checkpoints" / "best.weights.h5"), weights(again_run / "checkpoints" / "best.weights.h5")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert read_history(fit_run) == read_history(again_run)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (fit_run, again_run)]
    assert metrics[0]["heldout"] == metrics[1]["heldout"] and metrics[0]["interval"] == metrics[1]["interval"]

    # the multi-worker loop with one worker is the same training as fit
    loop = weights(loop_run / "checkpoints" / "best.weights.h5")
    assert loop.keys() == a.keys()
    for name in a:
        np.testing.assert_allclose(a[name], loop[name], rtol=0, atol=1e-6, err_msg=name)
    fit_log, loop_log = read_history(fit_run), read_history(loop_run)
    assert fit_log.keys() == loop_log.keys()
    for key in fit_log:
        np.testing.assert_allclose(fit_log[key], loop_log[key], rtol=1e-6, err_msg=key)


def test_the_plateau_schedule_lowers_the_learning_rate_in_both(tiny_root, tmp_path):
    # EMA and BN statistics that barely move keep the validated weights (and val_age_mae) flat: no improvement.
    runs = train_together(tiny_root, tmp_path, ("default", "multi_worker"), "train.schedule=plateau",
                          "train.epochs=4", "train.steps_per_epoch=2", "train.early_stopping_patience=10",
                          "train.ema=true", "train.ema_momentum=0.999999", "model.batch_norm_momentum=0.999999",
                          "train.bn_recalibration_batches=0", "inference.test_time_flip=false")
    for run, _ in runs:
        rates = read_history(run)["learning_rate"]
        assert rates[:3] == pytest.approx([2e-3] * 3) and rates[3] == pytest.approx(1e-3), (run, rates)
