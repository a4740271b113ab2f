"""Shared CLI helpers: --config/--set parsing, a config error printed instead of raised, output folders."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from age_estimation.cli.common import add_config_arguments, config_or_none, output_dir


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, default=None)
    parser.add_argument("--out")
    return parser.parse_args(list(argv))


def test_config_and_repeated_overrides(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("name: mine\n")
    cfg = config_or_none(_parse("--config", str(config), "--set", "train.epochs=2", "--set", "runtime.seed=4"))
    assert (cfg.name, cfg.train.epochs, cfg.runtime.seed) == ("mine", 2, 4)


def test_an_invalid_config_prints_the_reason_and_gives_none(capsys: pytest.CaptureFixture) -> None:
    assert config_or_none(_parse("--set", "model.test_time_flip=false")) is None
    assert "error: <defaults>: 'model.test_time_flip' moved to 'inference.test_time_flip'" in capsys.readouterr().out


def test_output_dir_is_out_or_a_fresh_folder_under_runs_dir(tmp_path: Path) -> None:
    cfg = config_or_none(_parse("--set", f"runtime.runs_dir={tmp_path}"))
    assert output_dir(_parse("--out", str(tmp_path / "x")), cfg, "cv") == tmp_path / "x"
    fresh = output_dir(_parse(), cfg, "cv")
    assert fresh.parent == tmp_path and fresh.name.startswith("default-cv-") and not fresh.exists()


@pytest.mark.parametrize("fault", ["busy", "full"])
def test_a_prepare_fault_ends_any_command_with_its_line_and_exit_1(fault, monkeypatch, capsys) -> None:
    from age_estimation.cli.common import prepared_config
    from age_estimation.data import prepare
    from age_estimation.data.cache_lock import CacheBusyError

    error = CacheBusyError("data/cache is being prepared by process 7") if fault == "busy" else \
        prepare.DiskFullError(Path("data/cache"), 3)

    def failing(cfg, progress=True):
        raise error

    monkeypatch.setattr(prepare, "prepare_data", failing)
    with pytest.raises(SystemExit) as stopped:
        args = _parse()
        args.json = True
        prepared_config(args)
    assert stopped.value.code == 1
    assert capsys.readouterr().err == f"error: {error}\n"
