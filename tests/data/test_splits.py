"""Held-out and k-fold splits: by subject, age-stratified, deterministic, honouring explicit splits."""

from __future__ import annotations

import numpy as np
import pytest

from age_estimation.data.splits import (
    calibration_split,
    group_subjects,
    heldout_split,
    kfold_splits,
    subsample_subjects,
)


def make_index(n_subjects: int = 40, seed: int = 0, splits: dict[str, str] | None = None) -> dict:
    """An index of ``n_subjects`` subjects aged 8-76 with 1-3 videos each (the cache index layout)."""
    rng = np.random.default_rng(seed)
    videos = {}
    for s in range(n_subjects):
        age = float(rng.uniform(8, 76))
        for v in range(int(rng.integers(1, 4))):
            subject = f"s{s:03d}"
            videos[f"{subject}_v{v}"] = {
                "subject": subject,
                "age": age,
                "label": "spontaneous",
                "split": (splits or {}).get(subject, ""),
                "shard": f"shards/{subject}_v{v}.tfrecord",
            }
    return {"format": 1, "videos": videos}


def subjects_of(index: dict, ids: list[str]) -> set[str]:
    return {index["videos"][vid]["subject"] for vid in ids}


def mean_age(index: dict, ids: list[str]) -> float:
    return float(np.mean([index["videos"][vid]["age"] for vid in ids]))


def test_heldout_is_subject_independent_and_covers_everything():
    index = make_index()
    dev, heldout = heldout_split(index, 0.25, seed=0)
    assert not subjects_of(index, dev) & subjects_of(index, heldout)
    assert sorted(dev + heldout) == sorted(index["videos"])
    assert len(subjects_of(index, heldout)) == 10  # 25% of 40 subjects


def test_heldout_is_age_stratified():
    index = make_index(n_subjects=60)
    dev, heldout = heldout_split(index, 0.2, seed=3)
    ages = sorted(index["videos"][vid]["age"] for vid in heldout)
    # one subject per age stratum: held-out ages span the range, and the mean is close to the whole.
    assert ages[0] < 20 and ages[-1] > 64
    assert abs(mean_age(index, heldout) - mean_age(index, dev)) < 5.0


def test_heldout_is_deterministic_by_seed():
    index = make_index()
    assert heldout_split(index, 0.2, seed=1) == heldout_split(index, 0.2, seed=1)
    assert heldout_split(index, 0.2, seed=1) != heldout_split(index, 0.2, seed=2)


def test_explicit_test_split_is_the_whole_heldout_set():
    index = make_index(splits={"s001": "test", "s005": "heldout"})
    dev, heldout = heldout_split(index, 0.3, seed=0)
    assert subjects_of(index, heldout) == {"s001", "s005"}
    assert "s001" not in subjects_of(index, dev)


def test_explicit_train_subjects_are_never_held_out():
    forced = {f"s{i:03d}": "train" for i in range(0, 40, 2)}
    index = make_index(splits=forced)
    for seed in range(5):
        _, heldout = heldout_split(index, 0.25, seed=seed)
        assert heldout and not subjects_of(index, heldout) & set(forced)


def test_conflicting_marks_for_one_subject_are_an_error():
    index = make_index()
    ids = [vid for vid, row in index["videos"].items() if row["subject"] == "s002"]
    index["videos"]["s002_extra"] = dict(index["videos"][ids[0]], split="train")
    index["videos"][ids[0]]["split"] = "test"
    with pytest.raises(ValueError, match="s002"):
        heldout_split(index, 0.2, seed=0)


def test_heldout_needs_two_subjects():
    with pytest.raises(ValueError, match="at least 2 subjects, got 1"):
        heldout_split(make_index(n_subjects=1), 0.2, seed=0)


@pytest.mark.parametrize("k", [2, 5, 7])
def test_kfold_is_subject_independent_and_partitions_the_videos(k):
    index = make_index()
    ids = sorted(index["videos"])
    folds = kfold_splits(ids, index, k, seed=0)
    assert len(folds) == k
    for train, val in folds:
        assert not subjects_of(index, train) & subjects_of(index, val)
        assert sorted(train + val) == ids
    all_val = [vid for _, val in folds for vid in val]
    assert sorted(all_val) == ids  # every video is validated exactly once


