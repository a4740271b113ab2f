"""``age-estimation ablation``: an invalid config exits 2, an unknown variant is refused by the parser."""

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
