"""The corruption benchmark: each corruption at each severity, the table's arithmetic, and the command."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from age_estimation.evaluation.corruptions import (
    CORRUPTIONS,
    GREY,
    CorruptionError,
    add_noise,
    blur,
    damage_bytes,
    darken,
    jpeg,
    occlude,
    patch_box,
    reduce_contrast,
    rotate,
    shrink,
    write_corrupted,
)
from age_estimation.evaluation.robustness import (
    corruption_table,
    heldout_videos,
    manifest_videos,
    reason_key,
    stratified_subset,
    summarise,
)
from age_estimation.evaluation.robustness_report import goals, markdown_report
from age_estimation.inference.predict import PredictionError
from age_estimation.video.decode import read_video
from tests.inference import face_frame

SEVERITIES = (1, 2, 3)


def level(name: str, severity: int) -> float:
    return CORRUPTIONS[name].levels[severity]


def textured_frame(height: int = 90, width: int = 120, seed: int = 0) -> np.ndarray:
    """A uint8 RGB frame of smooth blobs over mid-grey values (no clipping at either end)."""
    small = np.random.default_rng(seed).integers(60, 200, (6, 8, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def write_frames(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decoded(path: Path) -> tuple[np.ndarray, float]:
    video = read_video(path)
    return video.frames, video.fps


# --- each corruption changes frames as intended, at each severity ---


@pytest.mark.parametrize("severity", SEVERITIES)
def test_dark_scales_the_brightness(severity):
    frame = textured_frame()
    factor = level("dark", severity)
    assert darken(frame, factor).mean() / frame.mean() == pytest.approx(factor, abs=0.01)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_low_contrast_keeps_the_mean_and_scales_the_spread(severity):
    frame = textured_frame()
    factor = level("low_contrast", severity)
    out = reduce_contrast(frame, factor)
    assert out.mean() == pytest.approx(frame.mean(), abs=0.5)
    assert out.std() / frame.std() == pytest.approx(factor, abs=0.02)


def test_blur_grows_with_severity_and_scales_with_the_frame():
    frame = np.kron(np.indices((12, 16)).sum(axis=0) % 2, np.ones((8, 8)))[..., None].repeat(3, axis=2)
    frame = (frame * 200 + 20).astype(np.uint8)  # a 96x128 checkerboard of 8 px squares
    spreads = [blur(frame, level("blur", s)).std() for s in SEVERITIES]
    assert frame.std() > spreads[0] > spreads[1] > spreads[2]
    # Twice the frame size, twice the sigma: the same picture, only larger.
    large = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    assert blur(large, level("blur", 2)).std() == pytest.approx(spreads[1], rel=0.05)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_noise_adds_gaussian_noise_of_the_severity_s_sigma(severity):
    frame = np.full((200, 200, 3), 128, np.uint8)
    sigma = level("noise", severity)
    out = add_noise(frame, sigma, np.random.default_rng(0))
    spread = (out.astype(float) - 128).std()
    if severity < 3:
        assert spread == pytest.approx(sigma, rel=0.03)
    else:  # clipped at 0 and 255, so a little under
        assert 0.75 * sigma < spread < sigma
    again = add_noise(frame, sigma, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_small_face_shrinks_the_frame_onto_a_grey_frame_of_the_same_size(severity):
    frame = textured_frame()
    scale = level("small_face", severity)
    out = shrink(frame, scale)
    assert out.shape == frame.shape
    content = np.any(out != GREY, axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    assert len(rows) == pytest.approx(90 * scale, abs=1)
    assert len(cols) == pytest.approx(120 * scale, abs=1)
    assert (rows[0] + rows[-1]) / 2 == pytest.approx(44.5, abs=1)  # centred
    assert (cols[0] + cols[-1]) / 2 == pytest.approx(59.5, abs=1)


def test_rotations_equal_np_rot90_clockwise():
    frame = textured_frame()
    np.testing.assert_array_equal(rotate(frame, 90), np.rot90(frame, k=-1))
    np.testing.assert_array_equal(rotate(frame, 180), np.rot90(frame, k=2))
    assert rotate(frame, 90).shape == (120, 90, 3)
    assert rotate(frame, 90)[0, -1].tolist() == frame[0, 0].tolist()  # top-left goes to top-right
    with pytest.raises(ValueError):
        rotate(frame, 45)
    assert CORRUPTIONS["rotate90"].severities([1, 2, 3]) == [None]  # one fixed level, run once
    assert CORRUPTIONS["dark"].severities([3, 1]) == [3, 1]


def test_jpeg_error_grows_as_quality_falls():
    frame = face_frame()
    errors = [np.abs(jpeg(frame, level("jpeg", s)).astype(float) - frame).mean() for s in SEVERITIES]
    assert 0 < errors[0] < errors[1] < errors[2]
    assert jpeg(frame, 5).shape == frame.shape


@pytest.mark.parametrize("severity", SEVERITIES)
def test_occlusion_covers_the_severity_s_share_of_the_face_box(severity):
    frame = textured_frame(200, 300)
    box = np.array([100.0, 40.0, 80.0, 120.0])  # x, y, w, h
    fraction = level("occlusion", severity)
    out = occlude(frame, box, fraction)
    changed = np.any(out != frame, axis=2)
    grey = np.all(out == GREY, axis=2)
    assert grey.sum() == pytest.approx(fraction * 80 * 120, rel=0.03)
    assert not (changed & ~grey).any()  # nothing outside the patch moved
    x0, y0, x1, y1 = patch_box(box, fraction)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((140, 100), abs=1)  # centred on the box


@pytest.mark.parametrize("severity", SEVERITIES)
def test_byte_damage_changes_exactly_the_bytes_asked_in_the_middle(severity):
    data = np.random.default_rng(1).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    count = int(level("byte_damage", severity))
    out = damage_bytes(data, count, np.random.default_rng(2))
    assert len(out) == len(data)
    diff = np.flatnonzero(np.frombuffer(out, np.uint8) != np.frombuffer(data, np.uint8))
    assert len(diff) == count
    assert diff[-1] - diff[0] == count - 1  # one run
    assert (diff[0] + diff[-1]) / 2 == pytest.approx(len(data) / 2, abs=1)
    assert len(damage_bytes(b"short", 100, np.random.default_rng(0))) == 5  # cut to the data's length


# --- corrupted copies on disk ---


def test_a_corrupted_copy_is_a_video_of_the_same_frames_and_rate(tmp_path):
    source = write_frames(tmp_path / "clip.mp4", [textured_frame(seed=i) for i in range(6)], fps=12)
    dark = write_corrupted(source, tmp_path / "dark.mp4", "dark", 2)
    turned = write_corrupted(source, tmp_path / "turned.mp4", "rotate90", None)
    clean_frames, _ = decoded(source)
    dark_frames, fps = decoded(dark)
    assert len(dark_frames) == 6 and fps == pytest.approx(12)
    ratio = np.mean([d.mean() / c.mean() for d, c in zip(dark_frames, clean_frames)])
    assert ratio == pytest.approx(level("dark", 2), abs=0.02)
    turned_frames, _ = decoded(turned)
    assert turned_frames[0].shape == (120, 90, 3)  # width and height swapped
    assert np.abs(turned_frames[0].astype(float) - np.rot90(clean_frames[0], -1)).mean() < 4


def test_byte_damage_writes_a_damaged_copy_and_leaves_the_source(tmp_path):
    source = write_frames(tmp_path / "clip.mp4", [textured_frame(seed=i) for i in range(6)])
    original = source.read_bytes()
    copy = write_corrupted(source, tmp_path / "damaged.mp4", "byte_damage", 1)
    assert source.read_bytes() == original
    changed = np.frombuffer(copy.read_bytes(), np.uint8) != np.frombuffer(original, np.uint8)
    assert changed.sum() == min(int(level("byte_damage", 1)), len(original))
    again = write_corrupted(source, tmp_path / "again.mp4", "byte_damage", 1)
    assert again.read_bytes() == copy.read_bytes()  # seeded: reruns give the same copies


def test_occlusion_covers_the_detected_face(tmp_path):
    source = write_frames(tmp_path / "face.mp4", [face_frame(i) for i in range(4)])
    copy = write_corrupted(source, tmp_path / "occluded.mp4", "occlusion", 3)
    from age_estimation.video.face_detector import FaceDetector

    clean, _ = decoded(source)
    box = FaceDetector().detect(clean[0])[0].box
    cx, cy = (box[:2] + box[2:] / 2).astype(int)
    occluded, _ = decoded(copy)
    assert np.abs(occluded[0][cy - 3 : cy + 4, cx - 3 : cx + 4].astype(float) - GREY).mean() < 6
    assert np.abs(occluded[0][:10, :10].astype(float) - clean[0][:10, :10]).mean() < 6  # a corner is kept


def test_an_unreadable_source_is_a_corruption_error_naming_it(tmp_path):
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 20)
    with pytest.raises(CorruptionError, match="text.mp4"):
        write_corrupted(text, tmp_path / "out.mp4", "blur", 1)


# --- the table's arithmetic, with a fake predict ---


@dataclass
class Answer:
    age: float
    interval: tuple[float, float] | None


# By row label (folder) and video number: an Answer, or the reason predict refused.
FAKE = {
    "clean": {0: Answer(22, (18, 26)), 1: Answer(35, (33, 37)), 2: "a face was found in 3 of 16 frames",
              3: Answer(50, (45, 55))},
    "dark-s1": {0: Answer(20, (12, 28)), 1: "the video is too dark (mean brightness 12)", 2: Answer(41, (30, 50)),
                3: Answer(57, (52, 57))},
    "dark-s3": {0: "the video is too dark (mean brightness 3)", 1: "the video is too dark (mean brightness 2)",
                2: "a face was found in 0 of 16 frames", 3: Answer(60, None)},
}


def fake_predict(paths):
    """Results in FAKE's order: videos are 'v<i>.mp4' (clean) or '<folder>/<iiii>-v<i>.mp4' (copies)."""
    for path in paths:
        row = "clean" if path.parent.name == "originals" else path.parent.name
        number = int(path.stem.rsplit("v", 1)[-1])
        answer = FAKE[row][number]
        yield PredictionError(f"{path}: {answer}") if isinstance(answer, str) else answer


