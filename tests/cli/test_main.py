"""The console entry point: every command is listed, each ``--help`` works, unknown commands fail."""

from __future__ import annotations

import pytest

from age_estimation.cli.main import COMMANDS, build_parser, main


def test_the_parser_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name, help_text in COMMANDS.items():
        assert name in text and help_text[:30] in " ".join(text.split())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_each_command_exits_0(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"age-estimation {command}" in out and COMMANDS[command][:30] in " ".join(out.split())


def test_unknown_command_and_unknown_flag_exit_non_zero(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code != 0 and "invalid choice: 'fly'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--no-such-flag"])
    assert exit_info.value.code != 0 and "--no-such-flag" in capsys.readouterr().err


def test_a_missing_face_model_is_a_one_line_setup_error(tmp_path, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    """Any command that loads a face model without its asset ends with exit 2 and the way to get it."""
    monkeypatch.setenv("AGE_ESTIMATION_ASSETS", str(tmp_path / "empty"))
    assert main(["export", "--model", "face-age-v1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "age-v1.onnx: face model missing" in err and "age-estimation assets" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
