"""Library logs: hidden by default, all shown with ``-v``; chosen once per process, inherited by workers.

TensorFlow and OpenCV's FFmpeg read an environment variable when they start logging
(``TF_CPP_MIN_LOG_LEVEL``, ``OPENCV_FFMPEG_LOGLEVEL``). LiteRT writes its C++ logs
(``INFO: Created TensorFlow Lite XNNPACK delegate``, ``W0000 ... inference_runner_litert.cc``)
straight to file descriptor 2, and no setting turns them off, so the calls that print them run
inside ``native_logs_hidden()``. TensorFlow's own start-up lines (the oneDNN notice, the CPU-feature
banner) are written before its absl logging is initialised, where ``TF_CPP_MIN_LOG_LEVEL`` does not
reach, so its first import runs inside that block too. The choice is kept in the environment so that
spawned worker processes start with it.

Example:
    >>> set_library_logs(verbose=False)  # before TensorFlow or OpenCV is imported
    >>> with native_logs_hidden():
    ...     interpreter = Interpreter(model_path=path)
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator

SHOW_ENV = "AGE_ESTIMATION_LIBRARY_LOGS"  # "1": show library logs; anything else hides them
# Hidden-mode levels; a value the user exported already is kept.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow C++: errors only (no CPU-feature banner, no warnings)
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg quiet: report.json already says why a file is unreadable
}
QUIET_LOGGERS = ("tensorflow", "absl")  # Python loggers of TensorFlow/Keras, held at ERROR when hidden


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
