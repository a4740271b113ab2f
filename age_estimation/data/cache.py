"""The prepared-clip cache: the contract between ``prepare`` (writer) and the tf.data pipeline (reader).

Layout of a cache directory::

    DIR/index.json                 written atomically after every finished video
    DIR/shards/<video_id>.tfrecord one video's tf.train.Example records, written atomically
    DIR/report.json                prepared and rejected videos of the last run
    DIR/.prepare.lock              held while a prepare runs (``cache_lock.py``), removed at its end

``index.json``::

    {"format": 1, "align": {...AlignConfig...}, "align_key": "<sha256 of align>",
     "videos": {video_id: {"source": str (absolute), "source_sha256": str, "shard": "shards/<id>.tfrecord",
                           "frames": int, "faces": int, "landmark_frames": int, "age": float, "subject": str,
                           "label": str, "split": str}}}

A shard holds a header record, then chunk records of up to ``CHUNK_FRAMES`` consecutive frames, so
``prepare`` writes a long video chunk by chunk. Header features: ``video_id``, ``subject``, ``label``
(bytes); ``age`` (float); ``height``, ``width``, ``landmark_points`` (int64; K, 0 when the cache has no
landmark stream). Chunk features: ``frames`` (bytes: raw uint8 RGB, n*H*W*3, row-major);
``face_found`` and ``source_index`` (int64 lists of length n: whether the face was detected in that
frame or its transform interpolated, and the frame's index in the source video); ``landmarks``
(bytes: raw float32 n*K*2, the landmark stream of ``video/landmarks.py``) and ``landmark_found``
(int64 list of length n: whether the face mesh found the face; the landmarks are zeros where not).
``parse_clip`` joins them into one clip with ``num_frames`` = the sum of the chunks' n.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

import numpy as np

from age_estimation.config import AlignConfig

FORMAT_VERSION = 3
# Frames per chunk record: a writer holds one chunk at a time (256 x 64x64x3 = 3 MB) and the reader
# joins a video's chunks into one tensor; larger chunks only cost the writer memory.
CHUNK_FRAMES = 256
# Records read as one shard: far above any video's chunk count (65,535 chunks = 16.7 M frames).
MAX_SHARD_RECORDS = 1 << 16
SHARD_READS = 8  # shard files read in parallel by ``read_shards``
INDEX_NAME = "index.json"
REPORT_NAME = "report.json"
SHARD_DIR = "shards"


def source_of(path: str | Path) -> str:
    """The index's ``source`` for a video: its absolute path, so readers in any working directory find it."""
    return str(Path(path).resolve())


def source_under(entry: dict[str, Any], root: str | Path) -> str:
    """An index entry's source video as a path relative to ``root``, both with symlinks resolved."""
    return os.path.relpath(Path(entry["source"]).resolve(), Path(root).resolve())


def video_id_for(path: str | Path) -> str:
    """A stable, file-name-safe id for a source video: its stem plus a hash of its absolute path."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:60]
    digest = hashlib.sha1(source_of(path).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def align_key(align: AlignConfig) -> str:
    """Checksum of the alignment settings; a change means every clip must be prepared again."""
    return hashlib.sha256(json.dumps(asdict(align), sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def empty_index(align: AlignConfig) -> dict[str, Any]:
    """A fresh index for ``align`` settings."""
    return {"format": FORMAT_VERSION, "align": asdict(align), "align_key": align_key(align), "videos": {}}


def read_index(cache_dir: str | Path) -> dict[str, Any]:
    """Load ``index.json`` of a cache; a clear error when the cache is missing or unreadable."""
    path = Path(cache_dir) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prepared cache here; run `age-estimation prepare` first")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt cache index ({err}); delete the cache folder and prepare again") from err
    if index.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: cache format {index.get('format')} is not {FORMAT_VERSION} (made by another version); "
            "run `age-estimation prepare` again"
        )
    return index


def encode_clip(
    video_id: str,
    frames: np.ndarray,
    face_found: np.ndarray,
    source_index: np.ndarray,
    age: float,
    subject: str,
    label: str = "",
    landmarks: np.ndarray | None = None,
    landmark_found: np.ndarray | None = None,
) -> list[bytes]:
    """Serialize one aligned clip (N, H, W, 3) uint8 as a shard's records: a header, then its chunks.

    ``landmarks`` (N, K, 2) and ``landmark_found`` (N,) are the landmark stream; None stores none (K = 0).
    """
    frames = _check_frames(video_id, frames)
    n, h, w, _ = frames.shape
    landmarks = np.zeros((n, 0, 2), np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
    landmark_found = np.zeros(n, bool) if landmark_found is None else np.asarray(landmark_found)
    records = [encode_header(video_id, h, w, age, subject, label, landmarks.shape[1])]
    for start in range(0, n, CHUNK_FRAMES):
        end = start + CHUNK_FRAMES
        records.append(encode_chunk(frames[start:end], face_found[start:end], source_index[start:end],
                                    landmarks[start:end], landmark_found[start:end]))
    return records


def encode_header(
    video_id: str, height: int, width: int, age: float, subject: str, label: str = "", landmark_points: int = 0
) -> bytes:
    """The first record of a shard: the video's metadata (its frame count is the sum of its chunks')."""
    tf = _tf()
    feature = {
        "video_id": _bytes_feature(tf, video_id.encode()),
        "subject": _bytes_feature(tf, str(subject).encode()),
        "label": _bytes_feature(tf, str(label).encode()),
        "age": tf.train.Feature(float_list=tf.train.FloatList(value=[float(age)])),
        "height": _ints_feature(tf, [height]),
        "width": _ints_feature(tf, [width]),
        "landmark_points": _ints_feature(tf, [landmark_points]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def encode_chunk(
    frames: np.ndarray,
    face_found: np.ndarray,
    source_index: np.ndarray,
    landmarks: np.ndarray,
    landmark_found: np.ndarray,
) -> bytes:
    """A chunk record: up to ``CHUNK_FRAMES`` consecutive frames (raw bytes) with their per-frame fields."""
    tf = _tf()
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    landmarks = np.ascontiguousarray(landmarks, dtype=np.float32)
    counts = {"face_found": len(face_found), "source_index": len(source_index), "landmarks": len(landmarks),
              "landmark_found": len(landmark_found)}
    if any(count != len(frames) for count in counts.values()):
        raise ValueError(f"chunk of {len(frames)} frames has per-frame fields of lengths {counts}")
    feature = {
        "frames": _bytes_feature(tf, frames.tobytes()),
        "face_found": _ints_feature(tf, face_found),
        "source_index": _ints_feature(tf, source_index),
        "landmarks": _bytes_feature(tf, landmarks.tobytes()),
        "landmark_found": _ints_feature(tf, landmark_found),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ShardWriter:
    """Writes one video's shard record by record to a temporary file, renamed onto ``path`` by ``commit``.

    Closing without ``commit`` (an error, or a rejected video) deletes the temporary file, so a shard
    is either complete or absent.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._writer = _tf().io.TFRecordWriter(str(self._tmp))
        self._done = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, record: bytes) -> None:
        self._writer.write(record)

    def commit(self) -> None:
        """Flush, fsync and rename the temporary file onto the shard's path."""
        self._writer.close()
        with open(self._tmp, "rb") as handle:
            os.fsync(handle.fileno())
        self._tmp.replace(self.path)
        self._done = True

    def close(self) -> None:
        """Close the writer; without ``commit`` the temporary file is deleted, even when closing fails."""
        try:
            self._writer.close()
        finally:
            if not self._done:
                self._tmp.unlink(missing_ok=True)


