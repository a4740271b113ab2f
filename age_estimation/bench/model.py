"""Parameter count and per-clip forward latency of each model variant (batch 1, T frames).

Run: ``python -m age_estimation.bench.model [--config pipelines/default.yaml] [--runs 30]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from age_estimation.config import VARIANTS


def variant_figures(cfg, runs: int = 30) -> list[dict]:
    """For each variant: parameters and the median (min-max) ms of one compiled forward pass."""
    from age_estimation.models.siam.model import build_siam

    crop, steps = cfg.align.crop_size, cfg.data.clip_length
    rng = np.random.default_rng(0)
    clip = {"frames": rng.integers(0, 256, (1, steps, crop, crop, 3), np.uint8), "mask": np.ones((1, steps), np.float32)}
    rows = []
    for variant in VARIANTS:
        model = build_siam(dataclasses.replace(cfg.model, variant=variant), crop_size=crop)
        for _ in range(3):
            model.predict_on_batch(clip)
        times = []
        for _ in range(runs):
            begin = time.perf_counter()
            model.predict_on_batch(clip)
            times.append((time.perf_counter() - begin) * 1000)
        rows.append({"variant": variant, "params": model.count_params(), "ms_median": statistics.median(times),
                     "ms_min": min(times), "ms_max": max(times)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the table for a pipeline config."""
    from age_estimation.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/default.yaml")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    print(f"batch 1, T={cfg.data.clip_length}, crop {cfg.align.crop_size}; Keras predict_on_batch, {args.runs} runs")
    print("| variant | parameters | ms per clip, median (min-max) |\n|---|---|---|")
    for row in variant_figures(cfg, args.runs):
        print(f"| {row['variant']} | {row['params']:,} | {row['ms_median']:.1f} ({row['ms_min']:.1f}-{row['ms_max']:.1f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