def test_kfold_fold_mean_ages_are_close():
    index = make_index(n_subjects=50, seed=4)
    folds = kfold_splits(sorted(index["videos"]), index, 5, seed=0)
    subject_means = []
    for _, val in folds:
        subjects = group_subjects(val, index)
        subject_means.append(np.mean([s.mean_age for s in subjects]))
    assert max(subject_means) - min(subject_means) < 4.0


def test_kfold_is_deterministic_by_seed():
    index = make_index()
    ids = sorted(index["videos"])
    assert kfold_splits(ids, index, 4, seed=9) == kfold_splits(ids, index, 4, seed=9)
    assert kfold_splits(ids, index, 4, seed=9) != kfold_splits(ids, index, 4, seed=10)


def test_kfold_with_fewer_subjects_than_folds_names_the_numbers():
    index = make_index(n_subjects=3)
    with pytest.raises(ValueError, match=r"5 folds need at least 5 subjects.*only 3 subject"):
        kfold_splits(sorted(index["videos"]), index, 5, seed=0)


def test_kfold_on_an_empty_dataset_is_an_error():
    with pytest.raises(ValueError, match="empty dataset"):
        kfold_splits([], make_index(), 5, seed=0)


def test_unknown_video_ids_are_named():
    with pytest.raises(ValueError, match="not-a-video"):
        kfold_splits(["not-a-video"], make_index(), 2, seed=0)


def test_heldout_folds_hold_every_subject_out_once():
    from age_estimation.data.splits import dev_heldout_split

    index = make_index(30)
    held = [dev_heldout_split(index, 0.2, 0, folds=5, heldout_fold=i) for i in range(5)]
    seen = [subjects_of(index, heldout) for _, heldout in held]
    assert set().union(*seen) == subjects_of(index, list(index["videos"]))
    assert sum(len(s) for s in seen) == 30  # each subject in exactly one held-out fold
    for dev, heldout in held:
        assert not subjects_of(index, dev) & subjects_of(index, heldout)
        assert sorted(dev + heldout) == sorted(index["videos"])
    assert dev_heldout_split(index, 0.2, 0, folds=5) == heldout_split(index, 0.2, 0)  # -1: the stratified fraction
    with pytest.raises(ValueError, match="held-out fold 5 is outside"):
        dev_heldout_split(index, 0.2, 0, folds=5, heldout_fold=5)


def test_subsampled_subjects_keep_whole_subjects_and_the_age_spread():
    index = make_index(60)
    ids = sorted(index["videos"])
    kept = subsample_subjects(ids, index, 15, seed=0)
    kept_subjects = subjects_of(index, kept)
    assert len(kept_subjects) == 15
    assert kept == sorted(vid for vid in ids if index["videos"][vid]["subject"] in kept_subjects)  # every video
    ages = sorted({index["videos"][vid]["age"] for vid in kept})
    all_ages = np.sort([s.mean_age for s in group_subjects(ids, index)])
    quarters = np.array_split(all_ages, 4)
    assert all(sum(q[0] <= a <= q[-1] for a in ages) >= 3 for q in quarters)  # one per stratum: every quarter
    assert subsample_subjects(ids, index, 15, seed=0) == kept
    assert subsample_subjects(ids, index, 0, seed=0) == ids == subsample_subjects(ids, index, 99, seed=0)


def test_calibration_subjects_are_a_share_of_the_validation_subjects_kept_whole():
    index = make_index(40, seed=3)
    val = sorted(index["videos"])
    selection, calibration = calibration_split(val, index, 0.5, seed=0)
    assert sorted(selection + calibration) == val
    assert not subjects_of(index, selection) & subjects_of(index, calibration)
    assert len(subjects_of(index, calibration)) == 20
    assert abs(mean_age(index, selection) - mean_age(index, calibration)) < 5  # one per age stratum
    assert calibration_split(val, index, 0.5, seed=0) == (selection, calibration)


@pytest.mark.parametrize(("subjects", "share"), [(3, 0.5), (40, 0.0), (40, 0.01)])
def test_a_small_fold_or_share_keeps_every_validation_subject_for_selection(subjects, share):
    index = make_index(subjects)
    val = sorted(index["videos"])
    assert calibration_split(val, index, share, seed=0) == (val, [])
