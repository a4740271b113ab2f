"""Run figures: every plot is written as a PNG, the attention picture only when frames were kept."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np

from age_estimation.evaluation.plots import plot_run


def _predictions(frames: bool) -> types.SimpleNamespace:
    rng = np.random.default_rng(0)
    clips, steps = 4, 6
    true = rng.uniform(10, 70, clips)
    mask = np.ones((clips, steps))
    mask[0, 4:] = 0
    return types.SimpleNamespace(
        true=true, pred=true + rng.normal(0, 3, clips), mask=mask,
        temporal=rng.dirichlet(np.ones(steps), clips), spatial=rng.uniform(size=(clips, steps, 4, 4)),
        frames=rng.integers(0, 256, (clips, steps, 16, 16, 3), dtype=np.uint8) if frames else None,
    )


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_of_a_run_is_written(tmp_path: Path) -> None:
    history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "age_mae": [9.0, 7.0], "val_age_mae": [10.0, 8.0]}
    paths = plot_run(tmp_path, _predictions(frames=True), history)
    assert sorted(p.name for p in paths) == [
        "attention.png", "error_by_age_group.png", "predicted_vs_true.png", "training_curves.png"]
    assert all(_is_png(p) and p.parent == tmp_path / "plots" for p in paths)


def test_without_history_or_frames_only_the_error_figures(tmp_path: Path) -> None:
    paths = plot_run(tmp_path, _predictions(frames=False), {})
    assert sorted(p.name for p in paths) == ["error_by_age_group.png", "predicted_vs_true.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)
