"""SavedModel export: TF Serving layout and versions, signatures, fresh-process parity, input checks."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from age_estimation.export.savedmodel import export_savedmodel, next_version
from age_estimation.inference.spec import read_spec
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import dynamics_export
from tests.tiny_run import CLIP, CROP, load_tiny_run, make_tiny_run, random_clips, random_landmarks


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("savedmodel")
    run = make_tiny_run(root)
    cfg, model = load_tiny_run(run)
    return model, cfg, export_savedmodel(model, cfg)


@pytest.fixture(scope="module")
def dynamics(tmp_path_factory):
    """(model, SavedModel version folder) of the shared tiny model that reads the landmark stream."""
    shared = dynamics_export(tmp_path_factory)
    return shared.model, shared.savedmodel


def test_versioned_layout_never_overwrites(exported):
    model, cfg, v1 = exported
    marker = (v1 / "saved_model.pb").read_bytes()
    (v1.parent / "notes").mkdir()  # TF Serving ignores non-numeric folders; so does versioning
    v2 = export_savedmodel(model, cfg)
    assert (v1.parent.name, v1.name, v2.name) == ("siam", "1", "2")
    assert (v1 / "saved_model.pb").read_bytes() == marker
    assert sorted(p.name for p in v1.parent.iterdir()) == ["1", "2", "notes"]  # no temporary folders left
    assert next_version(v1.parent) == 3


def test_spec_asset_describes_inputs(exported):
    _, _, path = exported
    spec = read_spec(path)
    assert spec.crop_size == CROP and spec.window == CLIP and spec.test_time_flip is True
    assert spec.clip_length is None and spec.batch_size is None  # any T, any batch
    assert spec.landmark_points == 0 and set(spec.inputs) == {"frames", "mask"}  # pixels only
    assert spec.inputs["frames"] == {
        "dtype": "uint8", "shape": [None, None, CROP, CROP, 3], "layout": "RGB face crops aligned by the template below"
    }
    assert spec.outputs["spatial_attention"]["shape"] == [None, None, CROP // 2, CROP // 2]
    assert spec.align.crop_size == CROP and len(spec.template_eyes) == 2 and "127.5" in spec.normalization
    raw = json.loads((path / "assets.extra" / "input_spec.json").read_text())
    assert list(raw) == [
        "format", "model_name", "variant", "crop_size", "clip_length", "landmark_points", "window", "window_span",
        "test_time_flip",
        "min_face_fraction", "quality", "face_ranges", "batch_size", "inputs", "normalization", "outputs", "align",
        "template_eyes", "interval", "model_card",
    ]
    assert raw["interval"] is None and raw["model_card"] is None  # no interval.json / model_card.json given
    assert raw["face_ranges"] is None and raw["quality"]["min_eye_distance"] > 0  # no face_ranges.json given


def signature_blocks(path):
    """``saved_model_cli show --all`` of a SavedModel, one text block per signature name."""
    cli = [str(Path(sys.executable).parent / "saved_model_cli"), "show", "--all", "--dir", str(path)]
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    return {block.split("']")[0]: block for block in text.split("signature_def['")[1:]}


@pytest.mark.slow
def test_saved_model_cli_shows_serving_signatures(exported):
    _, _, path = exported
    blocks = signature_blocks(path)
    assert {"serving_default", "padded", "jpeg"} <= set(blocks)
    for name in ("serving_default", "padded", "jpeg"):
        assert "Method name is: tensorflow/serving/predict" in blocks[name]
        for output in ("age", "temporal_attention", "spatial_attention"):
            assert f"outputs['{output}']" in blocks[name]
        assert "landmark" not in blocks[name]  # a pixel-only model takes no landmark stream
    assert "inputs['frames']" in blocks["serving_default"] and "DT_UINT8" in blocks["serving_default"]
    assert "inputs['lengths']" in blocks["padded"] and "DT_INT32" in blocks["padded"]
    assert "inputs['jpeg_frames']" in blocks["jpeg"] and "DT_STRING" in blocks["jpeg"]


@pytest.mark.slow
def test_every_signature_of_a_dynamics_model_takes_the_landmark_stream(dynamics):
    _, path = dynamics
    blocks = signature_blocks(path)
    for name in ("serving_default", "padded", "jpeg"):
        block = blocks[name]
        landmarks = block[block.index("inputs['landmarks']"):].split("name:")[0]
        assert "DT_FLOAT" in landmarks and f"(-1, -1, {LANDMARK_COUNT}, 2)" in landmarks, name
        assert "inputs['landmark_mask']" in block and "(-1, -1)" in block, name
    spec = read_spec(path)
    assert spec.landmark_points == LANDMARK_COUNT
    assert spec.inputs["landmarks"]["shape"] == [None, None, LANDMARK_COUNT, 2]
    assert spec.inputs["landmark_mask"]["shape"] == [None, None]


def stream_inputs(count, kind):
    """Frames, lengths and JPEG frames (empty strings past each length) for ``count`` clips, plus the
    landmark stream for the ``landmarks`` kind; and the (B, T) mask the lengths mean."""
    frames = random_clips(count, seed=5)
    lengths = np.array([CLIP, 5, 3], np.int32)[:count]
    mask = (np.arange(CLIP)[None] < lengths[:, None]).astype(np.float32)
    jpegs = np.array(
        [[tf.io.encode_jpeg(f).numpy() if m else b"" for f, m in zip(clip, row)] for clip, row in zip(frames, mask)],
        dtype=object,
    )
    data = {"frames": frames, "lengths": lengths, "jpegs": jpegs}
    if kind == "landmarks":
        data["landmarks"], data["landmark_mask"] = random_landmarks(count, seed=6)
    return data, mask


# Loads each SavedModel of argv[1] (JSON: kind -> [SavedModel folder, inputs .npz]) and prints every signature's
# ages, as JSON.
FRESH_PROCESS = textwrap.dedent("""
    import json, sys, numpy as np, tensorflow as tf
    out = {}
    for kind, (path, inputs) in json.loads(sys.argv[1]).items():
        loaded = tf.saved_model.load(path)
        data = np.load(inputs, allow_pickle=True)
        stream = {k: tf.constant(data[k]) for k in ("landmarks", "landmark_mask") if k in data}
        sig = loaded.signatures
        frames = tf.constant(data["frames"])
        got = {
            "default": sig["serving_default"](frames=frames, **stream)["age"].numpy().tolist(),
            "padded": sig["padded"](frames=frames, lengths=tf.constant(data["lengths"]), **stream),
            "jpeg": sig["jpeg"](jpeg_frames=tf.constant(data["jpegs"].tolist()), **stream)["age"].numpy().tolist(),
        }
        got["names"] = sorted(got["padded"])
        got["padded"] = got["padded"]["age"].numpy().tolist()
        out[kind] = got
    out["package_imported"] = any(m.startswith("age_estimation") for m in sys.modules)
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_fresh_process_without_package_matches_keras(exported, dynamics, tmp_path):
    """Both models (pixels only, and with the landmark stream) in one fresh process: one TensorFlow start-up."""
    models = {"pixels": (exported[0], exported[2]), "landmarks": dynamics}
    inputs = {kind: stream_inputs(3, kind) for kind in models}
    for kind, (data, _) in inputs.items():
        np.savez(tmp_path / f"{kind}.npz", **data)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS,
         json.dumps({kind: [str(path), str(tmp_path / f"{kind}.npz")] for kind, (_, path) in models.items()})],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["package_imported"] is False
    for kind, (model, _) in models.items():
        data, mask = inputs[kind]
        got = answers[kind]
        assert got["names"] == ["age", "spatial_attention", "temporal_attention"]
        decoded = np.stack(
            [
                np.stack(
                    [tf.io.decode_jpeg(j).numpy() if j else np.zeros((CROP, CROP, 3), np.uint8) for j in row]
                )
                for row in data["jpegs"]
            ]
        )

        def keras(frames, frame_mask, model=model, data=data, kind=kind):
            inputs = {"frames": frames, "mask": frame_mask}
            if kind == "landmarks":  # a padding frame has no landmarks
                inputs.update(landmarks=data["landmarks"], landmark_mask=data["landmark_mask"] * frame_mask)
            return np.asarray(model(inputs)["age"])[:, 0]

        keras_all = keras(data["frames"], np.ones((3, CLIP), np.float32))
        keras_padded, keras_jpeg = keras(data["frames"], mask), keras(decoded, mask)
        diffs = {name: float(np.max(np.abs(np.array(got[name]) - expected)))
                 for name, expected in (("default", keras_all), ("padded", keras_padded), ("jpeg", keras_jpeg))}
        print(kind, "SavedModel parity", diffs)
        assert max(diffs.values()) <= 1e-4, kind
        assert not np.allclose(keras_all, keras_padded), kind  # the lengths really mask frames
        if kind == "landmarks":  # the model really reads the landmarks
            moved = dict(data, landmarks=data["landmarks"] + 0.2)
            assert not np.allclose(keras_all, np.asarray(model({"frames": moved["frames"], "mask": np.ones((3, CLIP),
                                   np.float32), "landmarks": moved["landmarks"],
                                   "landmark_mask": data["landmark_mask"]})["age"])[:, 0], atol=1e-3)


