"""Helpers for training tests that start processes: run commands together, read a weights file."""

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from tests.conftest import TINY_CONFIG, tiny_overrides


def train_args(root: Path, *overrides: str, as_json: bool = True) -> list[str]:
    """``age-estimation train`` of the tiny config on ``root``'s data, no export, metrics as JSON (or the summary)."""
    args = [sys.executable, "-m", "age_estimation.cli.main", "train", "--config", str(TINY_CONFIG), "--no-export",
            *(["--json"] if as_json else [])]
    for item in tiny_overrides(root) + list(overrides):
        args += ["--set", item]
    return args


def run_together(commands: list[tuple[list[str], dict[str, str]]], folder: Path, timeout: float) -> list[str]:
    """Start every ``(args, extra_env)`` at once, wait (bounded) for all, kill any left; each must exit 0.

    Returns each process's stdout; its output goes to files in ``folder`` (no pipe can fill up and block).
    """
    paths = [(folder / f"process{i}.out", folder / f"process{i}.err") for i in range(len(commands))]
    with ExitStack() as stack:
        processes = [
            subprocess.Popen(args, stdout=stack.enter_context(open(out, "w")),
                             stderr=stack.enter_context(open(err, "w")), env=dict(os.environ, **env))
            for (args, env), (out, err) in zip(commands, paths)
        ]
        deadline = time.monotonic() + timeout
        try:
            for process in processes:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    for process, (out, err) in zip(processes, paths):
        assert process.returncode == 0, out.read_text()[-2000:] + err.read_text()[-3000:]
    return [out.read_text() for out, _ in paths]


def weights(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.weights.h5`` file by its path in the file."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out
