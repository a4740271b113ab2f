"""`age-estimation predict` and its windows: combination, face handling, every runtime, explain pictures."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from age_estimation.cli.main import main
from age_estimation.config import AlignConfig
from age_estimation.inference import predict as predict_module
from age_estimation.inference.explain import temporal_figure
from age_estimation.inference.model_card import SYNTHETIC_NOTICE
from age_estimation.inference.predict import (
    NO_INTERVAL,
    PredictionError,
    VideoPrediction,
    collect_videos,
    predict_videos,
    prediction_align_config,
)
from age_estimation.inference.runtimes import Predictor
from age_estimation.inference.windows import WindowStream, predict_frames, window_indices, window_starts
from age_estimation.video.landmark_set import LANDMARK_COUNT, LANDMARK_INDICES
from age_estimation.video.landmarks import mouth_width
from tests.inference import write_video
from tests.inference.dynamics_run import dynamics_export
from tests.tiny_run import CLIP, make_tiny_run, write_run_facts


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
    paths["room"] = write_video(root / "room.mp4", "." * 40 + "FF" + "." * 53)  # 95 frames, a glimpse of face
    paths["sparse"] = write_video(root / "sparse.mp4", "F" * 10 + "." * 90)  # a full window, but 10% face
    return root, run, paths


@pytest.fixture(scope="module")
def carded(setup):
    """A copy of the tiny run with the interval and model card training writes."""
    root, run, _ = setup
    copy = root / "carded" / run.name
    shutil.copytree(run, copy)
    interval, card = write_run_facts(copy)
    return copy, interval, card


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

    def _run(self, clips):
        frames = clips["frames"]
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

    def _run(self, clips):
        frames = clips["frames"]
        half = frames.shape[3] // 2
        return {"age": frames[:, :, :, :half].mean(axis=(1, 2, 3, 4)),
                "temporal_attention": np.full(frames.shape[:2], 1 / frames.shape[1])}


def test_test_time_flip_averages_the_clip_and_its_mirror_image():
    frames = np.zeros((2, 3, 4, 4, 3), np.uint8)
    frames[:, :, :, :2] = 10
    frames[1, :, :, 2:] = 30
    flipped = LeftHalfPredictor({"test_time_flip": True}).predict(frames)
    np.testing.assert_allclose(flipped["age"], [5.0, 20.0])
    np.testing.assert_allclose(flipped["flip_gap"], [10.0, 20.0])  # |clip - mirror image|: 10 vs 0, 10 vs 30
    unflipped = LeftHalfPredictor({"test_time_flip": False}).predict(frames)
    np.testing.assert_allclose(unflipped["age"], [10.0, 10.0])
    assert "flip_gap" not in unflipped
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
def test_every_runtime_gives_the_same_age_and_interval(setup, tiny_export, capsys):
    root, _, paths = setup  # the tiny export's model is the one of this module's run
    ages, intervals = {}, {}
    for name, flag in [("keras", tiny_export.run / "model.keras"), ("savedmodel", tiny_export.savedmodel.parent),
                       ("tflite", tiny_export.tflite)]:
        code, results, err = run_cli(capsys, paths["face"], "--model", flag, "--json", "--stride", "4")
        assert code == 0, err
        assert results[0]["runtime"] == name
        ages[name], intervals[name] = results[0]["age"], results[0]["interval"]
    assert abs(ages["savedmodel"] - ages["keras"]) <= 1e-3
    assert abs(ages["tflite"] - ages["keras"]) <= 0.01
    assert intervals["savedmodel"] == pytest.approx(intervals["keras"], abs=1e-2)
    assert intervals["tflite"] == pytest.approx(intervals["keras"], abs=0.05)
    code, results, _ = run_cli(
        capsys, paths["face"], "--json", "--stride", "4", "--config", _config_with_runs(root)
    )
    assert code == 0 and results[0]["age"] == pytest.approx(ages["keras"], abs=1e-3)  # newest run by default


def _config_with_runs(root):
    path = root / "pipeline.yaml"
    path.write_text(f"runtime:\n  runs_dir: {root / 'runs'}\n")
    return path


def test_too_little_face_is_refused_with_the_counts(setup, capsys):
    _, run, paths = setup
    code, results, err = run_cli(capsys, paths["room"], paths["sparse"], paths["face"], "--run", run, "--json")
    assert code == 1 and [r["path"] for r in results] == [str(paths["face"])]
    needed = r"; at least 8 \(data\.clip_length\) and 20% \(inference\.min_face_fraction\) are needed"
    assert re.search(re.escape(str(paths["room"])) + r": a face was found in [1-7] of 95 frames" + needed, err)
    assert re.search(re.escape(str(paths["sparse"])) + r": a face was found in 10 of 100 frames" + needed, err)
    face = results[0]
    assert (face["frames_used"], face["frames_total"], face["frames_seen"]) == (16, 16, 16)


def test_every_output_has_the_interval_and_model_card(setup, carded, capsys):
    _, _, paths = setup
    run, interval, card = carded
    code = main(["predict", str(paths["face"]), str(paths["partial"]), "--run", str(run)])
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert re.search(r": age \d+\.\d \(90% interval \d+\.\d-\d+\.\d\) years \(\d window\(s\)", line), line
    assert err.count(SYNTHETIC_NOTICE) == 1 and err.count("model: trained 2025-01-01 on synthetic data") == 1
    assert NO_INTERVAL not in err
    code, results, _ = run_cli(capsys, paths["face"], "--run", run, "--json")
    face = results[0]
    assert face["coverage"] == 0.9 and face["model_card"] == card.to_json()
    assert face["interval"] == pytest.approx(list(interval.bounds(face["age"])), abs=2e-3)
    assert face["interval"][0] < face["age"] < face["interval"][1]


def test_a_model_without_interval_says_so_once(setup, capsys):
    _, run, paths = setup
    code, results, err = run_cli(capsys, paths["face"], paths["partial"], "--run", run, "--json")
    assert code == 0 and err.count(NO_INTERVAL) == 1 and SYNTHETIC_NOTICE not in err
    assert all(r["interval"] is None and r["coverage"] is None and r["model_card"] is None for r in results)


def test_attention_curve_has_points_only_at_seen_frames_and_a_seconds_axis(tmp_path):
    seen = np.array([True, True, False, False, True, True, False, True])
    attention = np.where(seen, 0.2, 0.0)
    result = VideoPrediction(
        path=str(tmp_path / "clip.mp4"), age=30.0, window_ages=[30.0], window_starts=[0], frames_total=10,
        frames_used=8, runtime="test", seconds=0.1, source_frames=np.arange(0, 16, 2), temporal_attention=attention,
        seen=seen, fps=25.0, interval=(25.0, 35.0), coverage=0.9,
    )
    fig = temporal_figure(result)
    (line,) = fig.axes[0].lines
    np.testing.assert_array_equal(line.get_xdata(), np.arange(0, 16, 2)[seen])
    assert (line.get_ydata() > 0).all()
    assert fig.axes[0].get_xlabel() == "source frame (only frames a window sampled)"
    (seconds,) = fig.axes[0].child_axes
    assert seconds.get_xlabel() == "seconds"
    assert "age 30.0 (90% interval 25.0-35.0)" in fig.axes[0].get_title()


class GridPredictor(Predictor):
    """Age = mean pixel; temporal and spatial attention from the pixels, so every frame's sums differ."""

    name = "grid"

    def _run(self, clips):
        frames = clips["frames"]
        values = frames.mean(axis=(2, 3, 4))
        return {"age": values.mean(axis=1),
                "temporal_attention": values / values.sum(axis=1, keepdims=True),
                "spatial_attention": frames[:, :, ::2, ::2, 0].astype(np.float32)}