def test_signatures_reject_wrong_dtype_and_shape(exported):
    _, _, path = exported
    sig = tf.saved_model.load(str(path)).signatures
    frames = random_clips(1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        sig["serving_default"](frames=tf.constant(frames.astype(np.float32)))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        sig["serving_default"](frames=tf.constant(np.zeros((1, CLIP, CROP + 4, CROP + 4, 3), np.uint8)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths must not exceed"):
        sig["padded"](frames=tf.constant(frames), lengths=tf.constant([CLIP + 1], tf.int32))
    wrong_size = tf.io.encode_jpeg(np.zeros((CROP * 2, CROP * 2, 3), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"aligned {CROP}x{CROP} crop"):
        sig["jpeg"](jpeg_frames=tf.reshape(wrong_size, (1, 1)))


def test_signatures_reject_a_landmark_stream_of_the_wrong_shape(dynamics):
    _, path = dynamics
    sig = tf.saved_model.load(str(path)).signatures
    frames = tf.constant(random_clips(1))
    landmarks, found = random_landmarks(1)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError, TypeError)):
        sig["serving_default"](frames=frames, landmarks=tf.constant(landmarks[:, :, :-1]),
                               landmark_mask=tf.constant(found))
    with pytest.raises(tf.errors.InvalidArgumentError, match="with the B and T of the frames"):
        sig["padded"](frames=frames, lengths=tf.constant([CLIP], tf.int32), landmarks=tf.constant(landmarks[:, :-1]),
                      landmark_mask=tf.constant(found[:, :-1]))
    with pytest.raises(TypeError):
        sig["serving_default"](frames=frames)  # the stream is required
