"""Library logs: hidden by default, all shown with ``-v``; chosen once per process, inherited by workers.

TensorFlow and OpenCV's FFmpeg read an environment variable when they start logging
(``TF_CPP_MIN_LOG_LEVEL``, ``OPENCV_FFMPEG_LOGLEVEL``). LiteRT writes its C++ logs
(``INFO: Created TensorFlow Lite XNNPACK delegate``, ``W0000 ... inference_runner_litert.cc``)
straight to file descriptor 2, and no setting turns them off, so the calls that print them run
inside ``native_logs_hidden()``. TensorFlow's own start-up lines (the oneDNN notice, the CPU-feature
banner) are written before its absl logging is initialised, where ``TF_CPP_MIN_LOG_LEVEL`` does not
reach, so its first import runs inside that block too. The choice is kept in the environment so that
spawned worker processes start with it.

Progress bars go through ``progress_bar``: tqdm's live bar on a terminal; redirected to a file (``make train
> log``, CI) one whole line per tenth of the work, where a live bar would leave every update and its
carriage returns.

Example:
    >>> set_library_logs(verbose=False)  # before TensorFlow or OpenCV is imported
    >>> with native_logs_hidden():
    ...     interpreter = Interpreter(model_path=path)
    >>> for path in progress_bar(paths, desc="videos", unit="video"):
    ...     work(path)
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

SHOW_ENV = "AGE_ESTIMATION_LIBRARY_LOGS"  # "1": show library logs; anything else hides them
# Hidden-mode levels; a value the user exported already is kept.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow C++: errors only (no CPU-feature banner, no warnings)
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg quiet: report.json already says why a file is unreadable
}
QUIET_LOGGERS = ("tensorflow", "absl")  # Python loggers of TensorFlow/Keras, held at ERROR when hidden
T = TypeVar("T")


def set_library_logs(verbose: bool) -> None:
    """Show (``verbose``) or hide library logs in this process and the processes it starts.

    Call it before TensorFlow or OpenCV is imported: both read their log level once.
    """
    os.environ[SHOW_ENV] = "1" if verbose else "0"
    if not verbose:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if not verbose and "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietImport) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


def library_logs_shown() -> bool:
    """Whether library logs are to be shown (``-v``)."""
    return os.environ.get(SHOW_ENV) == "1"


@contextlib.contextmanager
def native_logs_hidden() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block, unless library logs are shown.

    Only for calls into C++ libraries that log by themselves: an exception raised in the block
    still reaches the user, since it is reported after descriptor 2 is restored. Descriptor 2 is one
    per process, so blocks on several threads share one redirection: the first to enter makes it and
    the last to leave restores it (unguarded, a thread could save the other's /dev/null and leave
    stderr there for good).
    """
    if library_logs_shown():
        yield
        return
    if not _hide_descriptor():
        yield
        return
    try:
        yield
    finally:
        _restore_descriptor()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first import of one package with its native logs hidden (``native_logs_hidden``); it is
    still imported only when the code asks for it, so commands that never need it pay nothing."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != self.package:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """A package's own loader, with the module's body run inside ``native_logs_hidden``."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> object:
        return self.loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        with native_logs_hidden():
            self.loader.exec_module(module)


_hidden_lock = threading.Lock()
_hidden_depth = 0  # blocks inside native_logs_hidden(), over all threads
_saved_descriptor: int | None = None  # the real descriptor 2 while hidden


def _hide_descriptor() -> bool:
    """Enter a hidden block; False when there is no descriptor 2 to hide."""
    global _hidden_depth, _saved_descriptor
    with _hidden_lock:
        if _hidden_depth == 0:
            sys.stderr.flush()
            try:
                saved = os.dup(2)
            except OSError:
                return False
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            _saved_descriptor = saved
        _hidden_depth += 1
        return True


def _restore_descriptor() -> None:
    global _hidden_depth, _saved_descriptor
    with _hidden_lock:
        _hidden_depth -= 1
        if _hidden_depth == 0 and _saved_descriptor is not None:
            os.dup2(_saved_descriptor, 2)
            os.close(_saved_descriptor)
            _saved_descriptor = None


LINE_STEPS = 10  # off a terminal a bar with a total writes a line each time it crosses a tenth of it
LINE_INTERVAL_S = 60.0  # ... and a bar without a total one line a minute at most, and its last count


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    initial: int = 0,
    leave: bool = True,
    disable: bool = False,
    file: TextIO | None = None,
) -> tqdm:
    """A tqdm progress bar on ``file`` (default stderr): the live bar on a terminal, whole lines elsewhere.

    Redirected (``make train > log``, CI) a live bar would leave every update and its carriage returns
    in the log; there ``LineProgress`` writes one line per tenth of ``total`` instead.
    """
    stream = file if file is not None else sys.stderr
    kind = tqdm if _is_terminal(stream) else LineProgress
    return kind(iterable, desc=desc, total=total, unit=unit, initial=initial, leave=leave, disable=disable,
                file=stream)


class LineProgress(tqdm):
    """A tqdm that writes whole ``\\n``-terminated lines, never a carriage return or a cursor move.

    With a total, a line each time the count crosses a tenth of it (at most ``LINE_STEPS`` lines); without
    one, a line every ``LINE_INTERVAL_S`` seconds. Closing writes the last count when no line showed it yet.
    A transient bar (``leave=False``, a stage inside another bar) writes nothing: on a terminal it is erased
    when done, and in a log its lines would repeat for every item of the outer bar. tqdm's own writes (the
    bar, its ``\\r`` and cursor moves) go to a sink; only ``display`` writes to the real stream.
    """

    def __init__(self, *args: Any, file: TextIO | None = None, **kwargs: Any) -> None:
        self._lines = file if file is not None else sys.stderr
        self._started = False  # tqdm's first display (the start count) writes nothing: nothing is done yet
        self._shown_step: int | None = None  # the tenth last written, or the start's
        self._shown_n: float | None = None  # the count last written
        self._shown_at = time.monotonic()
        # Every update reaches display, which decides; the bar is ASCII as a log may not be UTF-8.
        kwargs.update(mininterval=0, miniters=1, ascii=True)
        super().__init__(*args, file=_Sink(), **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Write the bar as one line when the count crossed a tenth (or the interval passed), or at close."""
        if msg is not None or not self.leave:  # tqdm clearing a bar (nothing to clear in a log), or transient
            return True
        step = self._step()
        if not self._started:
            self._started, self._shown_step = True, step
            return True
        closing = self.disable  # tqdm.close disables the bar before its last display
        if closing:
            due = self.n != self._shown_n
        elif step is None:
            due = time.monotonic() - self._shown_at >= LINE_INTERVAL_S
        else:  # a total set after the start counts from nothing shown
            due = step > (-1 if self._shown_step is None else self._shown_step)
        if due:
            self._write_line(step)
        return True

    def _step(self) -> int | None:
        """The tenths of the total done (None without a total)."""
        if not self.total:
            return None
        return min(LINE_STEPS, int(LINE_STEPS * self.n // self.total))

    def _write_line(self, step: int | None) -> None:
        self._lines.write(f"{self}\n")
        self._lines.flush()
        self._shown_step, self._shown_n, self._shown_at = step, self.n, time.monotonic()


class _Sink(io.TextIOBase):
    """A text stream that keeps nothing: where ``LineProgress`` sends tqdm's own bar writes."""

    def write(self, text: str) -> int:
        return len(text)


def _is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an open terminal (a closed or odd stream counts as a log)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
