"""The bench table: every measured figure has a row; rejected videos are shown only when there are some."""

from age_estimation.bench.report import format_bench, performance_page
from age_estimation.bench.suite import bench_command
from age_estimation.config import load_config
from tests.conftest import REPO


def _spread(value: float) -> dict:
    return {"median": value, "min": value, "max": value, "n": 1}


def _prepare(rejected: int, workers: bool = True) -> dict:
    figures = {"videos": 3, "rejected": rejected, "decode_fps": _spread(100.0), "prepare_1_fps": _spread(50.0),
               "prepare_1_detect_every_2_fps": _spread(80.0), "ratio_prepare_to_decode": 0.5,
               "ratio_prepare_detect_every_2_to_decode": 0.8}
    if workers:
        figures.update(prepare_2_fps=_spread(90.0), speedup_2_over_1=1.8)
    return figures


def _results(rejected: int) -> dict:
    return {
        "date": "2026-01-01", "sizes": {"repeats": 1},
        "machine": {"cpu_count": 2, "processor": "cpu", "tensorflow": "2.21.0"},
        "prepare": {**_prepare(rejected), "1080p": _prepare(0, workers=False),
                    "1080p_landmarks": _prepare(0, workers=False),
                    "jitter": {"crop_size": 112, "crop_jitter_px": 0.25, "detected_jitter_px": 0.5}},
        "input": {"pipeline_steps_per_s": 4.0, "memory_steps_per_s": 5.0, "ratio": 0.8},
        "training": {"batch_size": 8, "clip_length": 16, "params": 1000, "seconds_per_step": _spread(0.2),
                     "clips_per_second": 40.0,
                     "variants": [{"variant": "siam", "params": 1000, "ms_median": 2.0, "ms_min": 1.0, "ms_max": 3.0}]},
        "inference": {"clip_length": 16, "runtimes": {"keras": {"ms": _spread(9.0), "size_bytes": 2048,
                                                                "speedup_over_keras": 1.0}},
                      "predict": {"video_seconds": 2.0, "fps": 30, "keras": _spread(0.1)}},
        "memory": {"prepare": {"peak_rss_mib": 600.0, "exit_code": 0},
                   "predict, 1080p 115 s video": {"peak_rss_mib": 660.0, "exit_code": 0, "ratio_to_clip": 1.1}},
    }


def test_every_section_has_its_rows():
    table = format_bench(_results(rejected=0))
    for row in ("| decode only (3 videos of the dataset) | 100.0 frames/s (100.0-100.0) | reference |",
                "| prepare, 1 vs 2 processes (3 videos) | 90.0 frames/s (90.0-90.0) with 2 | 1.80x over 1 process |",
                "| 1080p: prepare, 1 process, align.detect_every=2 | 80.0 frames/s (80.0-80.0) | 0.80 of decode-only |",
                ("| 1080p, with the landmark stream: prepare, 1 process (decode+detect+align+write) | 50.0 frames/s "
                 "(50.0-50.0) | 0.50 of decode-only |"),
                "| still-head crop jitter, pixel-only (112 px crop) | 0.250 px | detected eyes 0.500 px |",
                "| model siam forward (batch 1, 1,000 params) | 2.00 ms (1.00-3.00) | |",
                "| inference keras (batch 1, T=16) | 9.00 ms (9.00-9.00), 2 KiB | 1.00x Keras |",
                "| peak RSS, prepare | 600 MiB | exit 0 |",
                "| peak RSS, predict, 1080p 115 s video | 660 MiB | exit 0, 1.10x the clip |"):
        assert row in table.splitlines(), row
    assert "1080p: prepare, 1 vs 2 processes" not in table and "rejected" not in table


def test_rejected_videos_are_counted_in_the_table():
    assert "| videos prepare rejected (their frames count as work) | 1 of 3 | |" in format_bench(_results(1))


def test_the_performance_page_is_the_bench_table_under_a_header_naming_command_date_and_machine():
    results = _results(0)
    results["machine"].update(platform="Linux-x86_64", python="3.11.7")
    results["seconds"] = 714.0
    page = performance_page(results, "age-estimation bench --config pipelines/default.yaml")
    lines = page.splitlines()
    assert lines[0] == "<!-- written by: age-estimation bench --config pipelines/default.yaml on 2026-01-01 -->"
    assert lines[4] == ("Measured by `age-estimation bench --config pipelines/default.yaml` on 2026-01-01 in "
                        "11.9 minutes, on Linux-x86_64 (cpu, 2 cores, Python 3.11.7, TF 2.21.0).")
    assert page.endswith(format_bench(results)) and "| peak RSS, prepare | 600 MiB | exit 0 |" in lines


def test_the_page_names_the_config_the_bench_read():
    config = REPO / "pipelines" / "default.yaml"
    assert bench_command(load_config(config), quick=False) == f"age-estimation bench --config {config}"
    assert bench_command(load_config(None), quick=True) == "age-estimation bench --quick"