def reference_windows(frames, window, stride, span):
    """What predict_frames returned before streaming: every window of window_indices, then the averages."""
    predictor = GridPredictor({"test_time_flip": False})
    windows = window_indices(len(frames), window, span, stride)
    out = predictor.predict(np.stack([frames[w] for w in windows]))
    temporal, coverage = np.zeros(len(frames)), np.zeros(len(frames))
    spatial = np.zeros((len(frames), *out["spatial_attention"].shape[2:]))
    for row, indices in enumerate(windows):
        temporal[indices] += out["temporal_attention"][row]
        spatial[indices] += out["spatial_attention"][row]
        coverage[indices] += 1
    temporal /= np.maximum(coverage, 1)
    return {"window_ages": list(out["age"]), "window_starts": [int(w[0]) for w in windows], "seen": coverage > 0,
            "temporal_attention": temporal / temporal.sum(),
            "spatial_attention": spatial / np.maximum(coverage, 1)[:, None, None]}


@pytest.mark.parametrize(
    ("count", "window", "stride", "span"),
    [(30, 4, 3, 8), (8, 4, 2, 8), (5, 4, 2, 8), (3, 4, 2, 4), (41, 8, 20, 20), (23, 4, 1, 4)],
)
def test_streamed_windows_match_the_whole_array(count, window, stride, span):
    frames = np.random.default_rng(count).integers(1, 256, (count, 4, 4, 3), dtype=np.uint8)
    expected = reference_windows(frames, window, stride, span)
    streamed = WindowStream(GridPredictor({"test_time_flip": False}), window, stride, span, batch_size=3)
    for frame in frames:  # one frame at a time, as a streaming aligner gives them
        streamed.push(frame)
        assert len(streamed._recent) <= max(span, window)
    got = streamed.finish()
    assert got["window_starts"] == expected["window_starts"]
    np.testing.assert_allclose(got["window_ages"], expected["window_ages"], rtol=1e-6)
    np.testing.assert_array_equal(got["seen"], expected["seen"])
    np.testing.assert_allclose(got["temporal_attention"], expected["temporal_attention"], rtol=1e-6)
    assert got["frames"] is None and got["spatial_attention"] is None  # the maps are kept with the crops only
    predictor = GridPredictor({"test_time_flip": False})
    whole = predict_frames(predictor, frames, window, stride, span=span, keep_frames=True)
    assert whole["window_ages"] == got["window_ages"] and np.array_equal(whole["frames"], frames)
    np.testing.assert_allclose(whole["spatial_attention"], expected["spatial_attention"], rtol=1e-6)


