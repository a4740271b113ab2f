"""Scale-out: TF_CONFIG helpers, two MultiWorkerMirroredStrategy workers on 127.0.0.1, MirroredStrategy via fit."""

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np
import pytest

from age_estimation.training.callbacks import read_history
from age_estimation.training.multi_worker import is_chief, local_cluster, tf_config
from tests.conftest import TINY_CONFIG, tiny_overrides

RUN_FILES = ("config.yaml", "model.keras", "metrics.json", "heldout_predictions.csv", "checkpoints/best.weights.h5",
             "logs/training.csv", "plots/predicted_vs_true.png")


def test_tf_config_describes_each_task_of_the_cluster():
    config = tf_config(["a:1", "b:2"], 1)
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert tf_config(["a:1"], 0, "chief", chief="c:3")["cluster"]["chief"] == ["c:3"]
    with pytest.raises(ValueError, match="not in the cluster"):
        tf_config(["a:1"], 2)
    configs = [json.loads(text) for text in local_cluster(2)]
    assert [c["task"]["index"] for c in configs] == [0, 1]
    workers = configs[0]["cluster"]["worker"]
    assert workers == configs[1]["cluster"]["worker"] and len(set(workers)) == 2
    assert all(address.startswith("127.0.0.1:") for address in workers)


def test_the_chief_is_the_chief_task_or_worker_zero():
    assert is_chief(None, None)
    assert is_chief("worker", 0, {"worker": ["a", "b"]})
    assert not is_chief("worker", 1, {"worker": ["a", "b"]})
    assert not is_chief("worker", 0, {"chief": ["c"], "worker": ["a"]})
    assert is_chief("chief", 0, {"chief": ["c"], "worker": ["a"]})


def run_together(commands: list[tuple[list[str], dict[str, str]]], folder: Path, timeout: float) -> list[str]:
    """Start every ``(args, extra_env)`` at once, wait (bounded) for all, kill any left; each must exit 0.

    Returns each process's stdout; its output goes to files in ``folder`` (no pipe can fill up and block).
    """
    paths = [(folder / f"process{i}.out", folder / f"process{i}.err") for i in range(len(commands))]
    with ExitStack() as stack:
        processes = [
            subprocess.Popen(args, stdout=stack.enter_context(open(out, "w")),
                             stderr=stack.enter_context(open(err, "w")), env=dict(os.environ, **env))
            for (args, env), (out, err) in zip(commands, paths)
        ]
        deadline = time.monotonic() + timeout
        try:
            for process in processes:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    for process, (out, err) in zip(processes, paths):
        assert process.returncode == 0, out.read_text()[-2000:] + err.read_text()[-3000:]
    return [out.read_text() for out, _ in paths]


def _weights(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_the_chief_writes_the_run(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    overrides = tiny_overrides(tiny_root) + [f"runtime.runs_dir={runs}", "runtime.strategy=multi_worker",
                                             "train.epochs=2", "train.steps_per_epoch=3", "runtime.deterministic=true"]
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
    a, b = _weights(chief_dir / "checkpoints/best.weights.h5"), _weights(worker_dir / "checkpoints/best.weights.h5")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert chief["metrics"]["heldout"]["mae"] == worker["metrics"]["heldout"]["mae"]
    histories = [read_history(path) for path in (chief_dir, worker_dir)]
    assert histories[0]["val_age_mae"] == histories[1]["val_age_mae"]
    assert histories[0]["loss"] == histories[1]["loss"] and len(histories[0]["loss"]) == 2


@pytest.mark.slow
def test_mirrored_strategy_trains_through_fit_on_one_device(tiny_config, tmp_path):
    from age_estimation.training.fit import train

    result = train(tiny_config("runtime.strategy=mirrored", "train.epochs=1", f"runtime.runs_dir={tmp_path}"), verbose=0)
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name
    assert np.isfinite(result.metrics["heldout"]["mae"])


@pytest.mark.slow
def test_a_killed_multi_worker_run_resumes_from_its_last_epoch(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "age_estimation.cli.main", "train", "--config", str(TINY_CONFIG), "--no-export"]
    for item in tiny_overrides(tiny_root) + [f"runtime.runs_dir={runs}", "runtime.strategy=multi_worker",
                                             "train.epochs=3", "train.steps_per_epoch=6",
                                             "train.early_stopping_patience=5"]:
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


@pytest.mark.slow
def test_the_multi_worker_loop_validates_and_keeps_the_averaged_weights(tiny_config, tmp_path):
    import tensorflow as tf

    from age_estimation.data.pipeline import build_split_datasets
    from age_estimation.models.siam.model import build_siam
    from age_estimation.training.callbacks import cycle_inputs
    from age_estimation.training.multi_worker import _fit, _Loop, _Progress
    from age_estimation.training.optim import make_loss, make_optimizer
    from age_estimation.training.task import age_targets, age_view

    cfg = tiny_config("train.ema=true", "train.ema_momentum=0.5", "train.bn_recalibration_batches=2",
                      "train.epochs=1")
    split = build_split_datasets(cfg, seed=0, repeat_train=True)
    strategy = tf.distribute.get_strategy()
    model = build_siam(cfg.model, crop_size=32)
    fitted = age_view(model)
    optimizer = make_optimizer(cfg.train, 3)
    optimizer.build(fitted.trainable_variables)
    loop = _Loop(strategy, model, fitted, optimizer, make_loss(cfg.train), cfg.data.batch_size)
    loop.recalibration = cycle_inputs(age_targets(split.train))
    (tmp_path / "logs").mkdir()
    train_iter = iter(strategy.experimental_distribute_dataset(age_targets(split.train)))
    _, best, _ = _fit(cfg, loop, train_iter, age_targets(split.val), 3, tmp_path, False, _Progress())

    training = model.get_weights()
    assert any(not np.array_equal(kept, now) for kept, now in zip(best, training)), "kept the raw training weights"
    model.set_weights(best)
    _, mae = loop.evaluate(age_targets(split.val))
    assert read_history(tmp_path)["val_age_mae"][0] == pytest.approx(mae, rel=1e-5)
