"""What each synthetic video is, before any pixel: subject, age, latent cues, expression, pose, distractors.

Each subject has an age (uniform integer in ``[min_age, max_age]``), an age-free identity (face
shape, skin tone, hair, eye colour, ...) and a latent value per age cue: ``t ** exponent`` plus
Gaussian noise, where ``t`` is the age scaled to 0..1. Regional cues (wrinkles, spots, greying)
are drawn in fixed facial regions; dynamic cues set the smile's onset speed, amplitude and apex
duration. Each video is neutral -> smile -> neutral with small head motion, and a random
``distractor_fraction`` of its frames are uninformative (occluded, blurred, eyes closed or
cue-free). A plan depends on (seed, subject, video) alone, so any video can be made on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from age_estimation.config import SynthConfig
from age_estimation.data.synth.face import FrameState, Identity

# Part of the dataset key: raise it whenever a change alters the videos or their ground truth.
GENERATOR_VERSION = 1
VIDEO_DIR = "videos"
LABELS = ("posed", "spontaneous")
DISTRACTOR_KINDS = ("occluded", "blurred", "eyes_closed", "cue_free")


@dataclass(frozen=True)
class Cue:
    """One age cue: latent value ``t ** exponent + N(0, subject_sigma) + N(0, video_sigma)``."""

    name: str
    exponent: float
    subject_sigma: float
    video_sigma: float = 0.0

    @property
    def sigma(self) -> float:
        """Total noise of one video's latent value around its age curve."""
        return math.hypot(self.subject_sigma, self.video_sigma)


# The generative model of age. Regional cues are drawn in CUE_REGIONS (name prefix); the smile
# cues shape the expression dynamics. The noise levels set the oracle floor (about 3.6 years
# for ages 8..76).
REGIONAL_CUES = (
    Cue("forehead_lines", 1.1, 0.19),
    Cue("crows_feet", 1.3, 0.19),
    Cue("eye_bags", 0.9, 0.21),
    Cue("nasolabial_folds", 1.0, 0.19),
    Cue("skin_spots", 1.4, 0.21),
    Cue("hair_grey", 1.6, 0.19),
)
DYNAMIC_CUES = (
    Cue("smile_onset", 1.0, 0.22, 0.17),
    Cue("smile_amplitude", 1.0, 0.22, 0.17),
    Cue("smile_apex", 1.0, 0.22, 0.17),
)
CUES = REGIONAL_CUES + DYNAMIC_CUES
_VISUAL_LOW, _VISUAL_HIGH = -0.15, 1.15  # latent range mapped onto visual intensity 0..1


@dataclass
class VideoPlan:
    """Everything about one video except its pixels, derived from (seed, subject, video) alone."""

    path: str
    subject: str
    label: str
    age: int
    cues: dict[str, float]
    identity: Identity
    states: list[FrameState]
    distractor_kind: list[str]
    scene_seed: int
    noise_sigma: float
    frame_size: int


def video_indices(cfg: SynthConfig) -> list[tuple[int, int]]:
    """(subject, video) of every video of the dataset, subject-major."""
    return [(s, v) for s in range(cfg.subjects) for v in range(cfg.videos_per_subject)]


def all_plans(cfg: SynthConfig) -> list[VideoPlan]:
    """The plan of every video of the dataset, subject-major."""
    return [plan_video(cfg, s, v) for s, v in video_indices(cfg)]


def subject_id(index: int, subjects: int) -> str:
    """Zero-padded subject code (``001``), like UvA-NEMO's."""
    return f"{index + 1:0{max(3, len(str(subjects)))}d}"


def plan_video(cfg: SynthConfig, subject_index: int, video_index: int) -> VideoPlan:
    """Sample one video's subject, cues, timeline and distractors from its own seeded streams."""
    subj_rng = np.random.default_rng([cfg.seed, subject_index, 0])
    age = int(subj_rng.integers(math.ceil(cfg.min_age), math.floor(cfg.max_age) + 1))
    identity = _sample_identity(subj_rng)
    subject_noise = {cue.name: cue.subject_sigma * subj_rng.standard_normal() for cue in CUES}
    rng = np.random.default_rng([cfg.seed, subject_index, video_index + 1])
    t = (age - cfg.min_age) / (cfg.max_age - cfg.min_age)
    cues = {
        cue.name: float(t**cue.exponent + subject_noise[cue.name] + cue.video_sigma * rng.standard_normal())
        for cue in CUES
    }
    label = LABELS[int(rng.integers(len(LABELS)))]
    sid = subject_id(subject_index, cfg.subjects)
    smile = _smile_curve(cfg.frames, {k: visual_intensity(v) for k, v in cues.items()}, label, rng)
    kinds = _distractor_kinds(cfg, rng)
    states = _frame_states(cfg, cues, smile, kinds, rng, (cfg.seed, subject_index, video_index))
    return VideoPlan(
        path=f"{VIDEO_DIR}/{sid}_{label}_{video_index + 1}.mp4",
        subject=sid,
        label=label,
        age=age,
        cues=cues,
        identity=identity,
        states=states,
        distractor_kind=kinds,
        scene_seed=int(rng.integers(2**31)),
        noise_sigma=float(rng.uniform(1.5, 5.0)),
        frame_size=cfg.frame_size,
    )


def visual_intensity(latent: float) -> float:
    """Map a latent cue value onto the 0..1 drawing intensity (linear, clipped at the far tails)."""
    return float(np.clip((latent - _VISUAL_LOW) / (_VISUAL_HIGH - _VISUAL_LOW), 0.0, 1.0))


