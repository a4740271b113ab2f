"""When predict will not answer, or answers with a caveat: dark, turned, blurred and damaged faces, several
persons in view, and the age-threshold decision. The clips are a real face (scikit-image's astronaut)."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest

from age_estimation.cli.main import main
from tests.inference import face_frame
from tests.tiny_run import make_tiny_run, write_run_facts


def write_clip(path, frames, fps=10):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    # The limit is on the crop at align.crop_size: the tiny model's 32 px crops are sharper per pixel.
    run = make_tiny_run(root, ["inference.quality.min_sharpness=100"])
    carded = root / "carded" / run.name
    shutil.copytree(run, carded)
    write_run_facts(carded)
    faces = [face_frame(i % 4) for i in range(16)]
    return carded, {
        "clean": write_clip(root / "clean.mp4", faces),
        "dark": write_clip(root / "dark.mp4", [(f * 0.06).astype(np.uint8) for f in faces]),
        "upside_down": write_clip(root / "upside_down.mp4", [f[::-1, ::-1] for f in faces]),
        "blurred": write_clip(root / "blurred.mp4", [cv2.GaussianBlur(f, (0, 0), 2) for f in faces]),
        "two": write_clip(root / "two.mp4", [np.concatenate([f, f[:, ::-1]], axis=1) for f in faces]),
    }


def predict(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("clip", "reason"), [
    ("dark", r"face too dark: mean brightness \d of 255 \(at least 40\)"),
    ("upside_down", r"face turned by about 180 degrees: .* rotate the video so the face is upright"),
    ("blurred", r"face too blurred: sharpness \d+\.\d \(at least 100\.0\)"),
])
def test_a_face_unlike_any_the_model_judges_is_refused_with_its_reason(clips, capsys, clip, reason):
    run, paths = clips
    code, out, err = predict(capsys, paths["clean"], paths[clip], "--run", run)
    assert code == 1
    assert out.count("age ") == 1 and str(paths["clean"]) in out
    assert re.search(re.escape(f"error: {paths[clip]}: ") + reason, err), err


def test_a_second_person_is_noted_and_all_faces_estimates_each(clips, capsys):
    run, paths = clips
    code, out, _ = predict(capsys, paths["two"], "--run", run, "--json")
    result = json.loads(out)
    assert code == 0 and result["faces_seen"] == 2 and len(result["faces"]) == 2
    assert any("2 faces in view" in note for note in result["notes"]) and result["face"] is None
    code, out, _ = predict(capsys, paths["two"], "--run", run, "--json", "--all-faces")
    each = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["face"]["index"] for r in each] == [0, 1]
    left, right = (r["face"]["box"][0] for r in each)
    assert min(left, right) < 160 <= max(left, right)  # one face each side
    code, out, _ = predict(capsys, paths["two"], "--run", run, "--all-faces")
    assert code == 0 and "[face 0, box (" in out and "[face 1, box (" in out


def test_at_least_answers_from_the_interval(clips, capsys):
    run, paths = clips
    code, out, _ = predict(capsys, paths["clean"], "--run", run, "--json", "--at-least", "18")
    result = json.loads(out)
    low, high = result["interval"]
    expected = "yes" if low >= 18 else "no" if high < 18 else "cannot tell"
    assert code == 0 and result["at_least"] == {"age": 18.0, "answer": expected, "coverage": 0.9}
    code, out, _ = predict(capsys, paths["clean"], "--run", run, "--at-least", "200")
    assert code == 0 and "at least 200? no" in out
    code, out, _ = predict(capsys, paths["clean"], "--run", run, "--at-least", "0")
    assert "at least 0? yes" in out


def test_at_least_without_an_interval_is_a_usage_error(clips, capsys):
    run, paths = clips
    bare = run.parent.parent / "runs"  # the tiny run without interval.json
    code, _, err = predict(capsys, paths["clean"], "--run", next(bare.iterdir()), "--at-least", "18")
    assert code == 2 and "--at-least needs the model's calibrated interval" in err


def test_an_atypical_input_gets_a_wider_interval_or_is_refused_beyond_the_calibrated_limit(clips, capsys, tmp_path):
    from age_estimation.inference.atypicality import MEASURES, Atypicality, input_measures

    run, paths = clips
    code, out, _ = predict(capsys, paths["clean"], "--run", run, "--json")
    plain = json.loads(out)
    assert code == 0 and plain["atypicality"] is None and plain["flip_gap"] is not None
    values = input_measures(plain["quality"], plain["flip_gap"])
    # A calibration whose clean videos were the clip with a surer detector: its score is 3 spreads too low.
    medians = [float(np.log(max(values[m.name], 1e-3)) if m.log else values[m.name]) for m in MEASURES]
    medians[[m.name for m in MEASURES].index("detector_score")] += 0.03
    spreads = [0.01] * len(MEASURES)
    for limit, name in ((100.0, "widened"), (2.0, "refused")):
        copy = tmp_path / name / run.name
        shutil.copytree(run, copy)
        interval = json.loads((copy / "interval.json").read_text())
        widening = Atypicality(tuple(medians), tuple(spreads), (1.0,), (2.0,), limit, 40)
        (copy / "interval.json").write_text(json.dumps({**interval, "atypicality": widening.to_json()}))
        code, out, err = predict(capsys, paths["clean"], "--run", copy, "--json")
        if name == "widened":
            result = json.loads(out)
            low, high = result["interval"]
            plain_low, plain_high = plain["interval"]
            assert code == 0 and result["atypicality"] == pytest.approx(3.0, abs=0.01)
            assert high - low == pytest.approx(2 * (plain_high - plain_low), abs=0.01) or low == 0.0
            assert any("face detector score" in n and "interval widened 2.00x" in n for n in result["notes"])
        else:
            assert code == 1 and "input unlike any video the interval was calibrated on: atypicality 3.0" in err
            assert "calibrated up to 2.0" in err
