"""The cache contract: index round trip, clear errors for a missing, corrupt or other-format index, clip codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from age_estimation.atomic_files import write_json_atomic
from age_estimation.config import AlignConfig
from age_estimation.data import cache
from age_estimation.data.cache import (
    INDEX_NAME,
    align_key,
    empty_index,
    encode_clip,
    parse_clip,
    read_clip,
    read_index,
    read_shards,
    video_id_for,
    write_clip_shard,
)


def test_index_round_trip_and_align_key(tmp_path: Path) -> None:
    index = empty_index(AlignConfig())
    index["videos"]["v-1"] = {"source": "a.mp4", "shard": "shards/v-1.tfrecord", "age": 30.0, "subject": "s"}
    write_json_atomic(tmp_path / INDEX_NAME, index)
    assert read_index(tmp_path) == index
    assert index["align_key"] == align_key(AlignConfig()) != align_key(AlignConfig(crop_size=48))
    assert align_key(AlignConfig()) != align_key(AlignConfig(accept_truncated=True))  # it decides what is cached


def test_index_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no prepared cache here; run `age-estimation prepare`"):
        read_index(tmp_path)
    (tmp_path / INDEX_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path / INDEX_NAME}: corrupt cache index"):
        read_index(tmp_path)
    (tmp_path / INDEX_NAME).write_text(json.dumps({"format": 99, "videos": {}}))
    with pytest.raises(ValueError, match=f"cache format 99 is not {cache.FORMAT_VERSION} .*; run `age-estimation prepare` again"):
        read_index(tmp_path)


def test_video_ids_are_stable_safe_and_distinct(tmp_path: Path) -> None:
    a, b = tmp_path / "x" / "my clip (1).mp4", tmp_path / "y" / "my clip (1).mp4"
    assert video_id_for(a) == video_id_for(a)
    assert video_id_for(a) != video_id_for(b)
    assert video_id_for(a).startswith("my_clip__1_-")


def test_encode_write_parse_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    serialized = encode_clip("vid", frames, np.array([1, 0, 1, 1, 0]), np.arange(0, 10, 2), 41.5, "s9", "posed")
    write_clip_shard(tmp_path / "shards" / "vid.tfrecord", serialized)
    (records,) = list(read_shards([str(tmp_path / "shards" / "vid.tfrecord")]))
    clip = parse_clip(records)
    np.testing.assert_array_equal(clip["frames"].numpy(), frames)
    assert clip["video_id"].numpy() == b"vid" and clip["subject"].numpy() == b"s9" and clip["label"].numpy() == b"posed"
    assert clip["age"].numpy() == pytest.approx(41.5) and int(clip["num_frames"]) == 5
    assert clip["face_found"].numpy().tolist() == [1, 0, 1, 1, 0]
    assert clip["source_index"].numpy().tolist() == [0, 2, 4, 6, 8]
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["vid.tfrecord"]  # no temporary file left


def test_encode_rejects_frames_that_are_not_rgb_clips() -> None:
    with pytest.raises(ValueError, match="vid: frames must be \\(N, H, W, 3\\)"):
        encode_clip("vid", np.zeros((4, 4, 3), np.uint8), np.ones(4), np.arange(4), 1.0, "s")


def test_a_long_clip_is_written_in_chunks_and_read_back_whole(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "CHUNK_FRAMES", 4)
    frames = np.random.default_rng(1).integers(0, 256, (10, 3, 2, 3), dtype=np.uint8)
    records = cache.encode_clip("long", frames, np.arange(10) % 2, 3 * np.arange(10), 7.0, "s")
    assert len(records) == 1 + 3  # header + chunks of 4, 4, 2 frames
    cache.write_clip_shard(tmp_path / "long.tfrecord", records)
    assert len(list(tf.data.TFRecordDataset(str(tmp_path / "long.tfrecord")))) == 4
    clip = read_clip(tmp_path / "long.tfrecord")
    np.testing.assert_array_equal(clip["frames"], frames)
    assert clip["num_frames"] == 10 and clip["face_found"].tolist() == [0, 1] * 5
    assert clip["source_index"].tolist() == list(range(0, 30, 3))


def test_an_uncommitted_shard_leaves_no_file(tmp_path: Path) -> None:
    with cache.ShardWriter(tmp_path / "x.tfrecord") as writer:
        writer.write(b"header")
    assert list(tmp_path.iterdir()) == []


def test_landmark_stream_round_trips_through_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "CHUNK_FRAMES", 3)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    points = rng.normal(size=(7, 5, 2)).astype(np.float32)
    found = np.array([1, 1, 0, 1, 0, 1, 1])
    records = cache.encode_clip("lm", frames, np.ones(7), np.arange(7), 30.0, "s", landmarks=points,
                                landmark_found=found)
    cache.write_clip_shard(tmp_path / "lm.tfrecord", records)
    clip = read_clip(tmp_path / "lm.tfrecord")
    np.testing.assert_array_equal(clip["landmarks"], points)
    assert clip["landmark_found"].tolist() == found.tolist() and clip["landmark_points"] == 5
    without = read_clip_of(tmp_path, cache.encode_clip("px", frames, np.ones(7), np.arange(7), 30.0, "s"))
    assert without["landmarks"].shape == (7, 0, 2) and without["landmark_points"] == 0


def read_clip_of(folder: Path, records: list[bytes]) -> dict:
    cache.write_clip_shard(folder / "clip.tfrecord", records)
    return read_clip(folder / "clip.tfrecord")
