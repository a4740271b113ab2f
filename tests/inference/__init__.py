"""Inference tests. ``write_video`` makes small mp4 files with a real face (scikit-image's astronaut)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIZE = 160


def face_frame(shift: int = 0) -> np.ndarray:
    """A (SIZE, SIZE, 3) RGB frame of the astronaut's face, moved ``shift`` pixels to the right."""
    from skimage import data

    face = cv2.resize(data.astronaut()[0:300, 80:380], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.roll(face, shift, axis=1)


def blank_frame() -> np.ndarray:
    """A grey frame with no face."""
    return np.full((SIZE, SIZE, 3), 120, np.uint8)


def write_video(path: Path, pattern: str, fps: int = 10) -> Path:
    """Write an mp4 whose frames follow ``pattern``: 'F' = face (slowly moving), '.' = no face."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE, SIZE))
    for i, kind in enumerate(pattern):
        frame = face_frame(i % 4) if kind == "F" else blank_frame()
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
