"""`age-estimation predict`: windows, combination, face handling, every runtime, explain pictures."""

import json

import matplotlib.image
import numpy as np
import pytest

from age_estimation.cli.main import main
from age_estimation.export.savedmodel import export_savedmodel
from age_estimation.export.tflite import export_tflite
from age_estimation.inference.predict import (
    PredictionError,
    collect_videos,
    predict_frames,
    window_indices,
    window_starts,
)
from age_estimation.inference.runtimes import Predictor
from tests.inference import write_video
from tests.tiny_run import CLIP, load_tiny_run, make_tiny_run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    run = make_tiny_run(root)
    videos = root / "videos"
    videos.mkdir()
    paths = {
        "face": write_video(videos / "face.mp4", "F" * 16),
        "partial": write_video(videos / "partial.mp4", "F" * 10 + "." * 6),
    }
    paths["none"] = write_video(root / "none.mp4", "." * 8)
    return root, run, paths


def run_cli(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_window_starts_cover_every_frame():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(3, 8, 4) == [0]
    with pytest.raises(ValueError):
        window_starts(10, 4, 0)


class MeanPixelPredictor(Predictor):
    """A transparent predictor for testing the windowing: age = mean pixel value of the window."""

    name = "mean-pixel"

    def _run(self, frames, mask):
        steps = frames.shape[1]
        return {
            "age": frames.mean(axis=(1, 2, 3, 4)),
            "temporal_attention": np.full((len(frames), steps), 1 / steps),
        }


def test_windows_are_averaged_and_attention_spread_over_frames():
    frames = np.stack([np.full((4, 4, 3), 10 * i, np.uint8) for i in range(10)])
    out = predict_frames(MeanPixelPredictor(), frames, window=4, stride=3)
    assert out["window_starts"] == [0, 3, 6]
    np.testing.assert_allclose(out["window_ages"], [15.0, 45.0, 75.0])
    np.testing.assert_allclose(out["temporal_attention"], np.full(10, 0.1))
    assert out["spatial_attention"] is None


class LeftHalfPredictor(Predictor):
    """Age = mean pixel of the left half of the frames: a mirror image gives the right half's."""

    name = "left-half"

    def _run(self, frames, mask):
        half = frames.shape[3] // 2
        return {"age": frames[:, :, :, :half].mean(axis=(1, 2, 3, 4)),
                "temporal_attention": np.full(frames.shape[:2], 1 / frames.shape[1])}


def test_test_time_flip_averages_the_clip_and_its_mirror_image():
    frames = np.zeros((2, 3, 4, 4, 3), np.uint8)
    frames[:, :, :, :2] = 10
    frames[1, :, :, 2:] = 30
    np.testing.assert_allclose(LeftHalfPredictor({"test_time_flip": True}).predict(frames)["age"], [5.0, 20.0])
    np.testing.assert_allclose(LeftHalfPredictor({"test_time_flip": False}).predict(frames)["age"], [10.0, 10.0])
    flipping = LeftHalfPredictor({"test_time_flip": True})
    np.testing.assert_allclose(flipping.predict(frames, test_time_flip=False)["age"], [10.0, 10.0])


def test_collect_videos_from_folders(setup, tmp_path):
    root, _, paths = setup
    (root / "videos" / "notes.txt").write_text("not a video")
    assert collect_videos([root / "videos", paths["none"]]) == [
        paths["face"],
        paths["partial"],
        paths["none"],
    ]
    with pytest.raises(PredictionError, match="no video files"):
        collect_videos([tmp_path])


def test_predict_json_partial_face_and_windows(setup, capsys):
    _, run, paths = setup
    code, results, _ = run_cli(
        capsys, paths["face"], paths["partial"], "--json", "--run", run, "--stride", "4"
    )
    assert code == 0 and [r["path"] for r in results] == [str(paths["face"]), str(paths["partial"])]
    face, partial = results
    assert (face["frames_used"], face["frames_total"], face["partial_face"]) == (16, 16, False)
    assert face["window_starts"] == window_starts(16, CLIP, 4) == [0, 4, 8]
    assert face["age"] == pytest.approx(np.mean(face["window_ages"]), abs=1e-3)
    assert face["spread"] == pytest.approx(np.std(face["window_ages"]), abs=1e-3)
    assert (partial["frames_used"], partial["frames_total"], partial["partial_face"]) == (10, 16, True)
    assert partial["window_starts"] == [0, 2]


def test_windows_cover_the_training_span_at_the_training_pace():
    windows = window_indices(frames=100, window=8, span=40, stride=20)
    assert [int(w[0]) for w in windows] == [0, 20, 40, 60]
    assert all(len(w) == 8 and w[-1] - w[0] == 39 for w in windows)
    assert np.all(np.diff(windows[0]) >= 5)  # 40 frames sampled down to 8, like training clips
    short = window_indices(frames=20, window=8, span=40, stride=20)
    assert len(short) == 1 and short[0][0] == 0 and short[0][-1] == 19
    assert [list(w) for w in window_indices(frames=10, window=8, span=8, stride=4)] == [
        list(range(8)), list(range(2, 10))]


def test_no_face_is_a_clear_error_and_nonzero_exit(setup, capsys):
    _, run, paths = setup
    code, results, err = run_cli(capsys, paths["none"], paths["face"], "--run", run, "--json")
    assert code == 1
    assert [r["path"] for r in results] == [str(paths["face"])]  # the other videos still get an age
    assert f"{paths['none']}: no face found in any of 8 frames" in err


def test_explain_writes_readable_pictures(setup, capsys, tmp_path):
    _, run, paths = setup
    code, _, _ = run_cli(capsys, paths["face"], "--run", run, "--explain", tmp_path)
    assert code == 0
    frames_png, curve_png = tmp_path / "face_frames.png", tmp_path / "face_temporal.png"
    for png in (frames_png, curve_png):
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.05


@pytest.mark.slow
def test_every_runtime_gives_the_same_age(setup, capsys):
    root, run, paths = setup
    cfg, model = load_tiny_run(run)
    saved = export_savedmodel(model, cfg)
    tflite = export_tflite(model, cfg, variants=["float32"])[0].path
    ages = {}
    for name, flag in [("keras", run / "model.keras"), ("savedmodel", saved.parent), ("tflite", tflite)]:
        code, results, err = run_cli(capsys, paths["face"], "--model", flag, "--json", "--stride", "4")
        assert code == 0, err
        assert results[0]["runtime"] == name
        ages[name] = results[0]["age"]
    assert abs(ages["savedmodel"] - ages["keras"]) <= 1e-3
    assert abs(ages["tflite"] - ages["keras"]) <= 0.01
    code, results, _ = run_cli(
        capsys, paths["face"], "--json", "--stride", "4", "--config", _config_with_runs(root)
    )
    assert code == 0 and results[0]["age"] == pytest.approx(ages["keras"], abs=1e-3)  # newest run by default


def _config_with_runs(root):
    path = root / "pipeline.yaml"
    path.write_text(f"runtime:\n  runs_dir: {root / 'runs'}\n")
    return path
