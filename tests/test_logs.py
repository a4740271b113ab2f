"""Progress bars: tqdm's live bar on a terminal; in a log (not a terminal) a few whole lines, no ``\\r``."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from age_estimation import logs
from age_estimation.logs import LineProgress, progress_bar


class Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_off_a_terminal_1000_updates_are_at_most_11_lines_without_carriage_returns() -> None:
    log = Stream(terminal=False)
    with progress_bar(total=1000, desc="prepare", unit="video", file=log) as bar:
        for _ in range(1000):
            bar.set_postfix(rejected=0)
            bar.update()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text and text.endswith("\n")
    assert 1 <= len(lines) <= 11
    assert [line.split("%")[0] for line in lines] == [f"prepare: {p:3d}" for p in range(10, 101, 10)]
    assert "1000/1000" in lines[-1]


def test_on_a_terminal_the_bar_is_tqdms_own() -> None:
    terminal = Stream(terminal=True)
    for _ in progress_bar(range(50), desc="videos", unit="video", file=terminal):
        pass
    assert "\r" in terminal.getvalue()
    bar = progress_bar(range(3), desc="videos", file=terminal)
    assert type(bar) is tqdm
    bar.close()


def test_a_stage_done_before_it_started_still_says_so_once() -> None:
    log = Stream(terminal=False)
    progress_bar(total=3, initial=3, desc="prepare", unit="video", file=log).close()
    assert log.getvalue().startswith("prepare: 100%") and log.getvalue().count("\n") == 1


def test_without_a_total_a_line_per_interval_and_the_last_count_at_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = Stream(terminal=False)
    with progress_bar(desc="frames", unit="frame", file=log) as bar:
        bar.update(5)
    text = log.getvalue()
    assert text.count("\n") == 1 and text.startswith("frames: 5frame")
    monkeypatch.setattr(logs, "LINE_INTERVAL_S", 0.0)
    log = Stream(terminal=False)
    for _ in progress_bar(iter(range(4)), desc="frames", file=log):  # no length: no total
        pass
    lines = [line.split(" [")[0] for line in log.getvalue().splitlines()]
    assert lines == [f"frames: {n}it" for n in range(1, 5)]


def test_transient_and_disabled_bars_write_nothing_to_a_log() -> None:
    log = Stream(terminal=False)
    for _ in progress_bar(range(100), desc="frames", leave=False, file=log):
        pass
    for _ in progress_bar(range(100), desc="videos", disable=True, file=log):
        pass
    assert log.getvalue() == ""
    assert isinstance(progress_bar(range(1), desc="x", file=log), LineProgress)


@pytest.mark.slow
def test_synth_redirected_to_a_file_logs_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "synth.log"
    args = [sys.executable, "-m", "age_estimation.cli.main", "synth", "--out", str(tmp_path / "s"),
            "--subjects", "6", "--videos-per-subject", "2", "--frames", "4", "--workers", "1"]
    with open(log, "w") as handle:  # a file, as `make train > log` gives: not a terminal
        done = subprocess.run(args, stdout=handle, stderr=subprocess.STDOUT, timeout=300, check=False)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    bar = [line for line in text.splitlines() if line.startswith("synth videos:")]
    assert "\r" not in text and 1 <= len(bar) <= 10 and bar[-1].startswith("synth videos: 100%|")