@pytest.fixture(scope="module")
def four_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("originals") / "originals"
    folder.mkdir()
    frames = [textured_frame(32, 32, seed=i) for i in range(3)]
    return [(write_frames(folder / f"v{i}.mp4", frames), age, f"s{i}") for i, age in enumerate([20, 30, 40, 50])]


def test_the_table_counts_abstentions_coverage_error_and_width(four_videos, tmp_path):
    table = corruption_table(fake_predict, four_videos, ["dark"], [1, 3], tmp_path / "work", progress=False)
    clean, mild, severe = table["rows"]
    assert [(r["corruption"], r["severity"]) for r in table["rows"]] == [("clean", None), ("dark", 1), ("dark", 3)]

    assert (clean["videos"], clean["answered"], clean["abstained"]) == (4, 3, 1)
    assert clean["abstention_rate"] == 0.25
    assert clean["reasons"] == {"a face was found in": 1}
    assert clean["coverage"] == pytest.approx(2 / 3)  # 30 is outside 33-37
    assert clean["mae"] == pytest.approx((2 + 5 + 0) / 3)
    assert clean["mean_width"] == pytest.approx((8 + 4 + 10) / 3)
    assert clean["width_ratio"] is None

    assert mild["abstention_rate"] == 0.25
    assert mild["reasons"] == {"the video is too dark": 1}
    assert mild["coverage"] == pytest.approx(2 / 3)  # 50 is outside 52-57
    assert mild["mae"] == pytest.approx((0 + 1 + 7) / 3)
    # Widths 16 and 5 against clean 8 and 10 (video 1 refused, video 2 refused when clean).
    assert mild["width_ratio"] == pytest.approx((2.0 + 0.5) / 2)
    assert (mild["width_pairs"], mild["narrower"]) == (2, 1)

    assert severe["reasons"] == {"the video is too dark": 2, "a face was found in": 1}
    assert severe["answered"] == 1 and severe["with_interval"] == 0
    assert severe["coverage"] is None and severe["width_ratio"] is None and severe["mae"] == 10
    assert severe["results"][3] == {"age": 60.0, "interval": None}
    assert severe["results"][0]["abstained"].endswith("(mean brightness 3)")
    assert not (tmp_path / "work" / "dark-s1").exists()  # copies are removed after their row

    met = goals(table["rows"])
    assert met["coverage_below"] == ["clean", "dark s1"]
    assert met["clean_abstention_met"] is False
    assert met["mean_width_ratio"] == pytest.approx(1.25) and met["narrower_on_average"] == []


