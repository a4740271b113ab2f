"""The search: bad settings fail early, a rerun resumes, the best YAML trains, Hyperband, distributed."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from age_estimation.cli.main import main
from age_estimation.config import ConfigError, load_config
from age_estimation.training.cluster import free_port
from age_estimation.training.fit import train
from age_estimation.tuning.report import format_trials
from age_estimation.tuning.search import (
    SEARCH_CONFIG,
    TuneError,
    check_same_search,
    check_search,
    run_search,
    search_identity,
    tuner_env,
)
from tests.conftest import TINY_CONFIG, tiny_overrides
from tests.training.processes import run_together

# No BN recalibration after each trial: about a second less per trial, and no test here checks it
# (tests/tuning/test_hypermodel.py does).
FAST_TRIALS = ("train.bn_recalibration_batches=0",)


def _tune_args(root: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "age_estimation.cli.main", "tune", "--config", str(TINY_CONFIG), "--json"]
    for item in tiny_overrides(root) + list(FAST_TRIALS) + list(extra):
        args += ["--set", item]
    return args


@pytest.mark.parametrize(
    "override, message",
    [("tune.max_trials=0", "tune.max_trials must be at least 1"),
     ("tune.hyperband_factor=1", "tune.hyperband_factor must be at least 2"),
     ("tune.project_name=a/b", "tune.project_name must be a plain folder name"),
     ("model.backbone.name=MobileNetV2", "from-scratch CNN")],
)
def test_invalid_search_settings_fail_with_the_file_and_the_key(override, message):
    with pytest.raises(TuneError, match=message) as err:
        check_search(load_config(TINY_CONFIG, [override]))
    assert "ci_tiny.yaml" in str(err.value)


def test_cli_rejects_bad_settings_before_any_work(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tune:\n  algorithm: grid\n")
    with pytest.raises(ConfigError, match="'tune.algorithm' must be one of"):
        load_config(bad)
    monkeypatch.chdir(tmp_path)  # where a search that started would write runs/ and data/
    assert main(["tune", "--config", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "bad.yaml" in out and "tune.algorithm" in out
    assert main(["tune", "--config", str(TINY_CONFIG), "--max-trials", "0"]) == 2
    assert "tune.max_trials must be at least 1" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_too_small_a_dataset_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match="too small"):
        run_search(tiny_config("data.folds=50"), verbose=0)


@pytest.mark.slow
def test_a_recorded_search_is_read_with_todays_defaults(tmp_path):
    cfg = load_config(None, ["model.rnn_units=12"])
    recorded = search_identity(cfg)
    del recorded["model"]["batch_norm_momentum"]  # written before the key existed: at its default, no change
    (tmp_path / SEARCH_CONFIG).write_text(yaml.safe_dump(recorded))
    check_same_search(cfg, tmp_path)
    with pytest.raises(TuneError, match="different config .*model.rnn_units"):
        check_same_search(load_config(None, ["model.rnn_units=16"]), tmp_path)
    recorded["model"]["retired_key"] = 1
    (tmp_path / SEARCH_CONFIG).write_text(yaml.safe_dump(recorded))
    with pytest.raises(TuneError, match="does not read .*retired_key.*--fresh"):
        check_same_search(cfg, tmp_path)


def test_search_resumes_writes_a_table_and_a_best_yaml_that_trains(tiny_config, tmp_path):
    base = ("tune.algorithm=random", "tune.max_epochs=1", f"tune.directory={tmp_path / 'tune'}", *FAST_TRIALS)
    first = run_search(tiny_config(*base, "tune.max_trials=1"), verbose=0)
    assert [row["status"] for row in first.trials] == ["COMPLETED"]
    second = run_search(tiny_config(*base, "tune.max_trials=2"), verbose=0)
    assert len(second.trials) == 2, "the rerun continues the search instead of starting over"
    assert second.trials[0] == first.trials[0]
    assert second.best["score"] == min(row["score"] for row in second.trials)

    project = tmp_path / "tune" / "siam"
    with open(project / "trials.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["trial_id"] for row in table] == [row["trial_id"] for row in second.trials]
    assert [row["epochs"] for row in table] == ["1", "1"], "the table says how many epochs each trial ran"
    assert {"conv_depth", "conv_width", "rnn", "learning_rate", "batch_size", "dropout"} <= set(table[0])
    assert json.loads((project / "trials.json").read_text()) == second.trials
    assert "COMPLETED" in format_trials(second.trials)

    best = load_config(second.best_config)
    hps = second.best["hyperparameters"]
    assert best.name == "ci_tiny_tuned" and best.model.rnn == hps["rnn"]
    assert best.data.batch_size == hps["batch_size"] and best.train.learning_rate == pytest.approx(hps["learning_rate"])
    assert len(best.model.conv_filters) == hps["conv_depth"]
    result = train(load_config(second.best_config, ["train.epochs=1", "inference.test_time_flip=false",
                                                     f"runtime.runs_dir={tmp_path / 'runs'}"]), verbose=0)
    assert (result.run_dir / "model.keras").is_file()

    with pytest.raises(TuneError, match="different config .*model.rnn_units.*--fresh"):
        run_search(tiny_config(*base, "model.rnn_units=12"), verbose=0)


@pytest.mark.slow
def test_cli_runs_hyperband_by_default_and_fresh_starts_over(tiny_root, tmp_path):
    stale = tmp_path / "siam"
    stale.mkdir()
    (stale / "search_config.yaml").write_text("name: another search\n")
    (stale / "stale.txt").write_text("from an older search")
    args = _tune_args(tiny_root, f"tune.directory={tmp_path}", "tune.max_epochs=1", "tune.max_trials=1")
    run = subprocess.run(args + ["--fresh"], check=False, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert not (stale / "stale.txt").exists(), "--fresh deletes the previous search"
    assert len(result["trials"]) == 1 and result["trials"][0]["epochs"] == 1, "Hyperband records each trial's epochs"
    assert Path(result["best_config"]).is_file()


# ``age-estimation tune`` as the chief, whose Keras Tuner oracle checks every second, not every 20, whether the
# workers' last trials are done once the trial budget is spent (the 20 s wait is most of this test otherwise).
PROMPT_CHIEF = """
import sys
from age_estimation.logs import set_library_logs
set_library_logs(verbose=False)  # as main does, before TensorFlow is imported
from keras_tuner.src.distribute import oracle_chief
sleep = oracle_chief.time.sleep
oracle_chief.time = type("PromptTime", (), {"sleep": staticmethod(lambda seconds: sleep(min(seconds, 1.0)))})
from age_estimation.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(tiny_root, tmp_path):
    port = free_port()
    args = _tune_args(tiny_root, f"tune.directory={tmp_path}", "tune.algorithm=random", "tune.max_trials=2",
                      "tune.max_epochs=1")
    chief_args = [sys.executable, "-c", PROMPT_CHIEF, *args[args.index("tune"):]]
    roles = ["chief", "tuner0", "tuner1"]
    outputs = run_together([(chief_args if role == "chief" else args, tuner_env(role, "127.0.0.1", port))
                            for role in roles], tmp_path, timeout=300)
    chief, *workers = (json.loads(out) for out in outputs)
    assert chief["role"] == "chief" and [w["role"] for w in workers] == ["worker", "worker"]
    assert [row["status"] for row in chief["trials"]] == ["COMPLETED"] * 2
    assert [row["epochs"] for row in chief["trials"]] == [1, 1], "the workers' epoch counts reach the chief"
    assert Path(chief["best_config"]).is_file()
    project = tmp_path / "siam"
    assert (project / "tuner0.json").is_file() and (project / "tuner1.json").is_file(), "both workers took part"
