"""``age-estimation ablation``: invalid configs, variants and folds are refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from age_estimation.cli.main import main


def test_an_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ablation", "--config", "pipelines/ci_tiny.yaml", "--set", "train.seed=1",
                 "--out", str(tmp_path / "ab")]) == 2
    assert "'train.seed' moved to 'runtime.seed'" in capsys.readouterr().out
    assert not (tmp_path / "ab").exists()


def test_an_unknown_variant_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablation", "--variants", "siam", "bigger"])
    assert exit_info.value.code == 2 and "invalid choice: 'bigger'" in capsys.readouterr().err


def test_a_fold_outside_the_config_s_folds_exits_2_before_any_work(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["ablation", "--config", "pipelines/ci_tiny.yaml", "--variants", "siam", "--folds", "0", "3",
                 "--out", str(tmp_path / "ab")]) == 2
    assert "fold(s) [3] outside [0, 3)" in capsys.readouterr().out
    assert not (tmp_path / "ab").exists()


def test_the_variant_choices_are_the_ablation_entries() -> None:
    from age_estimation.cli.ablation import VARIANT_NAMES
    from age_estimation.experiments.ablation import ABLATION_VARIANTS

    assert VARIANT_NAMES == tuple(ABLATION_VARIANTS)


def test_seeds_are_no_longer_an_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablation", "--seeds", "3"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --seeds" in capsys.readouterr().err
