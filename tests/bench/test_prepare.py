"""Prepare figures: a video that prepare rejects is counted, never a crash; the dataset's picks all prepare."""

import json

import pytest

from age_estimation.bench.face_video import write_face_video
from age_estimation.bench.measure import BenchSizes
from age_estimation.bench.prepare import prepare_figures, prepared_rows
from age_estimation.config import AlignConfig
from age_estimation.data.cache import INDEX_NAME, read_index
from tests.video_files import write_blank_video

ONE_REPEAT = BenchSizes(videos=3, repeats=1, train_steps=1, latency_runs=1, predict_seconds=1.0, variants=())


@pytest.mark.slow
def test_prepare_figures_count_a_rejected_video_as_work(tmp_path):
    faces = [write_face_video(tmp_path / f"face{i}.mp4", frames=12, size=(160, 160), seed=i) for i in range(2)]
    blank = write_blank_video(tmp_path / "blank.mp4", frames=12, size=(160, 160))
    figures = prepare_figures([*faces, blank], AlignConfig(crop_size=32), ONE_REPEAT)
    assert figures["videos"] == 3 and figures["rejected"] == 1 and figures["unreadable"] == 0
    assert [item["path"] for item in figures["rejected_videos"]] == [str(blank)]
    assert "no face" in figures["rejected_videos"][0]["reason"]
    for key in ("decode_fps", "prepare_1_fps", "prepare_1_detect_every_2_fps", "prepare_2_fps"):
        assert figures[key]["n"] == 1 and figures[key]["median"] > 0, key
    assert 0 < figures["ratio_prepare_to_decode"] and figures["speedup_2_over_1"] > 0


@pytest.mark.slow
def test_the_dataset_videos_picked_are_those_that_prepared(tiny_config, tmp_path):
    cfg = tiny_config()
    index = read_index(cfg.data.cache_dir)
    sources = {entry["source"] for entry in index["videos"].values()}
    rows = prepared_rows(cfg, len(sources) + 5)
    assert {str(row.path) for row in rows} == sources and len(rows) == len(sources)
    assert len(prepared_rows(cfg, 2)) == 2
    # A video that prepare rejected has no index entry: the bench does not pick it.
    rejected = index["videos"].pop(min(index["videos"]))["source"]
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    picked = prepared_rows(tiny_config(f"data.cache_dir={tmp_path}"), 100)
    assert rejected not in {str(row.path) for row in picked} and len(picked) == len(sources) - 1


def test_enough_videos_links_distinct_paths_up_to_the_count(tmp_path):
    from age_estimation.bench.prepare import enough_videos
    from age_estimation.data.cache import video_id_for

    source = write_blank_video(tmp_path / "a.mp4", frames=2)
    paths = enough_videos([source], 5, tmp_path / "more")
    assert len(paths) == 5 and paths[0] == source and len({video_id_for(p) for p in paths}) == 5
    assert all(p.read_bytes() == source.read_bytes() for p in paths)
    assert enough_videos([], 3, tmp_path / "none") == []
