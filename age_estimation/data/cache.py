"""The prepared-clip cache: the contract between ``prepare`` (writer) and the tf.data pipeline (reader).

Layout of a cache directory::

    DIR/index.json                 written atomically after every finished video
    DIR/shards/<video_id>.tfrecord one tf.train.Example per video, written atomically
    DIR/report.json                prepared and rejected videos of the last run

``index.json``::

    {"format": 1, "align": {...AlignConfig...}, "align_key": "<sha256 of align>",
     "videos": {video_id: {"source": str, "source_sha256": str, "shard": "shards/<id>.tfrecord",
                           "frames": int, "faces": int, "age": float, "subject": str,
                           "label": str, "split": str}}}

Example features: ``video_id``, ``subject``, ``label`` (bytes); ``age`` (float);
``num_frames``, ``height``, ``width`` (int64); ``frames`` (bytes: raw uint8 RGB, N*H*W*3,
row-major); ``face_found`` and ``source_index`` (int64 lists of length N: whether the face was
detected in that frame or its transform interpolated, and the frame's index in the source video).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.config import AlignConfig

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
REPORT_NAME = "report.json"
SHARD_DIR = "shards"


def video_id_for(path: str | Path) -> str:
    """A stable, file-name-safe id for a source video: its stem plus a hash of its absolute path."""
    path = Path(path)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:60]
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
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
        raise ValueError(f"{path}: cache format {index.get('format')} is not {FORMAT_VERSION}; prepare again")
    return index


def encode_clip(
    video_id: str,
    frames: np.ndarray,
    face_found: np.ndarray,
    source_index: np.ndarray,
    age: float,
    subject: str,
    label: str = "",
) -> bytes:
    """Serialize one aligned clip (N, H, W, 3) uint8 as a ``tf.train.Example``."""
    import tensorflow as tf  # lazy: the index readers and the prepare workers run without TensorFlow

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{video_id}: frames must be (N, H, W, 3), got {frames.shape}")
    n, h, w, _ = frames.shape

    def _bytes(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def _ints(v: Any) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in np.ravel(v)]))

    feature = {
        "video_id": _bytes(video_id.encode()),
        "subject": _bytes(str(subject).encode()),
        "label": _bytes(str(label).encode()),
        "age": tf.train.Feature(float_list=tf.train.FloatList(value=[float(age)])),
        "num_frames": _ints([n]),
        "height": _ints([h]),
        "width": _ints([w]),
        "frames": _bytes(frames.tobytes()),
        "face_found": _ints(face_found),
        "source_index": _ints(source_index),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_clip_shard(path: str | Path, serialized: bytes) -> None:
    """Atomically write one serialized Example as a one-record TFRecord file."""
    import tensorflow as tf  # lazy: see encode_clip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        writer.write(serialized)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)


def parse_clip(serialized: Any) -> dict[str, Any]:
    """Parse one serialized clip into tensors; ``frames`` is (N, H, W, 3) uint8. Usable in tf.data."""
    import tensorflow as tf  # lazy: see encode_clip

    spec = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "subject": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.string),
        "age": tf.io.FixedLenFeature([], tf.float32),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "frames": tf.io.FixedLenFeature([], tf.string),
        "face_found": tf.io.VarLenFeature(tf.int64),
        "source_index": tf.io.VarLenFeature(tf.int64),
    }
    ex = tf.io.parse_single_example(serialized, spec)
    shape = tf.stack([ex["num_frames"], ex["height"], ex["width"], tf.constant(3, tf.int64)])
    ex["frames"] = tf.reshape(tf.io.decode_raw(ex["frames"], tf.uint8), shape)
    ex["face_found"] = tf.sparse.to_dense(ex["face_found"])
    ex["source_index"] = tf.sparse.to_dense(ex["source_index"])
    return ex
