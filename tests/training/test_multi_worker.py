"""Scale-out: two MultiWorkerMirroredStrategy workers on 127.0.0.1, a killed run resumed (MirroredStrategy via fit:
tests/test_workflow.py)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from age_estimation.training.callbacks import read_history
from age_estimation.training.cluster import local_cluster
from tests.conftest import TINY_CONFIG, tiny_overrides
from tests.training.processes import run_together, weights

# No BN recalibration and no test-time flip: seconds less per process, and what these tests check is the
# distribution, not the scoring.
QUICK_FINISH = ("train.bn_recalibration_batches=0", "inference.test_time_flip=false")
RUN_FILES = ("config.yaml", "model.keras", "metrics.json", "heldout_predictions.csv", "checkpoints/best.weights.h5",
             "logs/training.csv", "plots/predicted_vs_true.png")


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_the_chief_writes_the_run(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    overrides = tiny_overrides(tiny_root) + [f"runtime.runs_dir={runs}", "runtime.strategy=multi_worker",
                                             "train.epochs=2", "train.steps_per_epoch=3", "runtime.deterministic=true",
                                             *QUICK_FINISH]
    args = [sys.executable, "-m", "age_estimation.cli.main", "train", "--config", str(TINY_CONFIG), "--no-export", "--json"]
    for item in overrides:
        args += ["--set", item]
    outputs = run_together([(args, {"TF_CONFIG": config}) for config in local_cluster(2)], tmp_path, timeout=240)
    chief, worker = (json.loads(out.strip().splitlines()[-1]) for out in outputs)

    chief_dir, worker_dir = Path(chief["run_dir"]), Path(worker["run_dir"])
    assert chief_dir.parent == runs and worker_dir.parent == runs / "_workers"
    for name in RUN_FILES:
        assert (chief_dir / name).is_file(), name
    assert not (worker_dir / "model.keras").exists()
    assert chief["metrics"]["distribution"]["replicas"] == 2
    assert chief["metrics"]["epochs_run"] == worker["metrics"]["epochs_run"] == 2

    # identical weights on both workers, so identical held-out results
    a, b = weights(chief_dir / "checkpoints/best.weights.h5"), weights(worker_dir / "checkpoints/best.weights.h5")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert chief["metrics"]["heldout"]["mae"] == worker["metrics"]["heldout"]["mae"]
    histories = [read_history(path) for path in (chief_dir, worker_dir)]
    assert histories[0]["val_age_mae"] == histories[1]["val_age_mae"]
    assert histories[0]["loss"] == histories[1]["loss"] and len(histories[0]["loss"]) == 2


@pytest.mark.slow
def test_a_killed_multi_worker_run_resumes_from_its_last_epoch(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "age_estimation.cli.main", "train", "--config", str(TINY_CONFIG), "--no-export"]
    for item in tiny_overrides(tiny_root) + [f"runtime.runs_dir={runs}", "runtime.strategy=multi_worker",
                                             "train.epochs=3", "train.steps_per_epoch=6",
                                             "train.early_stopping_patience=5", *QUICK_FINISH]:
        args += ["--set", item]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline, killed = time.monotonic() + 180, None
        try:
            while killed is None and time.monotonic() < deadline and first.poll() is None:
                for state in runs.glob("ci_tiny-*/checkpoints/backup/epoch-*/state.json"):
                    first.kill()
                    killed = state.parents[3]
                time.sleep(0.02)
        finally:
            if first.poll() is None:
                first.kill()
            first.wait()
    assert killed is not None, (tmp_path / "first.log").read_text()[-3000:]
    assert not (killed / "model.keras").exists(), "the run finished before it could be killed"

    second = subprocess.run(args, check=False, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming multi-worker training after epoch" in second.stdout
    assert (killed / "model.keras").is_file() and not (killed / "checkpoints" / "backup").exists()
    assert [int(e) for e in read_history(killed)["epoch"]] == [0, 1, 2]
    assert len(list(runs.glob("ci_tiny-*"))) == 1, "the rerun continued the killed run instead of starting anew"