def write_clip_shard(path: str | Path, records: Iterable[bytes]) -> None:
    """Atomically write a shard's records (``encode_clip``'s) as one TFRecord file."""
    with ShardWriter(path) as writer:
        for record in records:
            writer.write(record)
        writer.commit()


def read_shards(paths: list[str]) -> Any:
    """A tf.data dataset with one element per shard file: its records (1-D string), header first."""
    tf = _tf()
    return tf.data.Dataset.from_tensor_slices(paths).interleave(
        lambda path: tf.data.TFRecordDataset(path).batch(MAX_SHARD_RECORDS),
        cycle_length=SHARD_READS,
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def parse_clip(records: Any) -> dict[str, Any]:
    """Parse one shard's records into tensors; ``frames`` is (N, H, W, 3) uint8. Usable in tf.data."""
    tf = _tf()
    header_spec = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "subject": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.string),
        "age": tf.io.FixedLenFeature([], tf.float32),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "landmark_points": tf.io.FixedLenFeature([], tf.int64),
    }
    chunk_spec = {
        "frames": tf.io.FixedLenFeature([], tf.string),
        "face_found": tf.io.VarLenFeature(tf.int64),
        "source_index": tf.io.VarLenFeature(tf.int64),
        "landmarks": tf.io.FixedLenFeature([], tf.string),
        "landmark_found": tf.io.VarLenFeature(tf.int64),
    }
    ex = tf.io.parse_single_example(records[0], header_spec)
    chunks = tf.io.parse_example(records[1:], chunk_spec)
    pixels = tf.io.decode_raw(tf.strings.reduce_join(chunks["frames"]), tf.uint8)
    shape = tf.stack([tf.constant(-1, tf.int64), ex["height"], ex["width"], tf.constant(3, tf.int64)])
    ex["frames"] = tf.reshape(pixels, shape)
    ex["num_frames"] = tf.shape(ex["frames"], out_type=tf.int64)[0]
    ex["face_found"] = chunks["face_found"].values
    ex["source_index"] = chunks["source_index"].values
    points = tf.io.decode_raw(tf.strings.reduce_join(chunks["landmarks"]), tf.float32)
    ex["landmarks"] = tf.reshape(points, tf.stack([ex["num_frames"], ex["landmark_points"], 2]))
    ex["landmark_found"] = chunks["landmark_found"].values
    return ex


def read_clip(path: str | Path) -> dict[str, Any]:
    """One shard file parsed eagerly into numpy arrays (tests and tools)."""
    (records,) = list(read_shards([str(path)]))
    return {key: value.numpy() for key, value in parse_clip(records).items()}


def _check_frames(video_id: str, frames: np.ndarray) -> np.ndarray:
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{video_id}: frames must be (N, H, W, 3), got {frames.shape}")
    return frames


def _tf() -> Any:
    import tensorflow as tf  # lazy: the index readers and the prepare workers run without TensorFlow

    return tf


def _bytes_feature(tf: Any, value: bytes) -> Any:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints_feature(tf: Any, values: Any) -> Any:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in np.ravel(values)]))
