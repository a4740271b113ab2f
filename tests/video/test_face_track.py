"""Which detection is the tracked face: the main face first, then the one matching its last box."""

from __future__ import annotations

import numpy as np

from age_estimation.video.face_track import Detection, track_face, track_step


def _face(x: float, y: float, size: float, score: float = 0.9) -> Detection:
    eyes = np.array([[x + 0.3 * size, y + 0.4 * size], [x + 0.7 * size, y + 0.4 * size]])
    return Detection(np.array([x, y, size, size]), score, eyes)


def test_tracking_follows_the_first_main_face_not_the_biggest() -> None:
    main, other = _face(80, 60, 60), _face(5, 5, 30)
    frames = [
        [other, main],
        [_face(84, 62, 60), _face(10, 5, 90)],  # the other face grows bigger than ours
        [_face(10, 5, 90)],  # ours is missing
        [_face(10, 5, 90), _face(86, 63, 61)],
    ]
    tracked = track_face(frames, 200, 200)
    assert tracked[0] is main
    assert tracked[1].box[0] == 84
    assert tracked[2] is None
    assert tracked[3].box[0] == 86


def test_a_track_starts_on_the_largest_most_central_face() -> None:
    small, large = _face(90, 90, 20), _face(10, 10, 60)
    assert track_step(None, [small, large], 200, 200) is large
    assert track_step(None, [], 200, 200) is None