def test_a_copy_that_cannot_be_written_is_counted_apart():
    results = [Answer(20, (10, 30)), CorruptionError("x.mp4: no decodable frames"), PredictionError("y.mp4: dark")]
    row = summarise("blur", 2, "0.01", np.array([21.0, 40.0, 50.0]), results, [10.0, 5.0, None])
    assert (row["videos"], row["not_written"], row["answered"], row["abstained"]) == (2, 1, 1, 1)
    assert row["abstention_rate"] == 0.5 and row["coverage"] == 1.0 and row["width_ratio"] == 2.0
    assert row["results"][1] == {"not_written": "x.mp4: no decodable frames"}


def test_a_crash_in_predict_is_recorded_and_the_other_videos_still_run(four_videos, tmp_path):
    calls = []

    def crashing(paths):
        calls.append(len(paths))
        for path in paths:
            if path.name == "v1.mp4":
                raise ValueError("The truth value of an array is ambiguous")
            yield Answer(30, (20, 40))

    row = corruption_table(crashing, four_videos, [], [1], tmp_path, progress=False)["rows"][0]
    assert calls == [4, 2]  # called again for the videos after the crash
    assert (row["answered"], row["abstained"], row["crashed"]) == (3, 0, 1)
    assert row["results"][1] == {"crashed": f"{four_videos[1][0]}: ValueError: The truth value of an array is ambiguous"}
    assert goals([row])["crashed"] == ["clean"]


