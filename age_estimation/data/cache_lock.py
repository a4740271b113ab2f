"""One ``prepare`` at a time per cache folder: an exclusive ``flock`` on ``DIR/.prepare.lock``.

The kernel releases the lock when its process exits, however it exits, so a crashed or killed run
never blocks the next one. The file names its holder (pid, host, start time) for the message a second
run prints; a file that a killed run left behind is taken over with a notice. The holder removes the
file when it is done; a run that opened it just before then finds it gone and locks the new one.

Example:
    >>> with cache_lock(Path("data/cache/x")):
    ...     ...  # write shards, index.json, report.json
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".prepare.lock"

log = logging.getLogger(__name__)


class CacheBusyError(RuntimeError):
    """Another process is preparing the cache folder; the message names it and the lock file."""


@contextlib.contextmanager
def cache_lock(cache_dir: str | Path, wait: bool = False) -> Iterator[Path]:
    """Hold the prepare lock of ``cache_dir`` (created with its parents) for the block; yields the lock file.

    When another process holds it: raises ``CacheBusyError`` at once, or with ``wait`` says so once and
    waits until that process is done.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / LOCK_NAME
    fd = _acquire(path, cache_dir, wait)
    try:
        if fd is not None:
            _claim(fd, path)
        yield path
    finally:
        if fd is not None:
            path.unlink(missing_ok=True)  # while still locked: see the module docstring
            os.close(fd)


def _acquire(path: Path, cache_dir: Path, wait: bool = False) -> int | None:
    """A descriptor of ``path`` holding its lock; None (after a warning) on a file system without locks."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                os.close(fd)
                raise CacheBusyError(
                    f"{cache_dir} is being prepared by {holder}; wait for it to finish or stop it "
                    f"(the lock {path} is released when that process exits)"
                ) from None
            log.warning("%s is being prepared by %s; waiting for it", cache_dir, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:  # e.g. ENOLCK, EOPNOTSUPP: a file system without flock
            os.close(fd)
            path.unlink(missing_ok=True)
            log.warning("%s: cannot lock (%s); preparing without protection from a second prepare", path,
                        err.strerror)
            return None
        if _is_current(fd, path):
            return fd
        os.close(fd)  # its holder removed it between our open and flock: lock the new file


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one its last holder has removed)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)


def _claim(fd: int, path: Path) -> None:
    """Write this process into the locked file, after a notice when a killed run's details are there."""
    left = os.pread(fd, 4096, 0)
    if left.strip():
        log.warning("%s was left by %s, which no longer holds it; taking it over", path, _describe(left))
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    with contextlib.suppress(OSError):  # a full disk: the lock holds all the same, without its details
        os.pwrite(fd, json.dumps(holder).encode(), 0)


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says."""
    try:
        return _describe(os.pread(fd, 4096, 0))
    except OSError:
        return "another process"


def _describe(data: bytes) -> str:
    """'process 1234 on HOST (started 2025-01-31 14:02:11)' from a lock file's bytes, else 'another process'."""
    try:
        holder = json.loads(data)
        return f"process {holder['pid']} on {holder['host']} (started {holder['started']})"
    except (ValueError, TypeError, KeyError):
        return "another process"  # its holder has not written its details (yet)
