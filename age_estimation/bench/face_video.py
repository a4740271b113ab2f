"""The bench's test card: an mp4 of a real face (scikit-image's public-domain astronaut photo) moving a little."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def face_image() -> np.ndarray:
    """The astronaut photo (RGB, 512x512) from scikit-image: a real, public-domain face."""
    from skimage import data  # scikit-image is an optional (dev) extra, needed only here

    return data.astronaut()


def write_face_video(
    path: str | Path,
    frames: int = 24,
    size: tuple[int, int] = (256, 256),
    motion: float = 4.0,
    noise: float = 3.0,
    gray: bool = False,
    fps: float = 25.0,
    seed: int = 0,
    image: np.ndarray | None = None,
) -> Path:
    """Write an mp4 (mp4v) of a face photo moved by up to ``motion`` px, with per-frame sensor noise.

    ``size`` is (width, height); the photo is scaled to the width and cropped around the face.
    ``motion=0`` gives a still head. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    base = _fit(face_image() if image is None else image, width, height)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), not gray)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4v video here")
    try:
        for dx, dy in face_video_shifts(frames, motion):
            shift = np.float32([[1, 0, dx], [0, 1, dy]])
            frame = cv2.warpAffine(base, shift, (width, height), borderMode=cv2.BORDER_REPLICATE)
            if noise:
                frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            writer.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if gray else bgr)
    finally:
        writer.release()
    return path


def face_video_shifts(frames: int, motion: float) -> np.ndarray:
    """The (frames, 2) pixel shifts of ``write_face_video``: one figure-eight of ``motion`` px per clip."""
    phase = 2 * np.pi * np.arange(frames) / max(frames, 1)
    return np.stack([motion * np.sin(phase), motion * np.sin(2 * phase) / 2], axis=-1)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale a portrait photo to ``width`` and crop ``height`` rows around its upper quarter (the face)."""
    scaled = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA)
    if scaled.shape[0] < height:
        scaled = cv2.copyMakeBorder(scaled, 0, height - scaled.shape[0], 0, 0, cv2.BORDER_REPLICATE)
    top = int(np.clip(scaled.shape[0] * 0.25 - height / 2, 0, scaled.shape[0] - height))
    return np.ascontiguousarray(scaled[top : top + height])
