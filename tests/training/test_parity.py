"""``fit`` and the multi-worker loop (one worker) are one training: same weights, same logs, same LR plateau."""

import json
from pathlib import Path

import numpy as np
import pytest

from age_estimation.training.callbacks import read_history
from tests.training.processes import run_together, train_args, weights

pytestmark = pytest.mark.slow

DETERMINISTIC = ("runtime.deterministic=true", "runtime.seed=3")


def train_both(root: Path, folder: Path, *overrides: str) -> tuple[Path, Path]:
    """Train through ``fit`` and through the multi-worker loop (no TF_CONFIG: one worker), at once."""
    commands = [
        (train_args(root, f"runtime.runs_dir={folder / strategy}", f"runtime.strategy={strategy}", *DETERMINISTIC,
                    *overrides), {})
        for strategy in ("default", "multi_worker")
    ]
    outputs = run_together(commands, folder, timeout=400)
    fit_run, loop_run = (Path(json.loads(out.strip().splitlines()[-1])["run_dir"]) for out in outputs)
    return fit_run, loop_run


def test_fit_and_the_one_worker_loop_end_with_the_same_weights(tiny_root, tmp_path):
    fit_run, loop_run = train_both(tiny_root, tmp_path, "train.epochs=2", "train.steps_per_epoch=3",
                                   "train.ema=true", "train.bn_recalibration_batches=2")
    a, b = (weights(run / "checkpoints" / "best.weights.h5") for run in (fit_run, loop_run))
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6, err_msg=name)
    fit_log, loop_log = read_history(fit_run), read_history(loop_run)
    assert fit_log.keys() == loop_log.keys()
    for key in fit_log:
        np.testing.assert_allclose(fit_log[key], loop_log[key], rtol=1e-6, err_msg=key)


def test_the_plateau_schedule_lowers_the_learning_rate_in_both(tiny_root, tmp_path):
    # EMA and BN statistics that barely move keep the validated weights (and val_age_mae) flat: no improvement.
    runs = train_both(tiny_root, tmp_path, "train.schedule=plateau", "train.epochs=4", "train.steps_per_epoch=2",
                      "train.early_stopping_patience=10", "train.ema=true", "train.ema_momentum=0.999999",
                      "model.batch_norm_momentum=0.999999", "train.bn_recalibration_batches=0")
    for run in runs:
        rates = read_history(run)["learning_rate"]
        assert rates[:3] == pytest.approx([2e-3] * 3) and rates[3] == pytest.approx(1e-3), (run, rates)
