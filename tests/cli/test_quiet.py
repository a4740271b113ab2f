"""A quiet CLI: by default only the tool's own lines reach the terminal; ``-v`` shows the library logs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from age_estimation.logs import QUIET_ENV, SHOW_ENV, native_logs_hidden

# Lines that MediaPipe, LiteRT, TensorFlow and FFmpeg print by themselves.
LIBRARY_LINE = re.compile(r"^(INFO: |[IWE]0000 |WARNING: (All log messages|Logging before)|\[\w+ @ 0x)|cpu_feature_guard"
                          r"|^(INFO|WARNING):(root|__main__|apache_beam[\w.]*):", re.MULTILINE)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``age-estimation`` in a fresh interpreter, with none of our log settings inherited."""
    env = {k: v for k, v in os.environ.items() if k not in {SHOW_ENV, *QUIET_ENV}}
    return subprocess.run([sys.executable, "-m", "age_estimation.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _library_lines(result: subprocess.CompletedProcess) -> list[str]:
    text = (result.stdout + result.stderr).replace("\r", "\n")
    return [line for line in text.splitlines() if LIBRARY_LINE.search(line)]


@pytest.fixture
def manifest(tmp_path: Path, videos: dict[str, Path]) -> Path:
    """A face video, one a worker decodes with FFmpeg errors (a cut-off .avi), and a second face video."""
    for name in ("face", "gray", "truncated_avi"):
        shutil.copy(videos[name], tmp_path / videos[name].name)
    path = tmp_path / "manifest.csv"
    path.write_text("path,age,subject\nface.mp4,30,a\ngray.mp4,31,b\ntruncated.avi,32,c\n")
    return path


@pytest.mark.slow
def test_prepare_prints_only_its_own_lines_and_library_logs_with_verbose(tmp_path: Path, manifest: Path) -> None:
    args = ["prepare", "--manifest", str(manifest), "--workers", "2", "--set", "align.crop_size=32"]
    quiet = _cli([*args, "--out", str(tmp_path / "quiet")], tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert _library_lines(quiet) == []
    assert "prepared 2, unchanged 0, rejected 1 of 3 videos" in quiet.stdout
    assert "rejected " in quiet.stdout and "decoded 7 of 12 frames" in quiet.stdout
    assert "prepare: 100%" in quiet.stderr  # the progress bar stays

    verbose = _cli(["-v", *args, "--out", str(tmp_path / "verbose")], tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    shown = "\n".join(_library_lines(verbose))
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in shown  # from the worker processes
    assert "cpu_feature_guard" in shown  # TensorFlow in the main process
    assert "[mjpeg @ 0x" in shown  # FFmpeg on the cut-off file


@pytest.mark.slow
def test_beam_prepare_prints_only_its_own_lines_and_its_workers_logs_with_verbose(tmp_path: Path,
                                                                                  manifest: Path) -> None:
    pytest.importorskip("apache_beam")
    args = ["prepare", "--manifest", str(manifest), "--runner", "beam", "--workers", "2", "--set",
            "align.crop_size=32"]
    quiet = _cli([*args, "--out", str(tmp_path / "quiet")], tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert _library_lines(quiet) == [] and quiet.stderr.strip() == ""
    assert "prepared 2, unchanged 0, rejected 1 of 3 videos" in quiet.stdout

    verbose = _cli(["-v", *args, "--out", str(tmp_path / "verbose")], tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "INFO:__main__:Logging handler created." in "\n".join(_library_lines(verbose))  # Beam's workers


@pytest.mark.slow
def test_synth_prints_only_its_own_lines(tmp_path: Path) -> None:
    result = _cli(["synth", "--out", str(tmp_path / "synth"), "--subjects", "2", "--videos-per-subject", "1",
                   "--frames", "4", "--workers", "2"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _library_lines(result) == []
    assert "2 videos of 2 subjects" in result.stdout


def test_tensorflow_imports_without_its_start_up_lines_and_stderr_stays_open() -> None:
    script = ("import sys\nfrom age_estimation.logs import set_library_logs\nset_library_logs(verbose=False)\n"
              "import tensorflow\nprint('ours', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k not in {SHOW_ENV, *QUIET_ENV}}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _library_lines(result) == []
    assert result.stderr.strip() == "ours"


def test_native_logs_are_hidden_only_inside_the_block(capfd: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHOW_ENV, "0")
    with pytest.raises(RuntimeError, match="still raised"), native_logs_hidden():
        os.write(2, b"INFO: from C++\n")
        raise RuntimeError("still raised")
    os.write(2, b"after the block\n")
    assert capfd.readouterr().err == "after the block\n"
    monkeypatch.setenv(SHOW_ENV, "1")
    with native_logs_hidden():
        os.write(2, b"INFO: shown with -v\n")
    assert capfd.readouterr().err == "INFO: shown with -v\n"


def test_blocks_on_two_threads_restore_stderr(capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHOW_ENV, "0")
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:  # enters first, leaves while the second is still inside
        with native_logs_hidden():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with native_logs_hidden():
            second_in.set()
            first_out.wait(5)
            os.write(2, b"INFO: still hidden\n")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.write(2, b"after both\n")
    assert capfd.readouterr().err == "after both\n"