def test_predict_failing_on_every_clean_video_stops_the_benchmark(four_videos, tmp_path):
    def broken(paths):
        yield from ()
        raise RuntimeError("face model asset missing")

    with pytest.raises(ValueError, match="every clean video.*face model asset missing"):
        corruption_table(broken, four_videos, ["dark"], [1], tmp_path, progress=False)


def test_reasons_are_counted_by_their_first_words_without_the_file():
    assert reason_key(PredictionError("/a/b c.mp4: a face was found in 12 of 40 frames; at least 8")) == \
        "a face was found in"
    assert reason_key(PredictionError("/v/a.mp4: face too dark: mean brightness 12")) == "face too dark"
    assert reason_key(PredictionError("no path here; only words")) == "no path here"


def test_the_markdown_names_the_run_and_every_row(four_videos, tmp_path):
    table = corruption_table(fake_predict, four_videos, ["dark"], [1, 3], tmp_path, progress=False)
    table["header"] = {"command": "age-estimation evaluate --corruptions", "run": "runs/x", "model runtime": "tflite",
                       "date": "2026-12-08", "machine": "test"}
    text = markdown_report(table)
    for expected in ("command: age-estimation evaluate --corruptions", "run: runs/x", "model runtime: tflite",
                     "| clean | - |", "| dark | 1 |", "| dark | 3 |", "1 (25%)", '2 x "the video is too dark"',
                     "below it: clean, dark s1", "1.25"):
        assert expected in text, expected


# --- which videos ---


