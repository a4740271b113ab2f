"""The bench results as Markdown: a table of each figure with its spread and its ratio to its own reference,
and the performance page (``docs/performance.md``) that a full ``make bench`` rewrites around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Where a full bench writes its page, relative to the working directory (``make bench`` runs in the root).
PERFORMANCE_PAGE = Path("docs/performance.md")


def format_bench(results: dict[str, Any]) -> str:
    """The bench results as a Markdown table a person can read."""
    prep, inp, trn, inf = results["prepare"], results["input"], results["training"], results["inference"]
    machine = results["machine"]
    lines = [
        (f"Measured {results['date']} on {machine['cpu_count']} cores ({machine['processor']}), "
         f"TF {machine['tensorflow']}; median (min-max) of {results['sizes']['repeats']} repeats."),
        "",
        "| what | figure | ratio to its reference |",
        "|---|---|---|",
        *_prepare_rows(prep, "with the landmark stream: " if prep.get("landmarks") else "",
                       f"{prep['videos']} videos of the dataset"),
        *(_prepare_rows(prep["pixels_only"], "align.landmarks off: ", f"{prep['videos']} videos")
          if "pixels_only" in prep else []),
        *_prepare_rows(prep["1080p"], "1080p: ", f"{prep['1080p']['videos']} videos"),
        *(_prepare_rows(prep["1080p_landmarks"], "1080p, with the landmark stream: ",
                        f"{prep['1080p']['videos']} videos") if "1080p_landmarks" in prep else []),
        *(_prepare_rows(prep["1080p_face_mesh"], "1080p, align.use_face_mesh: ", f"{prep['1080p']['videos']} videos")
          if "1080p_face_mesh" in prep else []),
        *_jitter_rows(prep),
        (f"| training input: tf.data pipeline | {inp['pipeline_steps_per_s']:.2f} steps/s | "
         f"{inp['ratio']:.2f} of in-memory batches ({inp['memory_steps_per_s']:.2f} steps/s) |"),
        (f"| training step (B={trn['batch_size']}, T={trn['clip_length']}, {trn['params']:,} params) | "
         f"{_spread(trn['seconds_per_step'], 's/step', 3)}, {trn['clips_per_second']:.1f} clips/s | |"),
    ]
    for row in trn.get("variants", []):
        lines.append(f"| model {row['variant']} forward (batch 1, {row['params']:,} params) | "
                     f"{row['ms_median']:.2f} ms ({row['ms_min']:.2f}-{row['ms_max']:.2f}) | |")
    for name, entry in inf["runtimes"].items():
        lines.append(f"| inference {name} (batch 1, T={inf['clip_length']}) | {_spread(entry['ms'], 'ms', 2)}, "
                     f"{entry['size_bytes'] / 1024:.0f} KiB | {entry['speedup_over_keras']:.2f}x Keras |")
    predict = inf["predict"]
    for name in (k for k in predict if k not in ("video_seconds", "fps")):
        lines.append(f"| predict end to end, {name} | {_spread(predict[name], 's per s of 30 fps video', 2)} | |")
    for name, entry in inf.get("predict_process", {}).items():
        if isinstance(entry, dict) and "whole_s" in entry:
            lines.append(f"| predict process, {name} runtime ({entry['runtime']}) | start-up to decoding "
                         f"{_spread(entry['startup_to_decode_s'], 's', 2)}, whole {_spread(entry['whole_s'], 's', 2)} | "
                         f"{entry['ratio_to_decode_detect']:.2f}x decode+detect "
                         f"({inf['predict_process']['decode_detect_s']['median']:.2f} s) |")
    for name, entry in results["memory"].items():
        ratio = f", {entry['ratio_to_clip']:.2f}x the clip" if "ratio_to_clip" in entry else ""
        lines.append(f"| peak RSS, {name} | {entry['peak_rss_mib']:.0f} MiB | exit {entry['exit_code']}{ratio} |")
    return "\n".join(lines) + "\n"


def performance_page(results: dict[str, Any], command: str) -> str:
    """The performance page: a header naming the command, the date and the machine, then the bench table.

    The page is the bench's output and nothing else, so it cannot drift from what was measured; a person's
    reading of the figures belongs elsewhere.
    """
    machine = results["machine"]
    minutes = f" in {results['seconds'] / 60:.1f} minutes" if "seconds" in results else ""
    return "\n".join([
        f"<!-- written by: {command} on {results['date']} -->",
        "",
        "# Performance",
        "",
        (f"Measured by `{command}` on {results['date']}{minutes}, on {machine.get('platform', 'n/a')} "
         f"({machine['processor']}, {machine['cpu_count']} cores, Python {machine.get('python', 'n/a')}, "
         f"TF {machine['tensorflow']})."),
        "",
        ("Every speed is a median of repeats with its range, and a ratio to its own reference measured side "
         "by side in the same run: decode-only for prepare, in-memory batches for the input pipeline, Keras "
         "for the inference runtimes. A full `make bench` rewrites this page (a `--quick` run does not); do "
         "not edit it by hand."),
        "",
        format_bench(results),
    ])


def _prepare_rows(figures: dict[str, Any], prefix: str, videos: str) -> list[str]:
    """Decode-only, prepare (1 process, detect_every=2, 2 processes where measured) and any rejects."""
    rows = [
        f"| {prefix}decode only ({videos}) | {_spread(figures['decode_fps'], 'frames/s')} | reference |",
        (f"| {prefix}prepare, 1 process (decode+detect+align+write) | {_spread(figures['prepare_1_fps'], 'frames/s')} | "
         f"{figures['ratio_prepare_to_decode']:.2f} of decode-only |"),
    ]
    if "prepare_1_detect_every_2_fps" in figures:
        rows.append(f"| {prefix}prepare, 1 process, align.detect_every=2 | "
                    f"{_spread(figures['prepare_1_detect_every_2_fps'], 'frames/s')} | "
                    f"{figures['ratio_prepare_detect_every_2_to_decode']:.2f} of decode-only |")
    if "prepare_2_fps" in figures:
        rows.append(f"| {prefix}prepare, 1 vs 2 processes ({figures.get('parallel_videos', figures['videos'])} videos) | "
                    f"{_spread(figures['prepare_2_fps'], 'frames/s')} with 2 | "
                    f"{figures['speedup_2_over_1']:.2f}x over 1 process |")
    if figures.get("rejected"):
        rows.append(f"| {prefix}videos prepare rejected (their frames count as work) | {figures['rejected']} of "
                    f"{figures['videos']} | |")
    return rows


def _jitter_rows(prep: dict[str, Any]) -> list[str]:
    """Still-head crop jitter with the pixel-only alignment and with the face mesh."""
    rows = []
    for key, name in (("jitter", "pixel-only"), ("jitter_face_mesh", "face mesh")):
        if key in prep:
            jitter = prep[key]
            rows.append(f"| still-head crop jitter, {name} ({jitter['crop_size']} px crop) | "
                        f"{jitter['crop_jitter_px']:.3f} px | detected eyes {jitter['detected_jitter_px']:.3f} px |")
    return rows


def _spread(entry: dict[str, Any], unit: str, digits: int = 1) -> str:
    return f"{entry['median']:.{digits}f} {unit} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"
