"""PNG figures of a run: predicted vs true age, error by age group, training curves, attention pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from age_estimation.evaluation.metrics import age_group_mae


def plot_run(run_dir: Path, heldout: Any, history: dict[str, list[float]]) -> list[Path]:
    """Write every figure of a run into ``run_dir/plots`` and return their paths."""
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_predictions(heldout.true, heldout.pred, out / "predicted_vs_true.png"),
        plot_age_groups(heldout.true, heldout.pred, out / "error_by_age_group.png"),
    ]
    if history.get("loss"):
        paths.append(plot_history(history, out / "training_curves.png"))
    if heldout.frames is not None:
        paths.append(plot_attention(heldout, out / "attention.png"))
    return paths


def plot_predictions(true: np.ndarray, pred: np.ndarray, path: Path) -> Path:
    """Scatter of predicted against true age with the identity line."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, pred, s=12, alpha=0.6)
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([low, high], [low, high], "k--", lw=1)
    ax.set(xlabel="true age (years)", ylabel="predicted age (years)",
           title=f"held-out: MAE {np.mean(np.abs(pred - true)):.2f} years")
    return _save(fig, path)


def plot_age_groups(true: np.ndarray, pred: np.ndarray, path: Path) -> Path:
    """Bar chart of MAE per age group, with the sample count on each bar."""
    groups = age_group_mae(true, pred)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(list(groups), [g["mae"] for g in groups.values()])
    for bar, group in zip(bars, groups.values()):
        ax.annotate(f"n={group['count']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="age group", ylabel="MAE (years)", title="error by age group")
    return _save(fig, path)


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    """Training and validation loss and MAE per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "age_mae")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if history.get(prefix + key):
                ax.plot(np.arange(1, len(history[prefix + key]) + 1), history[prefix + key], style,
                        label=prefix + key)
        ax.set(xlabel="epoch", title=key)
        ax.legend()
    return _save(fig, path)


def plot_attention(predictions: Any, path: Path, clips: int = 3, frames_per_clip: int = 6) -> Path:
    """Aligned frames with the spatial attention heatmap over them, and each clip's temporal weights."""
    clips = min(clips, len(predictions.frames))
    fig, axes = plt.subplots(clips, frames_per_clip + 1, figsize=(2 * (frames_per_clip + 1), 2.1 * clips),
                             squeeze=False)
    for row in range(clips):
        valid = np.flatnonzero(predictions.mask[row] > 0)
        weights = predictions.temporal[row]
        shown = valid[np.linspace(0, len(valid) - 1, frames_per_clip).astype(int)] if len(valid) else []
        for col, t in enumerate(shown):
            ax = axes[row, col]
            frame = predictions.frames[row, t]
            ax.imshow(frame)
            if predictions.spatial is not None:
                ax.imshow(predictions.spatial[row, t], cmap="jet", alpha=0.45, interpolation="bilinear",
                          extent=(0, frame.shape[1], frame.shape[0], 0))
            ax.set_title(f"t={t} w={weights[t]:.2f}", fontsize=8)
            ax.axis("off")
        ax = axes[row, -1]
        ax.bar(valid, weights[valid])
        ax.set_title(f"true {predictions.true[row]:.0f}, pred {predictions.pred[row]:.1f}", fontsize=8)
        ax.set_xlabel("frame", fontsize=8)
    fig.suptitle("spatial attention (heatmap) and temporal attention (bars)")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
