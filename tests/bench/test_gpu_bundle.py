"""The GPU check's bundle: the files gpu.py reads, with their shapes, under the device's size limit."""

import json

import numpy as np
import pytest

from age_estimation.bench.gpu import load_clips, model_inputs, parity_figures, tiled_batch
from age_estimation.bench.gpu_bundle import BUNDLE_LIMIT_MIB, MIB, clip_count, write_bundle
from age_estimation.config import load_config
from age_estimation.models.siam.model import load_siam
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import make_dynamics_run, make_landmark_cache
from tests.tiny_run import CLIP, CROP, make_tiny_cache, make_tiny_run


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_bundle")
    make_tiny_cache(root / "cache", subjects=6)
    run = make_tiny_run(root)
    return root / "bundle", write_bundle(root / "cache", run, root / "bundle", clips=4, with_wheels=False), run


def test_bundle_holds_clips_model_config_and_expected_ages(bundle):
    out, manifest, run = bundle
    clips = load_clips(out / "clips.npz")
    assert clips["frames"].shape == (4, CLIP, CROP, CROP, 3) and clips["frames"].dtype == np.uint8
    assert clips["mask"].shape == (4, CLIP) and clips["ages"].shape == (4,)
    assert list(clips["video_ids"]) == sorted(clips["video_ids"])
    expected = np.load(out / "expected_ages.npy")
    assert expected.shape == (4,) and expected.dtype == np.float32
    # the bundled model and config are the run's: its ages on the clips are the recorded ones
    model = load_siam(out / "model.keras")
    again = model.predict({"frames": clips["frames"], "mask": clips["mask"]}, verbose=0)["age"][:, 0]
    assert parity_figures(again, expected, tolerance=1e-4)["equal"]
    assert load_config(out / "config.yaml").model == load_config(run / "config.yaml").model
    assert json.loads((out / "bundle.json").read_text()) == manifest
    assert manifest["clips"] == 4 and manifest["age_prior"] == [33.0, 12.0] and manifest["landmarks_shape"] is None
    assert "landmarks" not in clips  # a pixel-only model's clips carry no landmark stream


def test_bundle_of_a_dynamics_model_carries_the_landmark_stream(tmp_path):
    make_landmark_cache(tmp_path / "cache", subjects=3)
    run = make_dynamics_run(tmp_path)
    manifest = write_bundle(tmp_path / "cache", run, tmp_path / "bundle", clips=3, with_wheels=False)
    clips = load_clips(tmp_path / "bundle" / "clips.npz")
    assert clips["landmarks"].shape == (3, CLIP, LANDMARK_COUNT, 2) and clips["landmark_mask"].shape == (3, CLIP)
    assert manifest["landmarks_shape"] == [3, CLIP, LANDMARK_COUNT, 2]
    model = load_siam(tmp_path / "bundle" / "model.keras")
    again = model.predict(model_inputs(model, tiled_batch(clips, 3)[0]), verbose=0)["age"][:, 0]
    assert parity_figures(again, np.load(tmp_path / "bundle" / "expected_ages.npy"), tolerance=1e-4)["equal"]


def test_bundle_stays_under_the_device_limit(bundle):
    out, manifest, _ = bundle
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file()) / MIB
    assert size < BUNDLE_LIMIT_MIB and manifest["size_mib"] == pytest.approx(size, abs=0.01)


def test_clip_count_keeps_to_the_cache_and_the_byte_budget():
    clip = 16 * 64 * 64 * 3  # the default pipeline's clip: 192 KiB
    assert clip_count(128, 1000, clip, budget_mib=32) == 128
    assert clip_count(256, 1000, clip, budget_mib=32) == 170
    assert clip_count(256, 12, clip, budget_mib=32) == 12
    with pytest.raises(ValueError, match="no clip fits"):
        clip_count(8, 12, clip, budget_mib=0.1)
