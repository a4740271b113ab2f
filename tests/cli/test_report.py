"""``age-estimation report``: the results page from hand-written run folders (the files training writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from age_estimation.cli.main import main
from age_estimation.data.cache import FORMAT_VERSION, INDEX_NAME
from age_estimation.experiments.report import results_markdown
from age_estimation.experiments.run_folders import read_study
from age_estimation.runs import CONFIG_NAME, METRICS_NAME, PREDICTIONS_NAME

# Held-out videos per fold as (video id, true age); the subject is the first two characters of the id.
FOLD_VIDEOS = {0: [("s1a", 30.0), ("s1b", 30.0), ("s2a", 60.0)], 1: [("s3a", 20.0), ("s4a", 50.0)]}
MODEL_KEYS = {"siam_dynamics": {"variant": "siam", "dynamics": True},
              "frame_average": {"variant": "frame_average", "dynamics": True}}


def write_run(folder: Path, variant: str, fold: int, signed: list[float], train_subjects: int = 0,
              data_path: str = "data/synthetic", cache_dir: str = "data/cache/synthetic",
              interval: tuple[float, float] = (0.8, 10.0), result: bool = True) -> Path:
    """A finished ablation run as training leaves it: config.yaml, metrics.json, the held-out predictions
    CSV (``write_predictions_csv``'s columns) and the ablation's result.json; ``signed``: the errors."""
    folder.mkdir(parents=True)
    rows = [(vid, age, age + e) for (vid, age), e in zip(FOLD_VIDEOS[fold], signed)]
    lines = ["video_id,subject,label,age,predicted,abs_error,fold"]
    lines += [f"{vid},{vid[:2]},posed,{age:.2f},{pred:.2f},{abs(pred - age):.2f}," for vid, age, pred in rows]
    (folder / PREDICTIONS_NAME).write_text("\n".join(lines) + "\n")
    mae = sum(abs(e) for e in signed) / len(signed)
    coverage, width = interval
    metrics = {"config": "default", "heldout": {"count": len(rows), "mae": mae, "mean_predictor_mae": 15.0},
               "oracle_floor_mae": 3.5, "fold": 0,
               "counts": {"subjects_train": train_subjects or 256, "subjects_heldout": 80},
               "interval": {"coverage": 0.9, "empirical_coverage": coverage, "mean_width": width,
                            "videos": len(rows), "mae": mae, "calibration_mae": 4.0, "by_age_group": {}}}
    (folder / METRICS_NAME).write_text(json.dumps(metrics))
    data = {"source": "synthetic", "path": data_path, "cache_dir": cache_dir, "clip_length": 16,
            "heldout_fold": fold, "train_subjects": train_subjects}
    config = {"name": "default", "data": data, "model": MODEL_KEYS[variant]}
    (folder / CONFIG_NAME).write_text(yaml.safe_dump(config))
    if result:
        (folder / "result.json").write_text(json.dumps({
            "variant": variant, "fold": fold, "run_dir": str(folder), "mae": mae, "mean_predictor_mae": 15.0,
            "temporal_ratio": 3.0 + fold, "spatial_ratio": 2.0, "oracle_mae": 0.5,
            "cue_usage": {"smile_onset": {"model": 0.1 * (fold + 1), "oracle": 0.3,
                                          **({"slope_share": 0.4} if fold == 0 else {})}}}))
    return folder


def write_ablation(root: Path, errors: dict[str, dict[int, list[float]]], **run_keys) -> Path:
    """An ablation folder: ``<variant>-fold<i>/`` for each variant's folds."""
    for variant, folds in errors.items():
        for fold, signed in folds.items():
            write_run(root / f"{variant}-fold{fold}", variant, fold, signed, **run_keys)
    return root


# siam_dynamics: |errors| 1, 0, 2 | 1, 1 -> pooled 1.0; frame_average: 2, 0, 2 | 2, 0 -> pooled 1.2
ERRORS = {"frame_average": {0: [2, 0, 2], 1: [0, 2]}, "siam_dynamics": {0: [1, 0, -2], 1: [1, -1]}}


def test_the_ablation_tables_come_from_the_run_folders(tmp_path: Path) -> None:
    study = read_study(write_ablation(tmp_path / "ablation", ERRORS))
    page = results_markdown([study], "age-estimation report ablation", today="2026-12-05", machine="test box")
    lines = page.splitlines()
    assert lines[0] == "<!-- written by: age-estimation report ablation on 2026-12-05 -->"
    assert lines[4] == "Written by `age-estimation report ablation` on 2026-12-05, on test box."
    # the reference is siam_dynamics (the ablation's first entry), though frame_average sorts first by name
    assert ("| variant | folds | held-out MAE per fold (years) | mean ± std | pooled MAE "
            "| x oracle floor [95% CI] | minus siam_dynamics [95% CI] |") in lines
    row = next(line for line in lines if line.startswith("| siam_dynamics | 0, 1 |"))
    assert row.startswith("| siam_dynamics | 0, 1 | 1.00 / 1.00 | 1.00 ± 0.00 | 1.00 | 2.00x (no interval") \
        and row.endswith("| reference |")
    # frame_average minus siam_dynamics per video: +1, 0, 0 | -1, +1 -> +0.2, paired by subject
    row = next(line for line in lines if line.startswith("| frame_average |"))
    assert row.startswith("| frame_average | 0, 1 | 1.33 / 1.00 | 1.17 ± 0.17 | 1.20 | 2.40x (no interval")
    difference = row.split(" | ")[-1]
    assert difference.startswith("+0.20 [") and difference.endswith("] |")
    low, high = (float(x) for x in difference[len("+0.20 ["):-3].split(", "))
    assert low <= 0.2 <= high
    assert "| siam_dynamics | 90% | 80.0% / 80.0% | 80.0% | 10.0 / 10.0 |" in lines
    assert "| siam_dynamics | 3.00 / 4.00 | 3.00 | 2.00 / 2.00 | 2.00 |" in lines
    assert "| siam_dynamics | +0.15 |" in lines and "| oracle | +0.30 |" in lines
    shares = lines[next(i for i, line in enumerate(lines) if line.startswith("Slope share")):]
    assert shares[2:6] == ["| variant | smile_onset |", "|---|---|", "| siam_dynamics | +0.40 |",
                          "| frame_average | +0.40 |"]
    assert "T = 16; training subjects per run 256; held-out subjects per fold 80" in page
    assert "## Learning curve" not in page


def test_the_oracle_floor_gets_its_interval_from_the_ground_truth(tmp_path: Path) -> None:
    data, cache = tmp_path / "synthetic", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    videos = [vid for rows in FOLD_VIDEOS.values() for vid, _ in rows]
    (cache / INDEX_NAME).write_text(json.dumps({"format": FORMAT_VERSION, "videos": {
        vid: {"source": str(data / f"{vid}.mp4")} for vid in videos}}))
    (data / "ground_truth.json").write_text(json.dumps({"videos": {
        f"{vid}.mp4": {"age": age, "oracle_age": age + 0.5}
        for rows in FOLD_VIDEOS.values() for vid, age in rows}}))
    study = read_study(write_ablation(tmp_path / "ablation", {"siam_dynamics": ERRORS["siam_dynamics"]},
                                      data_path=str(data), cache_dir=str(cache)))
    row = next(line for line in results_markdown([study], "c", today="d", machine="m").splitlines()
               if line.startswith("| siam_dynamics | 0, 1 |"))
    ratio = row.split(" | ")[5]
    assert ratio.startswith("2.00x [") and "no interval" not in ratio


def test_the_learning_curve_pairs_variants_at_each_training_size(tmp_path: Path) -> None:
    small = write_ablation(tmp_path / "curve-64", {"siam_dynamics": {0: [4, 4, 4]},
                                                   "frame_average": {0: [5, 5, 5]}}, train_subjects=64)
    full = write_ablation(tmp_path / "kfold", {"siam_dynamics": {0: [1, 1, 1]},
                                               "frame_average": {0: [2, 0, 2]}})
    page = results_markdown([read_study(full), read_study(small)], "c", today="d", machine="m")
    lines = page.splitlines()
    assert "## Learning curve: `data/synthetic`" in lines
    header = "| training subjects | folds | siam_dynamics MAE | frame_average MAE | " \
             "frame_average minus siam_dynamics [95% CI] |"
    assert header in lines
    rows = lines[lines.index(header) + 2:lines.index(header) + 4]
    assert rows[0].startswith("| 64 | 0 | 4.00 | 5.00 | +1.00 [+1.00, +1.00] |")
    assert rows[1].startswith("| all (256) | 0 | 1.00 | 1.33 | +0.33 [")


def test_single_runs_and_unfinished_folds(tmp_path: Path) -> None:
    run = write_run(tmp_path / "default-20261205-101010", "siam_dynamics", 0, [1, 1, -1], result=False)
    ablation = write_ablation(tmp_path / "ablation", {"siam_dynamics": {0: [1, 0, -2]}})
    (ablation / "siam_dynamics-fold1" / "checkpoints").mkdir(parents=True)  # still training: no metrics yet
    page = results_markdown([read_study(ablation), read_study(run)], "c", today="d", machine="m")
    assert "Not finished (left out): `siam_dynamics-fold1`." in page
    assert (f"| `{run}` | siam_dynamics | 0 | 1.00 | 3.50 | 15.00 | 90%, 80.0%, 10.0 years | n/a | n/a |"
            in page.splitlines())


def test_the_command_writes_the_page_and_refuses_a_folder_without_runs(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    ablation = write_ablation(tmp_path / "ablation", ERRORS)
    out = tmp_path / "docs" / "results.md"
    assert main(["report", str(ablation), "--out", str(out), "--reference", "frame_average"]) == 0
    assert capsys.readouterr().out.strip() == f"written: {out}"
    page = out.read_text()
    assert page.startswith(f"<!-- written by: age-estimation report {ablation} --reference frame_average "
                           f"--out {out} on ")
    assert "| minus frame_average [95% CI] |" in page and "cores" in page.splitlines()[4]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert f"error: {empty}: neither a run folder" in capsys.readouterr().out


def test_compare_puts_two_ablation_folders_in_one_paired_table(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """The same variant trained two ways: rows labelled by folder, differences paired on the shared folds
    against the first folder's, and a single run refused."""
    scratch = write_ablation(tmp_path / "scratch", {"siam_dynamics": {0: [1.0, -1.0, 2.0], 1: [1.0, 1.0]}})
    other = write_ablation(tmp_path / "backbone", {"siam_dynamics": {0: [2.0, -2.0, 3.0], 1: [2.0, 2.0]}})
    out = tmp_path / "compare.md"
    assert main(["report", str(scratch), str(other), "--compare", "--out", str(out)]) == 0
    page = out.read_text()
    assert "| minus siam_dynamics (scratch) [95% CI] |" in page
    row = next(line for line in page.splitlines() if line.startswith("| siam_dynamics (backbone) | 0, 1 |"))
    assert "+1.00" in row  # every error one year larger, paired on the same five videos
    assert main(["report", str(scratch), str(scratch / "siam_dynamics-fold0"), "--compare"]) == 2
    assert "--compare takes ablation folders" in capsys.readouterr().out


def test_cue_usage_is_scored_on_the_pooled_held_out_videos(tmp_path: Path, tiny_config) -> None:
    """Two folds whose predictions are the oracle's ages: scored again from the predictions CSVs pooled, every
    cue's slope share is 1 whatever the runs' records say."""
    from age_estimation.data.cache import read_index
    from age_estimation.evaluation.attention import load_ground_truth, truth_rows
    from age_estimation.experiments.report import pooled_cue_usage
    from age_estimation.experiments.run_folders import RunRecord

    cfg = tiny_config()
    truth = load_ground_truth(Path(cfg.data.path))
    ids = sorted(read_index(cfg.data.cache_dir)["videos"])
    records = dict(truth_rows(ids, truth, Path(cfg.data.path), cfg.data.cache_dir))
    config = {"data": {"source": "synthetic", "path": cfg.data.path, "cache_dir": cfg.data.cache_dir}}
    runs = []
    for fold in (0, 1):
        folder = tmp_path / f"siam_dynamics-fold{fold}"
        folder.mkdir()
        lines = ["video_id,subject,label,age,predicted,abs_error,fold"]
        lines += [f"{ids[row]},s{row},posed,{v['age']},{v['oracle_age']},0,{fold}"
                  for row, v in records.items() if row % 2 == fold]
        (folder / PREDICTIONS_NAME).write_text("\n".join(lines) + "\n")
        stale = {"cue_usage": {"smile_onset": {"model": 0.0, "oracle": 0.3, "slope_share": 0.0}}}
        runs.append(RunRecord(folder, "siam_dynamics", fold, {}, stale, config))
    usage = pooled_cue_usage(runs)
    assert set(usage) == set(truth["cue_model"])
    for cue, figures in usage.items():
        assert figures["slope_share"] == pytest.approx(1.0), cue
    no_truth = [RunRecord(r.path, r.variant, r.fold, {}, r.result, {"data": {"source": "csv"}}) for r in runs]
    assert pooled_cue_usage(no_truth) is None