class LandmarkPredictor(Predictor):
    """Reads a 3-point landmark stream: age = mean x of the first point over the frames the mesh found."""

    name = "landmarks"

    def _run(self, clips):
        found = clips["landmark_mask"]
        return {"age": (clips["landmarks"][:, :, 0, 0] * found).sum(axis=1) / np.maximum(found.sum(axis=1), 1),
                "temporal_attention": np.full(found.shape, 1 / found.shape[1])}


def test_windows_carry_each_frames_landmarks():
    count, window, stride, span = 23, 4, 3, 8
    frames = np.zeros((count, 4, 4, 3), np.uint8)
    landmarks = np.repeat(np.arange(count, dtype=np.float32)[:, None, None], 3, axis=1).repeat(2, axis=2)
    found = np.arange(count) % 5 != 2
    predictor = LandmarkPredictor({"test_time_flip": False, "landmark_points": 3})
    out = predict_frames(predictor, frames, window, stride, span=span, keep_frames=True, landmarks=landmarks,
                         landmark_found=found, batch_size=2)
    windows = window_indices(count, window, span, stride)
    expected = [np.mean(w[found[w]]) if found[w].any() else 0.0 for w in windows]
    assert out["window_starts"] == [int(w[0]) for w in windows]
    np.testing.assert_allclose(out["window_ages"], expected, rtol=1e-6)
    np.testing.assert_array_equal(out["landmarks"], landmarks)
    np.testing.assert_array_equal(out["landmark_found"], found)
    pixels = predict_frames(GridPredictor({"test_time_flip": False}), frames + 1, window, stride, span=span,
                            keep_frames=True, landmarks=landmarks)
    assert pixels["landmarks"] is None and pixels["landmark_found"] is None  # a pixel model keeps none
    stream = WindowStream(predictor, window, stride, span)
    with pytest.raises(ValueError, match=r"reads 3 landmarks a frame .* frame 0 came with none"):
        stream.push(frames[0])
    with pytest.raises(ValueError, match=r"frame 0 came with \(0, 2\) .*prediction_align_config"):
        stream.push(frames[0], np.zeros((0, 2), np.float32))


