"""Training: a complete run directory, resume after SIGKILL, NaN handling, config and data errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from age_estimation.cli.train import interval_line, summary_line
from age_estimation.config import ConfigError, load_config
from age_estimation.evaluation.predictions import collect_predictions
from age_estimation.inference.interval import IntervalCalibration
from age_estimation.inference.model_card import ModelCard
from age_estimation.inference.quality import FaceRanges
from age_estimation.runs import latest_run
from age_estimation.training.callbacks import NanGuard
from age_estimation.training.fit import train
from age_estimation.training.run import find_unfinished_run
from tests.conftest import TINY_CONFIG, tiny_overrides

pytestmark = pytest.mark.slow


def test_a_model_without_frames_trains_on_batches_that_carry_them(tiny_config):
    cfg = tiny_config("train.epochs=1", "model.variant=dynamics_only", "model.dynamics_units=8")
    result = train(cfg, verbose=0)
    assert set(result.model.input) == {"mask", "landmarks", "landmark_mask"}
    assert (result.run_dir / "model.keras").is_file() and np.isfinite(result.metrics["heldout"]["mae"])


def test_train_writes_a_complete_run_directory(tiny_config):
    cfg = tiny_config("train.epochs=2")
    result = train(cfg, verbose=0)
    run = result.run_dir
    for name in ("config.yaml", "model.keras", "metrics.json", "heldout_predictions.csv", "interval.json",
                 "model_card.json", "face_ranges.json", "checkpoints/best.weights.h5", "logs/training.csv",
                 "plots/predicted_vs_true.png", "plots/error_by_age_group.png", "plots/training_curves.png",
                 "plots/attention.png"):
        assert (run / name).is_file(), name
    assert list((run / "logs").rglob("events.out.tfevents*")), "no TensorBoard events"
    assert not (run / "checkpoints" / "backup").exists(), "backup must be removed after a finished run"
    metrics = json.loads((run / "metrics.json").read_text())
    heldout = metrics["heldout"]
    assert heldout["count"] == metrics["counts"]["heldout"] > 0
    assert np.isfinite(heldout["mae"]) and heldout["mean_predictor_mae"] > 0
    assert metrics["epochs_run"] == 2 and metrics["oracle_floor_mae"] >= 2.0
    assert load_config(run / "config.yaml").train.epochs == 2
    assert latest_run(cfg.runtime.runs_dir) == run
    assert summary_line(metrics).startswith("held-out MAE: ")
    # the interval: calibrated on the validation fold, scored on the held-out videos
    calibration = IntervalCalibration.from_json(json.loads((run / "interval.json").read_text()))
    assert calibration.coverage == cfg.inference.coverage
    assert calibration.calibration_videos == metrics["counts"]["val"]
    interval = metrics["interval"]
    assert 0.0 <= interval["empirical_coverage"] <= 1.0 and interval["mean_width"] > 0
    assert interval["videos"] == heldout["count"]
    groups = interval["by_age_group"]
    assert groups and sum(g["count"] for g in groups.values()) == heldout["count"]
    assert all(g["mean_width"] > 0 and 0.0 <= g["empirical_coverage"] <= 1.0 for g in groups.values())
    assert interval_line(metrics["interval"]).startswith("interval: 90% nominal, ")
    # the whole validation fold calibrates by default (data.calibration_share 0; ci_tiny's 3 could not split)
    assert interval["calibrated_on"] == "validation fold" and metrics["counts"]["calibration"] == 0
    levels = interval["levels"]
    assert set(levels) == {"0.5", "0.9", "0.95"} and levels["0.9"]["mean_width"] == interval["mean_width"]
    assert levels["0.5"]["mean_width"] <= levels["0.9"]["mean_width"] <= levels["0.95"]["mean_width"]
    assert set(metrics["age_threshold"]) == {"13", "18", "21", "25"}
    under_18 = int((result.heldout.true < 18).sum())
    assert metrics["age_threshold"]["18"]["under"] == under_18
    ranges = FaceRanges.from_json(json.loads((run / "face_ranges.json").read_text()))
    assert ranges.videos == metrics["counts"]["train"] and all(lo <= hi for lo, hi in zip(ranges.low, ranges.high))
    card = ModelCard.from_json(json.loads((run / "model_card.json").read_text()))
    assert card.synthetic and card.data_source == "synthetic" and card.config == "ci_tiny.yaml"
    assert card.splits["heldout"] == {"videos": metrics["counts"]["heldout"],
                                      "subjects": metrics["counts"]["subjects_heldout"]}
    assert card.heldout_mae == pytest.approx(heldout["mae"], abs=1e-4)
    assert card.heldout_coverage == pytest.approx(interval["empirical_coverage"], abs=1e-4)
    # model.keras comes last: a run with a model has its interval and card
    model_written = (run / "model.keras").stat().st_mtime_ns
    assert all((run / name).stat().st_mtime_ns <= model_written for name in ("interval.json", "model_card.json"))
    # the saved model reproduces the held-out predictions it was scored with, and the CSV holds them
    reloaded = collect_predictions(keras.saving.load_model(run / "model.keras"), cfg.data.cache_dir,
                                   result.heldout.video_ids, cfg.data,
                                   test_time_flip=cfg.inference.test_time_flip)
    assert reloaded.video_ids == result.heldout.video_ids
    np.testing.assert_allclose(reloaded.pred, result.heldout.pred, rtol=0, atol=1e-4)
    with open(run / "heldout_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["video_id"] for row in rows] == result.heldout.video_ids
    np.testing.assert_allclose([float(row["predicted"]) for row in rows], reloaded.pred, rtol=0, atol=0.0051)


def _launch(root: Path, log: Path) -> subprocess.Popen:
    overrides = tiny_overrides(root) + ["train.epochs=3", "train.steps_per_epoch=24", "train.early_stopping_patience=5"]
    args = [sys.executable, "-m", "age_estimation.cli.main", "train", "--config", str(TINY_CONFIG), "--no-export"]
    for item in overrides:
        args += ["--set", item]
    return subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=dict(os.environ))


def test_sigkill_mid_epoch_resumes_without_losing_finished_epochs(tiny_root, tmp_path):
    runs = tiny_root / "runs"
    process = _launch(tiny_root, tmp_path / "first.log")
    deadline = time.time() + 240
    killed_in = None
    while time.time() < deadline and process.poll() is None:
        for meta in runs.glob("ci_tiny-*/checkpoints/backup/training_metadata.json"):
            state = json.loads(meta.read_text() or "{}")
            if state.get("epoch", 0) >= 1 and state.get("batch", 0) > 0:
                process.send_signal(signal.SIGKILL)
                killed_in = meta.parents[2]
        time.sleep(0.05)
    process.wait()
    assert killed_in is not None, (tmp_path / "first.log").read_text()[-2000:]
    assert not (killed_in / "model.keras").exists()

    cfg = load_config(TINY_CONFIG, tiny_overrides(tiny_root) + [
        "train.epochs=3", "train.steps_per_epoch=24", "train.early_stopping_patience=5"])
    assert find_unfinished_run(cfg) == killed_in
    second = _launch(tiny_root, tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    assert "resuming the unfinished run" in (tmp_path / "second.log").read_text()
    assert (killed_in / "model.keras").is_file()
    with open(killed_in / "logs" / "training.csv") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [0, 1, 2], epochs


def test_nan_loss_stops_and_keeps_the_best_checkpoint(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    best = tmp_path / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True, save_weights_only=True)
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, epochs=1, callbacks=[checkpoint], verbose=0)
    saved = best.read_bytes()
    guard = NanGuard()
    history = model.fit(x, np.full_like(y, np.nan), epochs=5, batch_size=4, callbacks=[guard, checkpoint], verbose=0)
    assert guard.stopped_at == (0, 0)
    assert len(history.history["loss"]) == 1
    assert best.read_bytes() == saved
    assert "training stopped" in capsys.readouterr().out


def test_config_errors_fail_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key\(s\) train.epoch"):
        load_config(bad)
    bad.write_text("model:\n  rnn_units: many\n")
    result = subprocess.run([sys.executable, "-m", "age_estimation.cli.main", "train", "--config", str(bad)],
                            check=False, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.yaml: 'model.rnn_units' must be an integer" in result.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_too_few_subjects_for_the_folds_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match="too small"):
        train(tiny_config("data.folds=50"), verbose=0)


def test_ema_weights_are_what_gets_validated_and_checkpointed(tiny_config, tmp_path):
    from age_estimation.training.callbacks import make_callbacks
    from age_estimation.training.optim import make_optimizer

    cfg = tiny_config()
    assert make_optimizer(cfg.train, 10).use_ema
    callbacks, _ = make_callbacks(cfg.train, tmp_path, steps_per_epoch=10, resuming=False)
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds.index("SwapEMAWeights") < kinds.index("ModelCheckpoint")
    no_ema = tiny_config("train.ema=false")
    assert not make_optimizer(no_ema.train, 10).use_ema
    assert "SwapEMAWeights" not in [type(c).__name__ for c in make_callbacks(no_ema.train, tmp_path, 10, False)[0]]
