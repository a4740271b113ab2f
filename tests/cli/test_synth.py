"""``age-estimation synth``: flags override the config, JSON or text summary, exit 2 on a config error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from age_estimation.cli.main import main
from age_estimation.data.synth.generator import MANIFEST_NAME
from age_estimation.data.synth.oracle import GROUND_TRUTH_NAME
from age_estimation.video.decode import read_video


def test_cli_writes_the_files_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "pipe.yaml"
    config.write_text("synth:\n  frames: 5\n  frame_size: 96\n  subjects: 7\n")
    out = tmp_path / "out"
    args = ["synth", "--out", str(out), "--config", str(config), "--subjects", "2", "--workers", "1"]
    assert main(args + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 4 and summary["frames"] == 20  # the flag overrides, the config sets frames
    assert (out / MANIFEST_NAME).is_file() and (out / GROUND_TRUTH_NAME).is_file()
    first = min(json.loads((out / GROUND_TRUTH_NAME).read_text())["videos"])
    assert read_video(out / first).frames.shape[1:3] == (96, 96)
    assert main(args) == 0
    assert "oracle floor" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