def _sample_identity(rng: np.random.Generator) -> Identity:
    light, dark = np.array([175.0, 198.0, 235.0]), np.array([55.0, 80.0, 120.0])
    skin = light + (dark - light) * rng.uniform() + rng.uniform(-8, 8, 3)
    palette = np.array([[25, 25, 30], [30, 45, 70], [45, 75, 115], [110, 170, 210], [40, 70, 150]], float)
    eyes = np.array([[30, 60, 100], [160, 120, 60], [90, 130, 80], [20, 30, 45]], float)
    n_spots = 14
    spots = np.stack(
        [
            rng.choice([-1.0, 1.0], n_spots) * rng.uniform(0.48, 0.92, n_spots),
            rng.uniform(0.34, 0.84, n_spots),
            rng.uniform(0.035, 0.055, n_spots),
        ],
        axis=1,
    )
    return Identity(
        head_width=float(rng.uniform(1.08, 1.25)),
        head_height=float(rng.uniform(1.8, 2.0)),
        squareness=float(rng.uniform(2.0, 2.8)),
        jaw_taper=float(rng.uniform(0.1, 0.35)),
        skin=skin,
        hair=palette[rng.integers(len(palette))] + rng.uniform(-10, 10, 3),
        hair_style=str(rng.choice(["short", "medium", "long"])),
        hairline=float(rng.uniform(-1.08, -0.98)),
        eye_colour=eyes[rng.integers(len(eyes))],
        lips=skin * np.array([0.72, 0.68, 1.0]) * rng.uniform(0.85, 1.0),
        ears=bool(rng.uniform() < 0.7),
        brow_thickness=float(rng.uniform(0.05, 0.09)),
        brow_tilt=float(rng.uniform(-0.1, 0.1)),
        nose_length=float(rng.uniform(0.5, 0.62)),
        mouth_width=float(rng.uniform(0.7, 0.9)),
        spots=spots,
    )


def _smile_curve(frames: int, visual: dict[str, float], label: str, rng: np.random.Generator) -> np.ndarray:
    """Neutral -> smile -> neutral: onset, apex and offset durations and amplitude from the cues."""
    onset = 0.08 + 0.22 * visual["smile_onset"]
    amplitude = 1.0 - 0.55 * visual["smile_amplitude"]
    apex = 0.12 + 0.28 * visual["smile_apex"]
    if label == "posed":  # posed smiles are a little faster and broader, at every age
        onset, amplitude = onset * 0.85, amplitude + 0.08
    start = rng.uniform(0.06, 0.18)
    offset = onset * rng.uniform(1.0, 1.4)
    tau = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    rise = _smoothstep((tau - start) / onset)
    fall = 1 - _smoothstep((tau - start - onset - apex) / offset)
    return amplitude * np.minimum(rise, fall)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _distractor_kinds(cfg: SynthConfig, rng: np.random.Generator) -> list[str]:
    """At least ``distractor_fraction`` of the frames, at random positions, each of a random kind."""
    count = min(cfg.frames, math.ceil(cfg.distractor_fraction * cfg.frames - 1e-9))
    kinds = [""] * cfg.frames
    for index in rng.choice(cfg.frames, size=count, replace=False):
        kinds[int(index)] = DISTRACTOR_KINDS[int(rng.integers(len(DISTRACTOR_KINDS)))]
    return kinds


def _frame_states(
    cfg: SynthConfig,
    cues: dict[str, float],
    smile: np.ndarray,
    kinds: list[str],
    rng: np.random.Generator,
    ids: tuple[int, int, int],
) -> list[FrameState]:
    """Pose with smooth small head motion, expression and distractors for every frame."""
    size = cfg.frame_size
    iod = size * rng.uniform(0.16, 0.2)
    cx, cy = size * (0.5 + rng.uniform(-0.06, 0.06)), size * (0.47 + rng.uniform(-0.04, 0.04))
    tau = np.arange(cfg.frames) / max(cfg.fps, 1)

    def wobble(amplitude: float) -> np.ndarray:
        freq, phase = rng.uniform(0.2, 0.8, 2), rng.uniform(0, 2 * np.pi, 2)
        return amplitude * (0.6 * np.sin(2 * np.pi * freq[0] * tau + phase[0]) + 0.4 * np.sin(
            2 * np.pi * freq[1] * tau + phase[1]))

    dx, dy = wobble(size * rng.uniform(0.005, 0.02)), wobble(size * rng.uniform(0.005, 0.02))
    angle, scale = wobble(rng.uniform(1.0, 4.0)), 1 + wobble(rng.uniform(0.01, 0.04))
    regional = {cue.name: visual_intensity(cues[cue.name]) for cue in REGIONAL_CUES}
    noise_seeds = np.random.SeedSequence(list(ids) + [7]).generate_state(cfg.frames)
    states = []
    for f, kind in enumerate(kinds):
        state = FrameState(
            centre=(float(cx + dx[f]), float(cy + dy[f])),
            iod_px=float(iod * scale[f]),
            angle_deg=float(angle[f]),
            smile=float(smile[f]),
            cues={} if kind else dict(regional),
            noise_seed=int(noise_seeds[f]),
        )
        if kind == "occluded":
            state.occluder = (
                str(rng.choice(["bar", "hand"])), float(rng.uniform(-0.1, 0.6)),
                float(rng.uniform(-25, 25)), float(rng.uniform(0.7, 1.1)),
            )
        elif kind == "blurred":
            state.blur_sigma = float(size * rng.uniform(0.035, 0.06))
        elif kind == "eyes_closed":
            state.eyes_closed = True
        states.append(state)
    return states
