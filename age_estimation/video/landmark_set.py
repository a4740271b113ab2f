"""Which face-mesh vertices the landmark motion stream keeps, and in which order (pure Python).

``LANDMARK_INDICES`` is ``LANDMARK_PAIRS`` flattened (the subject's right point, then left) followed by
``LANDMARK_MIDLINE``: the regions whose motion a smile shows (mouth corners and lips, cheeks, the
nasolabial region beside the nose, eyelids, brows). Mirror pairs let the model compute features that a
horizontal flip leaves unchanged, so flipping frames needs no landmark change. The model reads only
the counts, so it imports this without the mesh runtime.
"""

from __future__ import annotations

LANDMARK_PAIRS: tuple[tuple[int, int], ...] = (
    (61, 291), (78, 308),  # outer and inner mouth corners
    (40, 270), (37, 267),  # upper lip
    (91, 321), (84, 314),  # lower lip
    (50, 280), (205, 425),  # cheeks
    (129, 358), (98, 327),  # nose wings, where the nasolabial folds start
    (33, 263), (133, 362),  # outer and inner eye corners
    (159, 386), (145, 374),  # upper and lower eyelids
    (70, 300), (105, 334), (107, 336),  # brows: outer, middle, inner
)
# Vertices on the face's midline: lip centres (outer and inner), nose tip, nose bridge, chin.
LANDMARK_MIDLINE: tuple[int, ...] = (0, 13, 14, 17, 1, 168, 152)
LANDMARK_INDICES: tuple[int, ...] = tuple(i for pair in LANDMARK_PAIRS for i in pair) + LANDMARK_MIDLINE
LANDMARK_COUNT = len(LANDMARK_INDICES)