def test_the_stratified_subset_spans_the_ages():
    videos = [(Path(f"v{i}.mp4"), float(age), "s") for i, age in enumerate([50, 10, 30, 20, 40, 60, 70])]
    assert [v[1] for v in stratified_subset(videos, 3)] == [10, 40, 70]
    assert len(stratified_subset(videos, 10)) == 7


def test_heldout_videos_come_from_the_run_and_its_cache_index(tmp_path):
    from age_estimation.atomic_files import write_json_atomic
    from age_estimation.config import AlignConfig, load_config, save_config
    from age_estimation.data.cache import empty_index

    cache, run = tmp_path / "cache", tmp_path / "run"
    run.mkdir()
    save_config(load_config(None, [f"data.cache_dir={cache}"]), run / "config.yaml")
    present = tmp_path / "a.mp4"
    present.write_bytes(b"x")
    index = empty_index(AlignConfig())
    index["videos"] = {"a-1": {"source": str(present)}, "b-2": {"source": str(tmp_path / "gone.mp4")}}
    write_json_atomic(cache / "index.json", index)
    with open(run / "heldout_predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "subject", "label", "age", "predicted", "abs_error", "fold"])
        writer.writerows([["a-1", "s1", "", "31.00", "30.00", "1.00", ""], ["b-2", "s2", "", "40.00", "41", "1", ""],
                          ["c-3", "s3", "", "50.00", "50", "0", ""]])
    videos, missing = heldout_videos(run)
    assert videos == [(present, 31.0, "s1")]
    assert len(missing) == 2 and "gone.mp4" in missing[0] and "c-3: not in the cache index" in missing[1]


def test_manifest_videos_read_a_csv_and_report_bad_rows(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("path,age,subject\na.mp4,33,p1\nmissing.mp4,20,p2\n")
    videos, problems = manifest_videos(tmp_path / "m.csv")
    assert videos == [(tmp_path / "a.mp4", 33.0, "p1")]
    assert len(problems) == 1 and "missing.mp4" in problems[0]


# --- the command, end to end with a tiny trained run ---


@pytest.mark.slow
def test_evaluate_corruptions_runs_the_predict_path_and_writes_the_table(tmp_path, capsys):
    from age_estimation.cli.main import main
    from tests.inference import write_video
    from tests.tiny_run import make_tiny_run, write_run_facts

    run = make_tiny_run(tmp_path)
    write_run_facts(run)
    rows = [(write_video(tmp_path / f"face{i}.mp4", "F" * 16), age, f"p{i}") for i, age in enumerate([25, 45])]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,age,subject\n" + "".join(f"{p},{a},{s}\n" for p, a, s in rows))
    out = tmp_path / "report" / "bench.md"
    code = main(["evaluate", "--corruptions", "--run", str(run), "--manifest", str(manifest), "--corruption",
                 "dark", "rotate180", "byte_damage", "--severity", "3", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = json.loads(captured.out)
    labels = [(r["corruption"], r["severity"]) for r in table["rows"]]
    assert labels == [("clean", None), ("dark", 3), ("rotate180", None), ("byte_damage", 3)]
    for row in table["rows"]:
        assert row["videos"] + row["not_written"] == 2
        assert row["answered"] + row["abstained"] + row["crashed"] == row["videos"]
        assert sum(row["reasons"].values()) == row["abstained"]
    assert "dark s3" in captured.err  # progress per corruption
    assert table["header"]["model runtime"].startswith("keras")
    assert json.loads(out.with_suffix(".json").read_text())["rows"] == table["rows"]
    assert "| rotate180 | - |" in out.read_text()

    # The clean row is what `predict` itself says about the same videos.
    assert main(["predict", "--run", str(run), "--json", *(str(p) for p, _, _ in rows)]) in (0, 1)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    clean = [r for r in table["rows"][0]["results"] if "age" in r]
    assert [p["age"] for p in printed] == [r["age"] for r in clean]
    assert [p["interval"] for p in printed] == [r["interval"] for r in clean]
