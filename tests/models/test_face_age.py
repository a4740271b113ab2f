"""The face-age ResNet (``models/face_age``): layers, ONNX conversion with onnxruntime parity, the pretrained
loader's cache, the dlib-chip framing and ``predict --model face-age-v1`` on a real face clip.

The ONNX file is an asset (``age-estimation assets``, which ``make test`` runs first); a run without it fails
and says so rather than skipping. onnxruntime is a test-only dependency (the ``dev`` extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from age_estimation.models.face_age.convert import ConversionError, convert_onnx
from age_estimation.models.face_age.framing import dlib_chip_align, dlib_chip_eyes, dlib_chip_points
from age_estimation.models.face_age.resnet import (
    AGE_VALUES,
    CHANNEL_MEANS,
    ChannelAffine,
    ExpectedAge,
    FaceAgeResNet,
    ResidualBlock,
)
from age_estimation.video.align import template_eyes
from age_estimation.video.face_models import FACE_AGE, AssetError, asset_path

SOFTMAX_TOLERANCE = 1e-4
AGE_TOLERANCE = 0.01  # years


def onnx_file() -> Path:
    try:
        return asset_path(FACE_AGE)
    except AssetError as err:
        pytest.fail(f"the face-age model is missing; run `age-estimation assets` first ({err})")


@pytest.fixture(scope="module")
def converted() -> FaceAgeResNet:
    return convert_onnx(onnx_file())


@pytest.fixture(scope="module")
def reference():
    """onnxruntime on the ONNX file: (N, 64, 64, 3) raw RGB -> (N, 81), normalised as the manifest says."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file()), providers=["CPUExecutionProvider"])

    def run(chips: np.ndarray) -> np.ndarray:
        nchw = ((np.asarray(chips, np.float32) - np.float32(CHANNEL_MEANS)) / np.float32(256.0)).transpose(0, 3, 1, 2)
        return session.run(None, {"images": np.ascontiguousarray(nchw, np.float32)})[0]

    return run


def expected_ages(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities, np.float64) @ np.asarray(AGE_VALUES)


def astronaut_chips() -> np.ndarray:
    """Chips of scikit-image's astronaut (a real face): our dlib-framed alignment and a plain face crop."""
    import cv2
    from skimage import data

    from age_estimation.video.align import FaceAligner

    photo = data.astronaut()
    with FaceAligner(dlib_chip_align()) as aligner:
        # each photo alone: one clip would smooth the eyes of the photo and its mirror image together
        aligned = np.concatenate([aligner.align_video(image[None]).frames for image in (photo, photo[:, ::-1])])
    plain = cv2.resize(photo[20:220, 140:320], (64, 64), interpolation=cv2.INTER_AREA)
    return np.concatenate([aligned, plain[None]])


def test_layers_shapes_and_config_round_trip() -> None:
    block = ResidualBlock(32, downsample=True, name="down")
    out = block(keras.ops.ones((2, 14, 14, 16)))
    assert tuple(out.shape) == (2, 7, 7, 32) == block.compute_output_shape((2, 14, 14, 16))
    assert ResidualBlock.from_config(block.get_config()).get_config() == block.get_config()
    affine = ChannelAffine()
    assert tuple(affine(keras.ops.ones((1, 3, 3, 4))).shape) == (1, 3, 3, 4)
    model = FaceAgeResNet(include_top=False, name="backbone")
    assert tuple(model(np.zeros((2, 64, 64, 3), np.float32)).shape) == (2, 256)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(clone, FaceAgeResNet) and clone.get_config() == model.get_config()
    probabilities = np.eye(81, dtype=np.float32)[[0, 30, 80]]
    np.testing.assert_allclose(np.asarray(ExpectedAge()(probabilities)), [0.25, 30.0, 80.0])


def test_a_down_block_pads_the_smaller_branch_at_its_end() -> None:
    """dlib's add_prev: a 6x6 main branch is zero-padded at its last row and column to the 7x7 shortcut."""
    block = ResidualBlock(4, downsample=True)
    block.build((1, 14, 14, 4))
    for layer in (block.conv1, block.conv2):
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    block.affine2.set_weights([np.zeros(4, np.float32), np.ones(4, np.float32)])  # main branch = 1 everywhere
    out = np.asarray(block(np.zeros((1, 14, 14, 4), np.float32)))[0, :, :, 0]
    assert out.shape == (7, 7) and (out[:6, :6] == 1).all() and (out[6] == 0).all() and (out[:, 6] == 0).all()


def test_conversion_matches_onnxruntime_on_random_chips(converted: FaceAgeResNet, reference) -> None:
    chips = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3)).astype(np.float32)
    ours, theirs = np.asarray(converted.predict_on_batch(chips)), reference(chips)
    assert np.abs(ours - theirs).max() <= SOFTMAX_TOLERANCE
    assert np.abs(expected_ages(ours) - expected_ages(theirs)).max() <= AGE_TOLERANCE


def test_conversion_matches_onnxruntime_on_a_real_face(converted: FaceAgeResNet, reference) -> None:
    chips = astronaut_chips().astype(np.float32)
    ours, theirs = np.asarray(converted.predict_on_batch(chips)), reference(chips)
    assert np.abs(ours - theirs).max() <= SOFTMAX_TOLERANCE
    assert np.abs(expected_ages(ours) - expected_ages(theirs)).max() <= AGE_TOLERANCE
    assert (expected_ages(ours)[:2] > 15).all()  # an adult face reads as an adult on our framing


def test_a_file_that_is_not_the_network_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a model")
    with pytest.raises(ConversionError, match="bad.onnx"):
        convert_onnx(bad)