def test_alignment_tracks_the_landmark_stream_only_for_a_model_that_reads_it():
    align = AlignConfig(crop_size=32, landmarks=True, min_face_fraction=0.5)
    pixels = prediction_align_config(align)
    assert pixels.landmarks is False and pixels.min_face_fraction == 0.0 and pixels.crop_size == 32
    assert prediction_align_config(dataclasses.replace(align, landmarks=False), LANDMARK_COUNT).landmarks is True
    with pytest.raises(ValueError, match=f"reads 12 landmarks a frame .* tracks {LANDMARK_COUNT}"):
        prediction_align_config(align, 12)
    predictor = LandmarkPredictor({"landmark_points": 12})
    with pytest.raises(ValueError, match="reads 12 landmarks"):
        predict_videos([Path("never-read.mp4")], predictor, align, window=4)  # before any video is read


def test_the_attention_curve_has_the_mouth_tracks_beside_it(tmp_path):
    frames = 12
    points = np.zeros((frames, LANDMARK_COUNT, 2), np.float32)
    right, left = LANDMARK_INDICES.index(61), LANDMARK_INDICES.index(291)
    points[:, right, 0], points[:, left, 0] = -0.5, 0.5 + 0.01 * np.arange(frames)  # the mouth widens
    found = np.arange(frames) != 4
    seen = np.ones(frames, bool)
    result = VideoPrediction(
        path=str(tmp_path / "clip.mp4"), age=30.0, window_ages=[30.0], window_starts=[0], frames_total=frames,
        frames_used=frames, runtime="test", seconds=0.1, source_frames=np.arange(frames) * 2,
        temporal_attention=np.full(frames, 1 / frames), seen=seen, fps=25.0, landmarks=points, landmark_found=found,
    )
    fig = temporal_figure(result)
    attention, tracks = fig.axes[:2]
    assert attention.get_ylabel() == "temporal attention" and tracks.get_ylabel().startswith("smile lift")
    assert tracks.get_shared_x_axes().joined(attention, tracks)  # one frames (and seconds) axis
    (width,) = fig.axes[2].lines
    np.testing.assert_array_equal(width.get_xdata(), np.arange(frames) * 2)
    widths = np.asarray(width.get_ydata(), float)
    assert np.isnan(widths[4]) and widths[found] == pytest.approx(1.0 + 0.01 * np.arange(frames)[found])
    np.testing.assert_allclose(mouth_width(points), 1.0 + 0.01 * np.arange(frames), rtol=1e-6)


@pytest.mark.slow
def test_a_dynamics_model_gives_the_same_age_on_every_runtime(setup, tmp_path_factory, capsys, monkeypatch):
    _, run, paths = setup
    shared = dynamics_export(tmp_path_factory)
    tracked = []
    original = predict_module.FaceAligner

    def recording(cfg):  # the alignment each predict builds
        tracked.append(cfg.landmarks)
        return original(cfg)

    monkeypatch.setattr(predict_module, "FaceAligner", recording)
    ages = {}
    for name, flag in [("keras", shared.run / "model.keras"), ("savedmodel", shared.savedmodel.parent),
                       ("tflite", shared.tflite("float32"))]:
        code, results, err = run_cli(capsys, paths["face"], "--model", flag, "--json", "--stride", "4")
        assert code == 0, err
        assert results[0]["runtime"] == name and results[0]["interval"] is not None
        ages[name] = results[0]["age"]
    with capsys.disabled():
        print("dynamics predict ages", ages)
    assert abs(ages["savedmodel"] - ages["keras"]) <= 1e-3 and abs(ages["tflite"] - ages["keras"]) <= 0.01
    code, _, err = run_cli(capsys, paths["face"], "--run", run, "--json")
    assert code == 0, err
    assert tracked == [True, True, True, False]  # the face mesh runs only for the model that reads it
    explained = tmp_path_factory.mktemp("explain")
    code, _, err = run_cli(capsys, paths["face"], "--model", shared.tflite("float32"), "--explain", explained)
    assert code == 0, err
    image = matplotlib.image.imread(explained / "face_temporal.png")
    assert image.shape[0] > 400  # the attention curve with the landmark panel under it
