"""``predict --explain`` pictures: the aligned frames with spatial attention, and the temporal curve.

Titles carry the age, its interval and the model card's short form. The curve has points only at frames
some prediction window sampled, so a frame no window saw is not drawn as zero attention. For a model that
reads the landmark stream, a second panel under the curve draws the mouth's tracks (the smile's corner
lift and the mouth width, in eye distances) over the same frames and seconds, so the attention can be
read against the expression.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.inference.predict import VideoPrediction
from age_estimation.video.landmarks import mouth_width, smile_lift


def write_explanation(result: VideoPrediction, out_dir: str | Path, max_frames: int = 8) -> list[Path]:
    """Write ``<stem>_frames.png`` (aligned frames with the spatial heatmap) and ``<stem>_temporal.png``.

    The temporal curve has a point only at frames some window sampled (a frame no window saw has no
    attention, not zero attention); the axis counts source frames and, with a known frame rate, seconds.
    """
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(result.path).stem
    written = []
    if result.aligned_frames is not None:
        written.append(_save(frames_figure(result, max_frames), out_dir / f"{stem}_frames.png", plt))
    written.append(_save(temporal_figure(result), out_dir / f"{stem}_temporal.png", plt))
    return written


def frames_figure(result: VideoPrediction, max_frames: int = 8) -> Any:
    """Up to ``max_frames`` aligned frames the model saw, each with its spatial attention and weight."""
    plt = _pyplot()
    stem = Path(result.path).stem
    shown = np.flatnonzero(result.seen) if result.seen is not None else np.arange(len(result.aligned_frames))
    picks = shown[np.unique(np.linspace(0, len(shown) - 1, min(max_frames, len(shown))).astype(int))]
    fig, axes = plt.subplots(1, len(picks), figsize=(2.2 * len(picks), 2.6), squeeze=False)
    for ax, index in zip(axes[0], picks):
        frame = result.aligned_frames[index]
        ax.imshow(frame)
        if result.spatial_attention is not None:
            size = frame.shape[0]
            ax.imshow(
                result.spatial_attention[index],
                cmap="jet",
                alpha=0.45,
                extent=(0, size, size, 0),
                interpolation="bilinear",
            )
        ax.set_title(
            f"frame {int(result.source_frames[index])}\nweight {result.temporal_attention[index]:.3f}",
            fontsize=8,
        )
        ax.axis("off")
    fig.suptitle(
        f"{stem}: {result.age_text()} (spatial attention overlaid){_card_text(result)}", fontsize=10, y=1.04
    )
    fig.tight_layout()
    return fig


def temporal_figure(result: VideoPrediction) -> Any:
    """Temporal attention at the frames some window sampled, over source frames and (known fps) seconds;
    with the landmark stream, the mouth's tracks in a panel below on the same axis."""
    plt = _pyplot()
    stem = Path(result.path).stem
    if result.landmarks is None:
        fig, ax = plt.subplots(figsize=(7, 3))
    else:
        fig, (ax, tracks) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=(3, 2))
        landmark_tracks(tracks, result)
    seen = result.seen if result.seen is not None else np.ones(len(result.source_frames), bool)
    ax.plot(result.source_frames[seen], result.temporal_attention[seen], marker="o", markersize=3)
    ax.set_xlabel("source frame (only frames a window sampled)")
    if result.fps > 0:
        fps = result.fps
        ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda t: t * fps)).set_xlabel("seconds")
    ax.set_ylabel("temporal attention")
    ax.set_title(
        f"{stem}: {result.age_text()}, ± {result.spread:.1f} over {len(result.window_ages)} window(s), "
        f"{int(seen.sum())} of {result.frames_used} face frames seen ({result.frames_total} decoded)"
        f"{_card_text(result)}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def landmark_tracks(ax: Any, result: VideoPrediction) -> None:
    """Smile lift (left axis) and mouth width (right axis) of every face frame used; gaps where the mesh
    found no face."""
    points = np.asarray(result.landmarks, float)
    found = np.ones(len(points), bool) if result.landmark_found is None else np.asarray(result.landmark_found)
    frames = result.source_frames
    lift = np.where(found, smile_lift(points), np.nan)
    width = np.where(found, mouth_width(points), np.nan)
    ax.plot(frames, lift, color="tab:red", label="smile lift")
    ax.set_ylabel("smile lift (eye dist.)", color="tab:red")
    ax.set_xlabel("source frame (face frames; gaps: the face mesh found no face)")
    right = ax.twinx()
    right.plot(frames, width, color="tab:green", label="mouth width")
    right.set_ylabel("mouth width (eye dist.)", color="tab:green")
    ax.set_title(f"landmark stream: {int(found.sum())} of {len(found)} face frames with a face mesh", fontsize=9)
    ax.grid(alpha=0.3)


def _card_text(result: VideoPrediction) -> str:
    """The model card's short form on its own title line ('' without a card)."""
    return f"\nmodel: {result.model_card.short()}" if result.model_card else ""


def _pyplot() -> Any:
    # matplotlib loads only for --explain pictures, and draws off-screen.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
