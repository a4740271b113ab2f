"""Render one frame of a procedural face with OpenCV, from identity, scene and per-frame state.

Geometry lives in *face units*: the origin is the midpoint between the eye centres, the x axis
points to the image right, y points down, and the inter-ocular distance (IOD) is 1, so the eye
centres are at (-0.5, 0) and (0.5, 0). A similarity transform (``FrameState.centre``, ``iod_px``,
``angle_deg``) places the face in the frame; the age-cue regions in ``CUE_REGIONS`` are boxes in
the same units, which is what lets ``synth`` state them in the aligned-crop template.

Example:
    >>> frame = render_frame(identity, scene, FrameState(centre=(96, 90), iod_px=48.0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_SCALE = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# Boxes (x0, y0, x1, y1) in face units where each regional age cue is drawn, with a margin.
CUE_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "forehead_lines": (-0.66, -0.90, 0.66, -0.40),
    "crows_feet_left": (-1.08, -0.24, -0.70, 0.24),
    "crows_feet_right": (0.70, -0.24, 1.08, 0.24),
    "eye_bags_left": (-0.78, 0.08, -0.22, 0.34),
    "eye_bags_right": (0.22, 0.08, 0.78, 0.34),
    "nasolabial_folds_left": (-0.66, 0.42, -0.14, 1.18),
    "nasolabial_folds_right": (0.14, 0.42, 0.66, 1.18),
    "skin_spots_left": (-1.00, 0.28, -0.40, 0.88),
    "skin_spots_right": (0.40, 0.28, 1.00, 0.88),
    "hair_grey_top": (-1.30, -1.40, 1.30, -0.86),
    "hair_grey_left": (-1.30, -1.00, -0.88, -0.05),
    "hair_grey_right": (0.88, -1.00, 1.30, -0.05),
    "mouth": (-0.62, 0.82, 0.62, 1.40),
}

_CHIN_Y = 1.95  # the chin sits this far below the eyes, in IOD
_GREY_HAIR = np.array([205.0, 205.0, 210.0])  # BGR of fully grey hair


@dataclass(frozen=True)
class Identity:
    """Age-free appearance of one subject (colours are BGR floats in 0..255)."""

    head_width: float
    head_height: float
    squareness: float
    jaw_taper: float
    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    hairline: float
    eye_colour: np.ndarray
    lips: np.ndarray
    ears: bool
    brow_thickness: float
    brow_tilt: float
    nose_length: float
    mouth_width: float
    spots: np.ndarray  # (n, 3): x, y, radius of potential age spots on the cheeks, face units

    @cached_property
    def shapes(self) -> dict[str, np.ndarray]:
        """The polygons that do not change from frame to frame, in face units (built once)."""
        return _static_shapes(self)

    @cached_property
    def packed_shapes(self) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """``shapes`` as one point array plus (name, start, stop) slices, to transform in one go."""
        names, slices, start = list(self.shapes), [], 0
        for name in names:
            slices.append((name, start, start + len(self.shapes[name])))
            start += len(self.shapes[name])
        return np.concatenate([self.shapes[n] for n in names]), slices


@dataclass(frozen=True)
class Scene:
    """Per-video surroundings: background, a multiplicative lighting field and camera noise."""

    background: np.ndarray  # (H, W, 3) uint8 BGR
    light: np.ndarray  # (H, W, 3) float32 gain
    noise: np.ndarray  # int16 camera noise, larger than a frame; each frame adds a window at its own offset


@dataclass
class FrameState:
    """Everything that changes per frame: pose, expression, age-cue intensities and distractors.

    ``cues`` maps a cue name to a visual intensity in 0..1; an empty dict draws no age cue.
    """

    centre: tuple[float, float]
    iod_px: float
    angle_deg: float = 0.0
    smile: float = 0.0
    eyes_closed: bool = False
    cues: dict[str, float] = field(default_factory=dict)
    blur_sigma: float = 0.0
    occluder: tuple[str, float, float, float] | None = None  # kind, y centre (face units), angle, shade
    noise_seed: int = 0


def render_frame(identity: Identity, scene: Scene, state: FrameState) -> np.ndarray:
    """Draw one BGR uint8 frame: background, face with its cues, distractors, lighting, noise."""
    img = scene.background.copy()
    pen = _Pen(img, state)
    static = pen.place(identity)
    _draw_back_hair(pen, static, identity)
    hair = _hair_colour(identity, state.cues.get("hair_grey", 0.0))
    pen.fill_px(static["head"], identity.skin)
    _draw_wrinkles(pen, static, identity, state)
    pen.fill_px(static["crown"], hair)
    _draw_brows(pen, identity, state.smile)
    _draw_eyes(pen, identity, state)
    _draw_nose(pen, static, identity)
    _draw_mouth(pen, identity, state.smile)
    if state.occluder is not None:
        _draw_occluder(pen, identity, state.occluder)
    out = cv2.multiply(img, scene.light, dtype=cv2.CV_8U)
    if state.blur_sigma > 0:
        out = _strong_blur(out, state.blur_sigma)
    height, width = out.shape[:2]
    y0 = state.noise_seed % (scene.noise.shape[0] - height + 1)
    x0 = (state.noise_seed // 7919) % (scene.noise.shape[1] - width + 1)
    return cv2.add(out, scene.noise[y0 : y0 + height, x0 : x0 + width], dtype=cv2.CV_8U)


def _strong_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` pixels, computed at reduced resolution (same look, far cheaper)."""
    height, width = img.shape[:2]
    factor = max(1, int(sigma // 3))
    small = cv2.resize(img, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


class _Pen:
    """Draws polygons and polylines given in face units onto the frame."""

    def __init__(self, img: np.ndarray, state: FrameState) -> None:
        theta = np.deg2rad(state.angle_deg)
        c, s = np.cos(theta), np.sin(theta)
        self.img = img
        self.iod = state.iod_px
        self.matrix = state.iod_px * np.array([[c, -s], [s, c]])
        self.offset = np.asarray(state.centre, dtype=np.float64)

    def _px(self, pts: np.ndarray) -> np.ndarray:
        xy = pts @ self.matrix.T + self.offset
        return np.round(xy * _SCALE).astype(np.int32).reshape(-1, 1, 2)

    def place(self, identity: Identity) -> dict[str, np.ndarray]:
        """Pixel coordinates of all the identity's static shapes, transformed at once."""
        points, slices = identity.packed_shapes
        px = self._px(points)
        return {name: px[start:stop] for name, start, stop in slices}

    def fill(self, pts: np.ndarray, colour: np.ndarray) -> None:
        self.fill_px(self._px(pts), colour)

    def fill_px(self, px: np.ndarray, colour: np.ndarray) -> None:
        cv2.fillPoly(self.img, [px], _bgr(colour), _AA, _SHIFT)

    def lines(self, polylines: list[np.ndarray], colour: np.ndarray, width: float) -> None:
        self.lines_px([self._px(p) for p in polylines], colour, width)

    def lines_px(self, polylines: list[np.ndarray], colour: np.ndarray, width: float) -> None:
        thickness = max(1, round(width * self.iod))
        cv2.polylines(self.img, polylines, False, _bgr(colour), thickness, _AA, _SHIFT)


def _bgr(colour: np.ndarray) -> tuple[float, float, float]:
    return (float(colour[0]), float(colour[1]), float(colour[2]))  # OpenCV saturates to 0..255


@lru_cache(maxsize=64)
def _unit_arc(start: float, end: float, n: int) -> np.ndarray:
    t = np.deg2rad(np.linspace(start, end, n))
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ellipse(cx: float, cy: float, ax: float, ay: float, start: float = 0, end: float = 360, n: int = 40):
    return _unit_arc(start, end, n) * (ax, ay) + (cx, cy)


def _head_outline(ident: Identity, n: int = 72) -> np.ndarray:
    """A superellipse centred below the eyes whose lower half tapers into a jaw."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    p = 2.0 / ident.squareness
    x = np.sign(np.cos(t)) * np.abs(np.cos(t)) ** p * ident.head_width
    y = np.sign(np.sin(t)) * np.abs(np.sin(t)) ** p * ident.head_height
    lower = np.clip(y / ident.head_height, 0, 1)
    x = x * (1 - ident.jaw_taper * lower**2)
    return np.stack([x, y + _CHIN_Y - ident.head_height], axis=1)


def _static_shapes(ident: Identity) -> dict[str, np.ndarray]:
    head = _head_outline(ident, 96)
    cy = _CHIN_Y - ident.head_height
    w = ident.head_width

    def upper_part(below: float, sx: float, sy: float) -> np.ndarray:
        part = head[head[:, 1] <= below]
        part = part[np.argsort(part[:, 0])]
        return np.stack([part[:, 0] * sx, (part[:, 1] - cy) * sy + cy], 1)

    temple_bottom = -0.25 if ident.hair_style == "short" else -0.12
    xs = np.linspace(0.9 * w, -0.9 * w, 11)
    crown = np.concatenate(
        [
            upper_part(temple_bottom, 1.04, 1.04),
            [[0.86 * w, temple_bottom], [0.9 * w, ident.hairline]],
            np.stack([xs, ident.hairline + 0.05 * np.cos(xs * 3.0)], 1),
            [[-0.9 * w, ident.hairline], [-0.86 * w, temple_bottom]],
        ]
    )
    long_hair = np.concatenate([[[-1.16 * w, 1.5]], upper_part(cy, 1.12, 1.06), [[1.16 * w, 1.5]]])
    nose = ident.nose_length
    return {
        "head": _head_outline(ident),
        "crown": crown,
        "long_hair": long_hair,
        "ear_left": _ellipse(-0.97 * w, 0.3, 0.16, 0.3, n=20),
        "ear_right": _ellipse(0.97 * w, 0.3, 0.16, 0.3, n=20),
        "nose_bridge": np.array([[0.1, 0.1], [0.14, nose - 0.1]]),
        "nose_tip": _ellipse(0, nose - 0.05, 0.17, 0.09, 20, 160, 12),
        "nostril_left": _ellipse(-0.08, nose, 0.045, 0.03, n=10),
        "nostril_right": _ellipse(0.08, nose, 0.045, 0.03, n=10),
        **{f"spot_{k}": _ellipse(x, y, r, r, n=10) for k, (x, y, r) in enumerate(ident.spots)},
    }


def _hair_colour(ident: Identity, grey: float) -> np.ndarray:
    return ident.hair * (1 - grey) + _GREY_HAIR * grey


def _draw_back_hair(pen: _Pen, static: dict[str, np.ndarray], ident: Identity) -> None:
    """Long hair falling behind the head (greying shows at the crown and temples only), and the ears."""
    if ident.hair_style == "long":
        pen.fill_px(static["long_hair"], ident.hair * 0.85)
    if ident.ears:
        pen.fill_px(static["ear_left"], ident.skin * 0.9)
        pen.fill_px(static["ear_right"], ident.skin * 0.9)


def _draw_wrinkles(pen: _Pen, static: dict[str, np.ndarray], ident: Identity, state: FrameState) -> None:
    """The regional age cues, each drawn darker than the skin in proportion to its intensity."""
    cues = state.cues
    if not cues:
        return

    def shade(v: float, depth: float) -> np.ndarray:
        return ident.skin * (1 - depth * v)

    v = cues.get("forehead_lines", 0.0)
    if v > 0.02:
        half = 0.55 * (0.35 + 0.65 * v)
        xs = np.linspace(-half, half, 12)
        lines = [np.stack([xs, y0 + 0.035 * np.sin(xs * 5 + k)], 1) for k, y0 in enumerate((-0.52, -0.66, -0.8))]
        pen.lines(lines, shade(v, 0.6), 0.055)
    v = cues.get("crows_feet", 0.0)
    if v > 0.02:
        rays = _unit_arc(-28.0, 28.0, 3)
        inner, outer = 0.04 * rays, (0.1 + 0.16 * v) * rays
        lines = [np.stack([a, b]) * (side, 1) + (side * 0.76, 0) for side in (-1, 1) for a, b in zip(inner, outer)]
        pen.lines(lines, shade(v, 0.65), 0.05)
    v = cues.get("eye_bags", 0.0)
    if v > 0.02:
        pen.lines([_ellipse(side * 0.5, 0.1, 0.2, 0.12, 30, 150, 12) for side in (-1, 1)], shade(v, 0.5), 0.05)
    v = cues.get("nasolabial_folds", 0.0)
    if v > 0.02:
        t = np.linspace(0, 1, 10)
        x = 0.24 + (0.22 + 0.06 * state.smile) * t + 0.06 * np.sin(np.pi * t)
        fold = np.stack([x, 0.5 + 0.55 * t], 1)
        pen.lines([fold, fold * (-1, 1)], shade(v, 0.55), 0.06)
    v = cues.get("skin_spots", 0.0)
    if v > 0.02:
        colour = ident.skin * np.array([0.55, 0.62, 0.78]) * (1 - 0.25 * v)
        for k in range(round(v * len(ident.spots))):
            pen.fill_px(static[f"spot_{k}"], colour)


def _draw_brows(pen: _Pen, ident: Identity, smile: float) -> None:
    xs = np.linspace(0.22, 0.78, 7)
    ys = -0.3 - 0.06 * np.sin(np.pi * (xs - 0.22) / 0.56) + ident.brow_tilt * (xs - 0.5) - 0.02 * smile
    brow = np.stack([xs, ys], 1)
    pen.lines([brow, brow * (-1, 1)], ident.hair * 0.55, ident.brow_thickness)  # brows do not grey


def _draw_eyes(pen: _Pen, ident: Identity, state: FrameState) -> None:
    squint = 1 - 0.25 * state.smile
    for side in (-1, 1):
        cx = side * 0.5
        if state.eyes_closed:
            pen.lines([_ellipse(cx, -0.02, 0.22, 0.07, 10, 170, 12)], ident.skin * 0.35, 0.045)
            continue
        pen.fill(_ellipse(cx, 0, 0.23, 0.115 * squint), np.array([240.0, 242.0, 245.0]))
        pen.fill(_ellipse(cx, 0, 0.1, 0.1 * min(1.0, squint + 0.1), n=20), ident.eye_colour)
        pen.fill(_ellipse(cx, 0, 0.045, 0.045, n=12), np.array([15.0, 15.0, 15.0]))
        pen.lines([_ellipse(cx, 0, 0.23, 0.115 * squint, 180, 360, 14)], ident.skin * 0.3, 0.04)


def _draw_nose(pen: _Pen, static: dict[str, np.ndarray], ident: Identity) -> None:
    pen.lines_px([static["nose_bridge"]], ident.skin * 0.82, 0.04)
    pen.lines_px([static["nose_tip"]], ident.skin * 0.62, 0.05)
    pen.fill_px(static["nostril_left"], ident.skin * 0.45)
    pen.fill_px(static["nostril_right"], ident.skin * 0.45)


def _draw_mouth(pen: _Pen, ident: Identity, smile: float) -> None:
    """Lips whose corners rise and part with ``smile`` (0 neutral, 1 full smile)."""
    half = ident.mouth_width / 2 * (1 + 0.22 * smile)
    y0 = 1.08
    lift = 0.16 * smile
    gap = 0.1 * max(0.0, smile - 0.25)
    xs = np.linspace(-half, half, 15)
    u = xs / half
    corner = y0 - lift * u**2
    upper_top = corner - 0.07 * (1 - u**2) - 0.03 * np.cos(u * np.pi * 2) * (1 - u**2)
    upper_bottom = corner - gap * (1 - u**2) * 0.4
    lower_top = corner + gap * (1 - u**2)
    lower_bottom = corner + (0.1 + gap) * (1 - u**2) + 0.01
    if gap > 0:
        mouth = np.concatenate([np.stack([xs, upper_bottom], 1), np.stack([xs, lower_top], 1)[::-1]])
        pen.fill(mouth, np.array([70.0, 60.0, 120.0]))
        teeth_bottom = upper_bottom + 0.6 * gap * (1 - u**2)
        pen.fill(np.concatenate([np.stack([xs, upper_bottom], 1), np.stack([xs, teeth_bottom], 1)[::-1]]),
                 np.array([225.0, 235.0, 240.0]))
    pen.fill(np.concatenate([np.stack([xs, upper_top], 1), np.stack([xs, upper_bottom], 1)[::-1]]), ident.lips)
    pen.fill(np.concatenate([np.stack([xs, lower_top], 1), np.stack([xs, lower_bottom], 1)[::-1]]),
             ident.lips * 1.08)


def _draw_occluder(pen: _Pen, ident: Identity, occluder: tuple[str, float, float, float]) -> None:
    """A bar or a hand in front of the face, hiding most of it."""
    kind, y, angle, shade = occluder
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if kind == "hand":
        palm = _ellipse(0, 0, 1.0, 0.85) @ rot.T + [0, y]
        pen.fill(palm, ident.skin * shade)
        for k in range(4):
            finger = np.array([[-0.12, 0], [0.12, 0], [0.1, -0.9], [-0.1, -0.9]]) + [-0.54 + 0.36 * k, -0.55]
            pen.fill(finger @ rot.T + [0, y], ident.skin * shade * 0.97)
    else:
        bar = np.array([[-2.4, -0.62], [2.4, -0.62], [2.4, 0.62], [-2.4, 0.62]]) @ rot.T + [0, y]
        pen.fill(bar, np.array([60.0, 50.0, 40.0]) * shade * 2)
