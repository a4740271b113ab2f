"""The synthetic default dataset: procedural smile videos with known age cues and per-frame ground truth.

Each subject has an age (uniform integer in ``[min_age, max_age]``), an age-free identity (face
shape, skin tone, hair, eye colour, ...) and a latent value per age cue: ``t ** exponent`` plus
Gaussian noise, where ``t`` is the age scaled to 0..1. Regional cues (wrinkles, spots, greying)
are drawn in fixed facial regions; dynamic cues set the smile's onset speed, amplitude and apex
duration. Each video is neutral -> smile -> neutral with small head motion, and a random
``distractor_fraction`` of its frames are uninformative (occluded, blurred, eyes closed or
cue-free). ``generate_dataset`` writes the mp4 videos, ``manifest.csv`` and ``ground_truth.json``
(per-frame informative flags, cue values, cue regions in aligned-crop coordinates and the oracle
floor: the MAE of the posterior-median age given the true latent cue values).

Example:
    >>> summary = generate_dataset(Path("data/synthetic"), SynthConfig(subjects=20), AlignConfig())
    >>> summary["oracle_floor_mae"]
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from age_estimation.atomic_files import write_bytes_atomic, write_json_atomic
from age_estimation.config import AlignConfig, SynthConfig
from age_estimation.data.synth.face import CUE_REGIONS, FrameState, Identity, Scene, render_frame

GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.csv"
GROUND_TRUTH_NAME = "ground_truth.json"
MARKER_NAME = ".synth_videos.json"
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


# ---------------------------------------------------------------------------------------------
# Planning: subjects, cues, expression dynamics, pose and distractors.


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


# ---------------------------------------------------------------------------------------------
# Rendering and writing one video.


def build_scene(seed: int, size: int, noise_sigma: float) -> Scene:
    """A video's background (gradient plus blurred shapes), lighting field and camera-noise field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    base = rng.uniform(40, 220, 3).astype(np.float32)
    tilt = rng.uniform(-60, 60, 3).astype(np.float32)
    background = base + tilt * (xx if rng.uniform() < 0.5 else yy)[..., None]
    background = np.clip(background, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(float(v) for v in rng.uniform(20, 235, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 12, size // 4))
        if rng.uniform() < 0.5:
            cv2.circle(background, (x, y), r, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(background, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1, cv2.LINE_AA)
    background = cv2.GaussianBlur(background, (0, 0), size / 90)
    phi = rng.uniform(0, 2 * np.pi)
    gain = rng.uniform(0.8, 1.12) * (1 + rng.uniform(0, 0.5) * (np.cos(phi) * xx + np.sin(phi) * yy))
    light = gain[..., None] * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    bank = size + size // 4
    noise = rng.standard_normal((bank, bank, 3), dtype=np.float32) * noise_sigma
    noise = np.round(noise).astype(np.int16)
    return Scene(background=background, light=light.astype(np.float32), noise=noise)


def render_video(plan: VideoPlan) -> np.ndarray:
    """All frames of a planned video, (N, S, S, 3) uint8 BGR."""
    scene = build_scene(plan.scene_seed, plan.frame_size, plan.noise_sigma)
    return np.stack([render_frame(plan.identity, scene, state) for state in plan.states])


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode BGR frames as mp4 (mp4v) into a temporary file, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open an mp4v video writer (is FFmpeg support missing?)")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise RuntimeError(f"{path}: the video writer produced no data")
    tmp.replace(path)


def _make_video(task: tuple[SynthConfig, int, int, str]) -> str:
    cfg, subject_index, video_index, out_dir = task
    plan = plan_video(cfg, subject_index, video_index)
    write_video(Path(out_dir) / plan.path, render_video(plan), cfg.fps)
    return plan.path


def _init_worker() -> None:
    cv2.setNumThreads(1)


def benchmark_generation(cfg: SynthConfig, videos: int = 16, workers: int = 2) -> dict[str, float]:
    """Render and encode ``videos`` videos in one process and project the full dataset's time.

    CPU time per frame is robust to other load on the machine; the projection assumes ``workers``
    free cores and linear scaling (videos are independent).
    """
    import tempfile

    cv2.setNumThreads(1)
    tasks = [(s, v) for s in range(cfg.subjects) for v in range(cfg.videos_per_subject)][:videos]
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        for s, v in tasks:
            _make_video((cfg, s, v, tmp))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frames = len(tasks) * cfg.frames
    total = cfg.subjects * cfg.videos_per_subject * cfg.frames
    return {
        "frames": frames,
        "cpu_ms_per_frame": round(1000 * cpu / frames, 3),
        "wall_ms_per_frame": round(1000 * wall / frames, 3),
        "dataset_frames": total,
        "projected_seconds": round(total * cpu / frames / max(1, workers), 1),
    }


# ---------------------------------------------------------------------------------------------
# The oracle: the best age estimate from the true latent cue values.


def oracle_estimates(latents: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Posterior-median ages of videos with latent cues ``latents`` (n, len(CUES)) in CUES order.

    The posterior is exact for the generative model: uniform integer ages and Gaussian cue noise.
    The median minimises the expected absolute error, so its MAE is the floor for any estimator.
    """
    ages = np.arange(math.ceil(cfg.min_age), math.floor(cfg.max_age) + 1, dtype=np.float64)
    t = (ages - cfg.min_age) / (cfg.max_age - cfg.min_age)
    means = np.stack([t**cue.exponent for cue in CUES], axis=1)  # (G, K)
    sigmas = np.array([cue.sigma for cue in CUES])
    z = (np.asarray(latents, dtype=np.float64)[:, None, :] - means[None]) / sigmas
    log_post = -0.5 * np.sum(z * z, axis=2)  # (n, G)
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    cdf = np.cumsum(post, axis=1) / post.sum(axis=1, keepdims=True)
    return ages[np.argmax(cdf >= 0.5, axis=1)]


def oracle_floor_mae(plans: list[VideoPlan], cfg: SynthConfig) -> float:
    """MAE of the oracle estimates over the given videos."""
    latents = np.array([[plan.cues[cue.name] for cue in CUES] for plan in plans])
    ages = np.array([plan.age for plan in plans], dtype=np.float64)
    return float(np.mean(np.abs(oracle_estimates(latents, cfg) - ages)))


def expected_oracle_floor(cfg: SynthConfig, samples: int = 20000, seed: int = 0) -> float:
    """Population oracle floor from ``samples`` videos simulated under the same generative model."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(math.ceil(cfg.min_age), math.floor(cfg.max_age) + 1, samples).astype(np.float64)
    t = (ages - cfg.min_age) / (cfg.max_age - cfg.min_age)
    latents = np.stack(
        [t**cue.exponent + cue.sigma * rng.standard_normal(samples) for cue in CUES], axis=1
    )
    return float(np.mean(np.abs(oracle_estimates(latents, cfg) - ages)))


def mean_predictor_mae(ages: np.ndarray) -> float:
    """MAE of always predicting the mean age: the trivial baseline."""
    ages = np.asarray(ages, dtype=np.float64)
    return float(np.mean(np.abs(ages - ages.mean())))


# ---------------------------------------------------------------------------------------------
# Ground truth and the dataset.


def cue_regions(align: AlignConfig) -> dict[str, list[float]]:
    """Cue boxes in normalised aligned-crop coordinates of ``align``'s eye template, clipped to 0..1."""
    d, eye_y = align.eye_distance, align.eye_y

    def norm(value: float) -> float:
        return round(min(1.0, max(0.0, value)), 4)

    return {
        name: [norm(0.5 + d * x0), norm(eye_y + d * y0), norm(0.5 + d * x1), norm(eye_y + d * y1)]
        for name, (x0, y0, x1, y1) in CUE_REGIONS.items()
    }


def generator_info(cfg: SynthConfig, align: AlignConfig) -> dict[str, Any]:
    """The generator's config with the keys of its videos and of its whole ground truth."""
    info: dict[str, Any] = {**asdict(cfg), "version": GENERATOR_VERSION}
    info["video_key"] = _digest(info)
    info["template"] = {"eye_distance": align.eye_distance, "eye_y": align.eye_y}
    info["key"] = _digest(info)
    return info


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def all_plans(cfg: SynthConfig) -> list[VideoPlan]:
    """The plan of every video of the dataset, subject-major."""
    return [plan_video(cfg, s, v) for s in range(cfg.subjects) for v in range(cfg.videos_per_subject)]


def ground_truth(plans: list[VideoPlan], cfg: SynthConfig, align: AlignConfig) -> dict[str, Any]:
    """The ``ground_truth.json`` document for ``plans``."""
    latents = np.array([[plan.cues[cue.name] for cue in CUES] for plan in plans])
    oracle = oracle_estimates(latents, cfg)
    ages = np.array([plan.age for plan in plans], dtype=np.float64)
    return {
        "generator": generator_info(cfg, align),
        "oracle_floor_mae": round(float(np.mean(np.abs(oracle - ages))), 4),
        "expected_oracle_floor_mae": round(expected_oracle_floor(cfg), 4),
        "mean_predictor_mae": round(mean_predictor_mae(ages), 4),
        "cue_regions": cue_regions(align),
        "cue_model": {cue.name: {"exponent": cue.exponent, "sigma": round(cue.sigma, 4)} for cue in CUES},
        "videos": {
            plan.path: {
                "age": plan.age,
                "subject": plan.subject,
                "label": plan.label,
                "informative": [0 if kind else 1 for kind in plan.distractor_kind],
                "distractor_kind": list(plan.distractor_kind),
                "cues": {name: round(value, 5) for name, value in plan.cues.items()},
                "oracle_age": float(est),
            }
            for plan, est in zip(plans, oracle)
        },
    }


def manifest_bytes(plans: list[VideoPlan]) -> bytes:
    """``manifest.csv`` (path,age,subject,label), paths relative to the manifest's folder."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "age", "subject", "label"])
    for plan in plans:
        writer.writerow([plan.path, plan.age, plan.subject, plan.label])
    return buffer.getvalue().encode()


def generate_dataset(
    out_dir: Path, cfg: SynthConfig, align: AlignConfig, workers: int = 0, progress: bool = True
) -> dict:
    """Write the videos, manifest and ground truth into ``out_dir``; resumable and deterministic.

    Returns at once when a matching ground truth and all its videos exist; otherwise writes only
    the missing videos (all of them when the existing ones came from other settings), then the
    manifest and ground truth, each atomically.
    """
    _check_config(cfg)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    start = time.perf_counter()
    info = generator_info(cfg, align)
    plans = all_plans(cfg)
    if _complete(out_dir, info["key"], plans):
        return _summary(out_dir, plans, json.loads((out_dir / GROUND_TRUTH_NAME).read_text()), 0, start)
    stale = _previous_video_key(out_dir) != info["video_key"]
    (out_dir / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    _remove_temp_files(out_dir / VIDEO_DIR)
    write_json_atomic(out_dir / MARKER_NAME, {"video_key": info["video_key"]})
    todo = [
        (cfg, s, v, str(out_dir))
        for (s, v), plan in zip(_indices(cfg), plans)
        if stale or not (out_dir / plan.path).is_file()
    ]
    _run_tasks(todo, workers, progress)
    truth = ground_truth(plans, cfg, align)
    write_bytes_atomic(out_dir / MANIFEST_NAME, manifest_bytes(plans))
    write_json_atomic(out_dir / GROUND_TRUTH_NAME, truth)
    return _summary(out_dir, plans, truth, len(todo), start)


def _check_config(cfg: SynthConfig) -> None:
    problems = [
        (cfg.subjects >= 1, "synth.subjects must be at least 1"),
        (cfg.videos_per_subject >= 1, "synth.videos_per_subject must be at least 1"),
        (cfg.frames >= 2, "synth.frames must be at least 2"),
        (cfg.fps >= 1, "synth.fps must be at least 1"),
        (cfg.frame_size >= 64, "synth.frame_size must be at least 64"),
        (0.0 <= cfg.distractor_fraction < 1.0, "synth.distractor_fraction must be in [0, 1)"),
        (math.ceil(cfg.min_age) <= math.floor(cfg.max_age), "synth.min_age..max_age must contain an integer age"),
    ]
    for ok, message in problems:
        if not ok:
            raise ValueError(message)


def _indices(cfg: SynthConfig) -> list[tuple[int, int]]:
    return [(s, v) for s in range(cfg.subjects) for v in range(cfg.videos_per_subject)]


def _complete(out_dir: Path, key: str, plans: list[VideoPlan]) -> bool:
    path = out_dir / GROUND_TRUTH_NAME
    try:
        truth = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        truth.get("generator", {}).get("key") == key
        and (out_dir / MANIFEST_NAME).is_file()
        and all((out_dir / plan.path).is_file() for plan in plans)
    )


def _previous_video_key(out_dir: Path) -> str | None:
    """The settings key of the videos already in ``out_dir`` (None when unknown)."""
    for name, field_path in ((MARKER_NAME, ("video_key",)), (GROUND_TRUTH_NAME, ("generator", "video_key"))):
        try:
            node: Any = json.loads((out_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key in field_path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            return node
    return None


def _remove_temp_files(video_dir: Path) -> None:
    for tmp in video_dir.glob(".*.tmp.mp4"):
        tmp.unlink(missing_ok=True)


def _run_tasks(tasks: list[tuple[SynthConfig, int, int, str]], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(tasks), desc="synth videos", unit="video", disable=not progress or not tasks)
    with bar:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                _make_video(task)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(_make_video, tasks, chunksize=4):
                bar.update()


def _summary(out_dir: Path, plans: list[VideoPlan], truth: dict, written: int, start: float) -> dict:
    return {
        "out_dir": str(out_dir),
        "manifest": str(out_dir / MANIFEST_NAME),
        "ground_truth": str(out_dir / GROUND_TRUTH_NAME),
        "videos": len(plans),
        "written": written,
        "reused": len(plans) - written,
        "frames": sum(len(plan.states) for plan in plans),
        "subjects": len({plan.subject for plan in plans}),
        "oracle_floor_mae": truth["oracle_floor_mae"],
        "expected_oracle_floor_mae": truth.get("expected_oracle_floor_mae"),
        "mean_predictor_mae": truth["mean_predictor_mae"],
        "key": truth["generator"]["key"],
        "seconds": round(time.perf_counter() - start, 2),
    }
