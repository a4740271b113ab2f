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
from tests.tiny_run import CLIP, CROP, load_tiny_run, make_tiny_run, random_clips


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("savedmodel")
    run = make_tiny_run(root)
    cfg, model = load_tiny_run(run)
    return model, cfg, export_savedmodel(model, cfg)


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
    assert spec.inputs["frames"] == {
        "dtype": "uint8", "shape": [None, None, CROP, CROP, 3], "layout": "RGB face crops aligned by the template below"
    }
    assert spec.outputs["spatial_attention"]["shape"] == [None, None, CROP // 2, CROP // 2]
    assert spec.align.crop_size == CROP and len(spec.template_eyes) == 2 and "127.5" in spec.normalization
    raw = json.loads((path / "assets.extra" / "input_spec.json").read_text())
    assert list(raw) == [
        "format", "model_name", "variant", "crop_size", "clip_length", "window", "window_span", "test_time_flip",
        "min_face_fraction", "batch_size", "inputs", "normalization", "outputs", "align", "template_eyes",
        "interval", "model_card",
    ]
    assert raw["interval"] is None and raw["model_card"] is None  # no interval.json / model_card.json given


@pytest.mark.slow
def test_saved_model_cli_shows_serving_signatures(exported):
    _, _, path = exported
    cli = [str(Path(sys.executable).parent / "saved_model_cli"), "show", "--all", "--dir", str(path)]
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    blocks = {block.split("']")[0]: block for block in text.split("signature_def['")[1:]}
    assert {"serving_default", "padded", "jpeg"} <= set(blocks)
    for name in ("serving_default", "padded", "jpeg"):
        assert "Method name is: tensorflow/serving/predict" in blocks[name]
        for output in ("age", "temporal_attention", "spatial_attention"):
            assert f"outputs['{output}']" in blocks[name]
    assert "inputs['frames']" in blocks["serving_default"] and "DT_UINT8" in blocks["serving_default"]
    assert "inputs['lengths']" in blocks["padded"] and "DT_INT32" in blocks["padded"]
    assert "inputs['jpeg_frames']" in blocks["jpeg"] and "DT_STRING" in blocks["jpeg"]


@pytest.mark.slow
def test_fresh_process_without_package_matches_keras(exported, tmp_path):
    model, _, path = exported
    frames = random_clips(3, seed=5)
    lengths = np.array([CLIP, 5, 3], np.int32)
    mask = (np.arange(CLIP)[None] < lengths[:, None]).astype(np.float32)
    jpegs = np.array(
        [
            [tf.io.encode_jpeg(f).numpy() if m else b"" for f, m in zip(clip, row)]
            for clip, row in zip(frames, mask)
        ],
        dtype=object,
    )
    decoded = np.stack(
        [
            np.stack(
                [tf.io.decode_jpeg(j).numpy() if j else np.zeros((CROP, CROP, 3), np.uint8) for j in row]
            )
            for row in jpegs
        ]
    )
    np.savez(tmp_path / "in.npz", frames=frames, lengths=lengths, jpegs=jpegs)
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        data = np.load({str(tmp_path / "in.npz")!r}, allow_pickle=True)
        sig = loaded.signatures
        out = {{
            "default": sig["serving_default"](frames=tf.constant(data["frames"]))["age"].numpy().tolist(),
            "padded": sig["padded"](frames=tf.constant(data["frames"]), lengths=tf.constant(data["lengths"])),
            "jpeg": sig["jpeg"](jpeg_frames=tf.constant(data["jpegs"].tolist()))["age"].numpy().tolist(),
        }}
        out["names"] = sorted(out["padded"])
        out["padded"] = out["padded"]["age"].numpy().tolist()
        out["package_imported"] = any(m.startswith("age_estimation") for m in sys.modules)
        print(json.dumps(out))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["package_imported"] is False
    assert got["names"] == ["age", "spatial_attention", "temporal_attention"]
    keras_all = np.asarray(model({"frames": frames, "mask": np.ones((3, CLIP), np.float32)})["age"])[:, 0]
    keras_padded = np.asarray(model({"frames": frames, "mask": mask})["age"])[:, 0]
    keras_jpeg = np.asarray(model({"frames": decoded, "mask": mask})["age"])[:, 0]
    assert np.max(np.abs(np.array(got["default"]) - keras_all)) <= 1e-4
    assert np.max(np.abs(np.array(got["padded"]) - keras_padded)) <= 1e-4
    assert np.max(np.abs(np.array(got["jpeg"]) - keras_jpeg)) <= 1e-4
    assert not np.allclose(keras_all, keras_padded)  # the lengths really mask frames


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