def test_the_pretrained_loader_caches_the_converted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted: FaceAgeResNet
) -> None:
    from age_estimation.models.face_age import pretrained

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(onnx_file(), folder / FACE_AGE.name)
    monkeypatch.setenv("AGE_ESTIMATION_ASSETS", str(folder))
    first = pretrained.load_face_age()
    assert pretrained.weights_cache().is_file()
    monkeypatch.setattr(pretrained, "convert_onnx", lambda *a, **k: pytest.fail("converted again"))
    second = pretrained.load_face_age()
    chips = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(first(chips)), np.asarray(second(chips)))
    np.testing.assert_allclose(np.asarray(second(chips)), np.asarray(converted(chips)), atol=1e-7)
    (folder / FACE_AGE.name).unlink()
    with pytest.raises(AssetError, match="age-estimation assets"):
        pretrained.load_face_age()


def test_the_dlib_chip_preset_puts_the_eyes_where_dlib_does() -> None:
    align = dlib_chip_align()
    assert (align.crop_size, align.eye_distance, align.eye_y) == (64, 0.3753, 0.3009)
    ours, dlibs = template_eyes(align), dlib_chip_eyes()
    assert np.abs(ours[:, 1] - dlibs[:, 1]).max() < 0.05  # height: within 0.05 px
    assert abs((ours[1, 0] - ours[0, 0]) - (dlibs[1, 0] - dlibs[0, 0])) < 0.05  # eye distance
    assert abs(ours[:, 0].mean() - dlibs[:, 0].mean()) < 0.5  # dlib's eyes sit 0.45 px left of centre
    # padding 0: dlib's template points themselves, scaled to the chip
    np.testing.assert_allclose(dlib_chip_points(size=1, padding=0.0)[4], [0.4901123135679, 0.6277975316475])


def test_predict_face_age_v1_on_a_real_clip_matches_onnxruntime(tmp_path: Path, reference) -> None:
    """Per-frame ages of the predictor on the aligned chips of a real clip equal onnxruntime's on the same
    chips; a window's age is their mean; ``predict --model face-age-v1 --json`` reports with no interval."""
    from age_estimation.bench.face_video import write_face_video
    from age_estimation.inference.predict import predict_videos
    from age_estimation.inference.runtimes import FaceAgePredictor, open_predictor

    video = write_face_video(tmp_path / "astronaut.mp4", frames=20, size=(256, 256), seed=3)
    predictor = open_predictor(model="face-age-v1")
    assert isinstance(predictor, FaceAgePredictor)
    spec = predictor.spec
    (result,) = list(predict_videos([video], predictor, spec.align, spec.window, keep_frames=True))
    chips = result.aligned_frames
    assert chips.shape == (20, 64, 64, 3) and result.interval is None
    ages = predictor.frame_ages(chips)
    assert np.abs(ages - expected_ages(reference(chips))).max() <= AGE_TOLERANCE
    window = predictor.predict(chips[None, :16], np.ones((1, 16), np.float32))
    assert window["age"][0] == pytest.approx(ages[:16].mean(), abs=1e-4)
    np.testing.assert_allclose(window["temporal_attention"], np.full((1, 16), 1 / 16), rtol=1e-6)
    assert result.age == pytest.approx(np.mean(result.window_ages), abs=1e-4)


def test_the_cli_reports_face_age_v1_without_an_interval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from age_estimation.bench.face_video import write_face_video
    from age_estimation.cli.main import main

    video = write_face_video(tmp_path / "astronaut.mp4", frames=18, size=(256, 256), seed=4)
    assert main(["predict", str(video), "--model", "face-age-v1", "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out.strip().splitlines()[-1])
    assert answer["interval"] is None and answer["runtime"] == "face-age-v1" and answer["frames_used"] == 18
    assert "per-frame face-age network" in answer["model_card"]["description"]
    assert "no published accuracy" in captured.err and "none calibrated on real faces" in captured.err


def test_the_backbone_cut_gives_the_pretrained_networks_own_feature_map(converted: FaceAgeResNet) -> None:
    """Cut after stage 3 (the map spatial attention reads) it is the whole network's stem and first three
    stages, with their weights: the same 7x7x128 map as running those layers of the converted network."""
    from age_estimation.models.face_age.pretrained import face_age_backbone

    backbone = face_age_backbone(stages=3)
    chips = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    x = (chips - np.float32(CHANNEL_MEANS)) / np.float32(256.0)
    x = converted.stem_pool(keras.ops.relu(converted.stem_affine(converted.stem_conv(x))))
    for stage in converted.stages[:3]:
        x = stage(x)
    features = np.asarray(backbone(chips))
    assert features.shape == (2, 7, 7, 128) == backbone.compute_output_shape((2, 64, 64, 3))
    np.testing.assert_allclose(features, np.asarray(x), atol=1e-5)
    assert FaceAgeResNet.from_config(backbone.get_config()).get_config() == backbone.get_config()
    untrained = face_age_backbone(stages=5, weights=None)
    assert tuple(untrained(chips).shape) == (2, 3, 3, 256)
    with pytest.raises(ValueError, match="whole network"):
        FaceAgeResNet(include_top=True, stages=3)


def test_the_dlib_chip_framing_key_is_the_presets_geometry() -> None:
    from age_estimation.config_keys import ALIGN_FRAMINGS

    align = dlib_chip_align()
    assert ALIGN_FRAMINGS["dlib_chip"] == {
        "crop_size": align.crop_size, "eye_distance": align.eye_distance, "eye_y": align.eye_y}
