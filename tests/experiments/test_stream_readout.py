"""The linear readers of the landmark stream: their features, their ridge and a run on the tiny data."""

import numpy as np
import pytest

from age_estimation.experiments.stream_readout import (
    DYNAMIC_CUES,
    TRACK_POINTS,
    ablation_predictions,
    fit_ridge,
    predict_ridge,
    readout_markdown,
    smile_track,
    stream_readout,
    track_features,
)
from age_estimation.video.landmark_set import LANDMARK_INDICES


def _clip_with_lift(lift, found):
    """A clip whose landmarks give ``lift`` as smile lift (mouth corners raised above the lip centre)."""
    points = np.zeros((len(lift), len(LANDMARK_INDICES), 2), np.float32)
    for vertex in (61, 291):
        points[:, LANDMARK_INDICES.index(vertex), 1] = -np.asarray(lift)
    return {"landmarks": points, "landmark_found": np.asarray(found, np.uint8)}


def test_smile_track_fills_mesh_misses_and_resamples():
    lift = np.array([0.0, 9.0, 2.0, 3.0, 9.0, 5.0])
    track = smile_track(_clip_with_lift(lift, [1, 0, 1, 1, 0, 1]), points=11)
    np.testing.assert_allclose(track, np.linspace(0.0, 5.0, 11), atol=1e-6)  # the 9s were misses
    assert smile_track(_clip_with_lift(lift, [1, 0, 0, 0, 0, 1])) is None


def test_rescaled_sorted_track_ignores_the_smiles_amplitude_and_rest_level():
    track = np.sin(np.linspace(0, 3, TRACK_POINTS)) ** 2
    base, stronger = track_features(track, False), track_features(0.05 + 3.0 * track, True)
    assert base.shape == (4 * TRACK_POINTS + 1,)
    rescaled = slice(3 * TRACK_POINTS - 1, 4 * TRACK_POINTS - 1)
    np.testing.assert_allclose(stronger[rescaled], base[rescaled], atol=1e-9)
    assert stronger[-2] == pytest.approx(3.0 * base[-2]) and (base[-1], stronger[-1]) == (0.0, 1.0)
    slower = np.sin(np.linspace(0, 3, TRACK_POINTS) ** 2) ** 2  # the same swing, another timing
    assert not np.allclose(track_features(slower, False)[rescaled], base[rescaled], atol=1e-2)


def test_ridge_recovers_a_linear_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1]
    y = 2.0 * x[:, 0] - 0.3 * x[:, 1] + 20.0 * x[:, 2] + 40.0
    np.testing.assert_allclose(predict_ridge(fit_ridge(x, y, 1e-6), x[:5]), y[:5], atol=1e-3)
    shrunk = predict_ridge(fit_ridge(x, y, 1e9), x)  # all weight penalised away: the mean, not zero
    np.testing.assert_allclose(shrunk, y.mean(), atol=1e-3)


def test_the_readers_table_shows_the_slope_share_where_the_scores_carry_it():
    usage = {"smile_onset": 0.1, "smile_amplitude": 0.2, "smile_apex": None}
    share = {"smile_onset": 0.9, "smile_amplitude": -0.25, "smile_apex": None}
    summary = {"folds": 2, "videos": 10, "skipped": 0, "readers": {
        "smile track": {"mae": 5.0, "cue_usage": usage, "oracle_cue_usage": usage, "cue_slope_share": share},
        "older record": {"mae": 6.0, "cue_usage": usage}}}
    lines = readout_markdown(summary).splitlines()
    assert "| smile track | 5.00 | +0.10 | +0.20 | n/a |" in lines
    assert "| older record | 6.00 | +0.10 | +0.20 | n/a |" in lines
    shares = lines[next(i for i, line in enumerate(lines) if line.startswith("Slope share")):]
    assert shares[2:] == ["| reader | " + " | ".join(DYNAMIC_CUES) + " |", "|---|---|---|---|",
                          "| smile track | +0.90 | -0.25 | n/a |"]
    del summary["readers"]["smile track"]["cue_slope_share"]
    assert "Slope share" not in readout_markdown(summary)


@pytest.mark.slow
def test_readout_scores_every_reader_on_the_synthetic_folds(tiny_config):
    cfg = tiny_config()
    summary = stream_readout(cfg, appearance_noise=(0.1,))
    assert summary["videos"] + summary["skipped"] >= 10 and summary["folds"] == cfg.data.folds
    assert list(summary["readers"]) == ["smile track", "regional cues, noise 0.1",
                                        "regional cues, noise 0.1 + smile track"]
    for scores in summary["readers"].values():
        assert 0 < scores["mae"] < 60
        assert set(DYNAMIC_CUES) <= set(scores["cue_usage"]) == set(scores["cue_slope_share"])
    assert "| smile track |" in readout_markdown(summary)


def test_readout_stacks_the_track_on_an_ablations_held_out_ages(tiny_config, tmp_path):
    from age_estimation.data.cache import read_index

    cfg = tiny_config()
    videos = sorted(read_index(cfg.data.cache_dir)["videos"].items())
    rng = np.random.default_rng(1)
    for fold, part in enumerate((videos[::2], videos[1::2])):  # two folds' runs of one variant
        run_dir = tmp_path / f"siam_dynamics-fold{fold}"
        run_dir.mkdir()
        rows = ["video_id,subject,label,age,predicted,abs_error,fold"]
        rows += [f"{vid},{e['subject']},{e['label']},{e['age']},{e['age'] + rng.normal(0, 0.5):.3f},0,{fold}"
                 for vid, e in part]
        (run_dir / "heldout_predictions.csv").write_text("\n".join(rows) + "\n")
    network = ablation_predictions(tmp_path, "siam_dynamics", cfg.data.folds)
    assert len(network) == len(videos)
    readers = stream_readout(cfg, appearance_noise=(), network=network)["readers"]
    assert list(readers) == ["smile track", "network", "network + smile track"]
    assert readers["network"]["mae"] < 2.0 < readers["smile track"]["mae"]  # the near-exact ages are read
    with pytest.raises(ValueError, match="no siam-fold"):
        ablation_predictions(tmp_path, "siam", cfg.data.folds)


@pytest.mark.slow
def test_readout_refuses_a_cache_without_the_stream(tiny_config, tmp_path):
    from age_estimation.data.prepare import prepare_data

    cfg = tiny_config(f"data.cache_dir={tmp_path / 'cache'}", "align.landmarks=false")
    prepare_data(cfg, progress=False)
    with pytest.raises(ValueError, match="without the landmark stream"):
        stream_readout(cfg)
