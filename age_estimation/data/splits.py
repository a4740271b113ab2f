"""Subject-independent, age-stratified data splits: a fixed held-out set and k folds over the rest.

Every split is made over *subjects*, never over videos, so no person appears on both sides.
Subjects are ordered by their mean age and assigned within consecutive age strata, which keeps
the age distribution of every side close to the whole. Pure Python/numpy (no TensorFlow) and
deterministic for a given seed.

The index rows come from the prepared cache (``index["videos"][video_id]`` with ``subject``,
``age`` and ``split``). An explicit ``split`` of ``test``/``heldout`` (held out) or
``train``/``dev``/``val`` (kept for development) is honoured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

HELDOUT_LABELS = frozenset({"test", "heldout", "held-out", "held_out"})
DEV_LABELS = frozenset({"train", "dev", "val", "validation"})
MIN_SPLIT_SUBJECTS = 4  # a validation fold this small both selects the checkpoint and calibrates


@dataclass(frozen=True)
class Subject:
    """One person: their videos (in index order) and the mean age over those videos."""

    name: str
    video_ids: tuple[str, ...]
    mean_age: float


def group_subjects(video_ids: Iterable[str], index: Mapping[str, Any]) -> list[Subject]:
    """Group ``video_ids`` by their index subject, ordered by (mean age, subject name)."""
    videos = index.get("videos", {})
    missing = [vid for vid in video_ids if vid not in videos]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} video id(s) are not in the cache index: {shown}")
    members: dict[str, list[str]] = defaultdict(list)
    for vid in video_ids:
        members[str(videos[vid]["subject"])].append(vid)
    subjects = [
        Subject(name, tuple(ids), float(np.mean([float(videos[v]["age"]) for v in ids])))
        for name, ids in members.items()
    ]
    return sorted(subjects, key=lambda s: (s.mean_age, s.name))


def heldout_split(index: Mapping[str, Any], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split all indexed videos into (dev ids, held-out ids) by subject, stratified by age.

    Subjects with a video marked ``test``/``heldout`` are held out and those marked ``train``
    stay in dev. When any video is marked held-out, the marked subjects are the whole held-out
    set; otherwise about ``fraction`` of the subjects are drawn, one per age stratum.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    all_ids = sorted(index.get("videos", {}))
    subjects = group_subjects(all_ids, index)
    if len(subjects) < 2:
        raise ValueError(
            f"a held-out split needs at least 2 subjects, got {len(subjects)} ({len(all_ids)} videos)"
        )
    forced = {s.name: _explicit_side(s, index) for s in subjects}
    if any(side == "heldout" for side in forced.values()):
        heldout_names = {name for name, side in forced.items() if side == "heldout"}
    else:
        free = [s for s in subjects if forced[s.name] is None]
        target = min(max(1, round(fraction * len(subjects))), len(subjects) - 1)
        heldout_names = {s.name for s in _one_per_stratum(free, min(target, len(free)), seed)}
    dev = [vid for s in subjects if s.name not in heldout_names for vid in s.video_ids]
    heldout = [vid for s in subjects if s.name in heldout_names for vid in s.video_ids]
    if not dev:
        raise ValueError(f"every one of the {len(subjects)} subjects is marked held-out; nothing left to train")
    if not heldout:
        raise ValueError(f"all {len(subjects)} subjects are marked train; no subject is left to hold out")
    return sorted(dev), sorted(heldout)


def dev_heldout_split(
    index: Mapping[str, Any], fraction: float, seed: int, folds: int, heldout_fold: int = -1
) -> tuple[list[str], list[str]]:
    """(dev ids, held-out ids): ``heldout_split`` for ``heldout_fold`` -1, else fold ``heldout_fold`` of
    an age-stratified ``folds``-fold split over every subject (each subject is held out by one fold)."""
    if heldout_fold < 0:
        return heldout_split(index, fraction, seed)
    if heldout_fold >= folds:
        raise ValueError(f"held-out fold {heldout_fold} is outside [0, {folds})")
    dev, heldout = kfold_splits(sorted(index.get("videos", {})), index, folds, seed)[heldout_fold]
    return sorted(dev), sorted(heldout)


def kfold_splits(
    video_ids: Iterable[str], index: Mapping[str, Any], k: int, seed: int
) -> list[tuple[list[str], list[str]]]:
    """``k`` (train ids, val ids) folds over ``video_ids``: by subject, age-stratified, seeded.

    Subjects sorted by mean age are cut into consecutive blocks of ``k``; each block deals one
    subject to every fold in a seeded random order, so fold age distributions match.
    """
    video_ids = list(video_ids)
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs k >= 2, got {k}")
    if not video_ids:
        raise ValueError(f"cannot make {k} folds from an empty dataset (0 videos)")
    subjects = group_subjects(video_ids, index)
    if len(subjects) < k:
        raise ValueError(
            f"{k} folds need at least {k} subjects, but the data has only {len(subjects)} "
            f"subject(s) in {len(video_ids)} video(s); lower data.folds or add subjects"
        )
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for start in range(0, len(subjects), k):
        block = subjects[start:start + k]
        for subject, fold in zip(block, rng.permutation(k)):
            fold_of[subject.name] = int(fold)
    subject_of = {vid: s.name for s in subjects for vid in s.video_ids}
    folds = []
    for fold in range(k):
        val = [vid for vid in video_ids if fold_of[subject_of[vid]] == fold]
        train = [vid for vid in video_ids if fold_of[subject_of[vid]] != fold]
        folds.append((train, val))
    return folds


def subsample_subjects(video_ids: Iterable[str], index: Mapping[str, Any], count: int, seed: int) -> list[str]:
    """The videos of ``count`` of the subjects of ``video_ids``, one drawn from each of ``count`` age strata
    (all of them when there are no more): a smaller training set with the same age spread."""
    subjects = group_subjects(list(video_ids), index)
    if count <= 0 or count >= len(subjects):
        return sorted(vid for s in subjects for vid in s.video_ids)
    return sorted(vid for s in _one_per_stratum(subjects, count, seed) for vid in s.video_ids)


def calibration_split(
    val_ids: Iterable[str], index: Mapping[str, Any], share: float, seed: int
) -> tuple[list[str], list[str]]:
    """(selection ids, calibration ids): ``share`` of the validation subjects, one per age stratum, set
    aside to calibrate the interval; none when ``share`` rounds to no subject or the fold has fewer than
    ``MIN_SPLIT_SUBJECTS`` (then the whole fold both selects the checkpoint and calibrates)."""
    val_ids = sorted(val_ids)
    subjects = len(group_subjects(val_ids, index))
    count = min(round(share * subjects), subjects - 1)
    if subjects < MIN_SPLIT_SUBJECTS or count < 1:
        return val_ids, []
    held = set(subsample_subjects(val_ids, index, count, seed))
    return [v for v in val_ids if v not in held], [v for v in val_ids if v in held]


def _explicit_side(subject: Subject, index: Mapping[str, Any]) -> str | None:
    """'heldout', 'dev' or None from the subject's ``split`` fields; conflicting marks are an error."""
    labels = {str(index["videos"][vid].get("split", "") or "").strip().lower() for vid in subject.video_ids}
    sides = {"heldout" for lab in labels if lab in HELDOUT_LABELS} | {"dev" for lab in labels if lab in DEV_LABELS}
    if len(sides) > 1:
        raise ValueError(
            f"subject {subject.name!r} has videos marked both train and test ({sorted(labels)}); "
            "a subject must be on one side of the held-out split"
        )
    return sides.pop() if sides else None


def _one_per_stratum(subjects: list[Subject], count: int, seed: int) -> list[Subject]:
    """Pick ``count`` subjects from age-sorted ``subjects``: one at random from each of ``count`` strata."""
    if count <= 0:
        return []
    rng = np.random.default_rng(seed)
    strata = np.array_split(np.arange(len(subjects)), count)
    return [subjects[int(rng.choice(stratum))] for stratum in strata]
