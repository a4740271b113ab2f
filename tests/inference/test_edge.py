"""The edge path (video -> MediaPipe alignment -> LiteRT) runs with TensorFlow made unimportable."""

import json
import subprocess
import sys
import textwrap

import pytest

from age_estimation.inference.edge import EdgeEstimator
from age_estimation.inference.predict import predict_videos
from age_estimation.inference.runtimes import KerasPredictor
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference import write_video
from tests.inference.dynamics_run import dynamics_export
from tests.tiny_run import CLIP


@pytest.fixture(scope="module")
def setup(tiny_export, tmp_path_factory):
    """The session's tiny export (run, config, float32 TFLite file), a face video and a faceless one."""
    root = tmp_path_factory.mktemp("edge")
    face = write_video(root / "face.mp4", "F" * 12)
    blank = write_video(root / "blank.mp4", "." * 6)
    return tiny_export.run, tiny_export.cfg, tiny_export.tflite, face, blank


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pixels", "landmarks"])
def test_edge_path_runs_without_tensorflow(setup, tmp_path_factory, kind, tmp_path):
    run, cfg, tflite, face, blank = setup
    if kind == "landmarks":  # the face mesh runs with LiteRT in the aligner and feeds the model's stream
        shared = dynamics_export(tmp_path_factory)
        run, cfg, tflite = shared.run, shared.cfg, shared.tflite("float32")
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
        sys.modules["keras"] = None
        try:
            import tensorflow
            raise SystemExit("tensorflow was importable")
        except ImportError:
            pass
        from age_estimation.inference.edge import main
        code = main([{str(tflite)!r}, {str(face)!r}, {str(blank)!r}, "--threads", "1"])
        heavy = sorted(m for m in list(sys.modules) if m.split(".")[0] in ("tensorflow", "keras")
                       and sys.modules[m])
        print(json.dumps({{"code": code, "heavy": heavy}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-2000:]
    result, status = lines[0], lines[-1]
    assert status == {"code": 1, "heavy": []}
    assert f"{blank}: no face found" in done.stderr
    assert "INFO: Created TensorFlow Lite" not in done.stderr  # LiteRT's delegate line stays hidden
    assert result["path"] == str(face) and result["runtime"] == "tflite" and result["frames_used"] == 12
    keras = KerasPredictor(run / "model.keras")
    assert keras.landmark_points == (LANDMARK_COUNT if kind == "landmarks" else 0)
    reference = next(iter(predict_videos([face], keras, cfg.align, CLIP)))
    assert reference.window_starts == result["window_starts"]
    print(kind, "edge parity", abs(result["age"] - reference.age))
    assert abs(result["age"] - reference.age) <= 0.01


def test_missing_sidecar_is_a_clear_error(setup, tmp_path):
    _, _, tflite, _, _ = setup
    lonely = tmp_path / "model.tflite"
    lonely.write_bytes(tflite.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"model\.json: the sidecar"):
        EdgeEstimator(lonely)
