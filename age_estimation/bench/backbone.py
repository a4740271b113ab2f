"""What the face-age backbone costs: parameters, training step and Keras latency per clip of SIAM on the
from-scratch CNN, on the frozen pretrained backbone and on the fine-tuned one, measured side by side.

Every model trains and predicts on the same seeded noise batch of the config's batch size and clip length;
the three step times are taken in interleaved rounds, so a ratio compares figures measured back to back.

    python -m age_estimation.bench.backbone --out docs/backbone_cost.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.atomic_files import write_bytes_atomic
from age_estimation.bench.measure import median_spread, paired_ratio
from age_estimation.bench.model import forward_ms, random_batch, train_step
from age_estimation.config import load_config

BACKBONE = ["model.backbone.name=FaceAgeResNet10", "model.backbone.weights=face-age-v1",
            "model.backbone.attention_layer=block3", "align.framing=dlib_chip"]
SETUPS = {
    "from-scratch CNN": [],
    "face-age backbone, frozen": [*BACKBONE, "model.backbone.trainable=false"],
    "face-age backbone, fine-tuned at 0.1x": [*BACKBONE, "train.learning_rate_scales={'face_age_backbone/*': 0.1}"],
}


def measure(config: str | None, rounds: int, steps: int, latency_runs: int) -> list[dict[str, Any]]:
    """Per setup: parameters, trainable parameters, seconds per training step, ms per clip (batch 1)."""
    built = {}
    for name, overrides in SETUPS.items():
        cfg = load_config(config, overrides)
        fitted, step = train_step(cfg, cfg.align.crop_size)
        inputs = random_batch(fitted, cfg.data.batch_size, cfg.data.clip_length, cfg.align.crop_size)
        targets = {"age": np.full((cfg.data.batch_size, 1), 40.0, np.float32)}
        step(inputs, targets)
        clip = {key: value[:1] for key, value in inputs.items()}
        built[name] = (fitted, step, inputs, targets, clip)
    seconds: dict[str, list[float]] = {name: [] for name in SETUPS}
    for _ in range(rounds):
        for name, (_, step, inputs, targets, _) in built.items():
            begin = time.perf_counter()
            for _ in range(steps):
                step(inputs, targets)
            seconds[name].append((time.perf_counter() - begin) / steps)
    reference = next(iter(SETUPS))
    rows = []
    for name, (fitted, _, _, _, clip) in built.items():
        rows.append({
            "setup": name,
            "params": int(fitted.count_params()),
            "trainable": int(sum(np.prod(v.shape) for v in fitted.trainable_variables)),
            "step_seconds": median_spread(seconds[name]),
            "step_ratio": paired_ratio(seconds[name], seconds[reference]),
            "clip_ms": median_spread(forward_ms(fitted, clip, latency_runs)),
        })
    return rows


def markdown(rows: list[dict[str, Any]], command: str, cfg_line: str) -> str:
    """The cost table with its command and date."""
    today = datetime.date.today().isoformat()
    lines = [f"<!-- written by: {command} on {today} -->", "", "# What the face-age backbone costs", "",
             (f"Written by `{command}` on {today}. {cfg_line} Median (min-max) over interleaved rounds; the "
              "ratio is the median of step times measured back to back."), "",
             "| setup | parameters | trainable | training step (s) | ratio | Keras ms per clip (batch 1) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        step, clip = row["step_seconds"], row["clip_ms"]
        lines.append(f"| {row['setup']} | {row['params']:,} | {row['trainable']:,} | "
                     f"{step['median']:.3f} ({step['min']:.3f}-{step['max']:.3f}) | {row['step_ratio']:.2f}x | "
                     f"{clip['median']:.1f} ({clip['min']:.1f}-{clip['max']:.1f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m age_estimation.bench.backbone", description=__doc__)
    parser.add_argument("--config", default="pipelines/default.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    rows = measure(args.config, args.rounds, args.steps, args.latency_runs)
    cfg = load_config(args.config)
    cfg_line = (f"Config `{args.config}`: batch {cfg.data.batch_size}, T = {cfg.data.clip_length}, 64 px crops; "
                f"{os.cpu_count()} cores ({platform.machine()}), load average {os.getloadavg()[0]:.1f} at the start.")
    command = "python -m age_estimation.bench.backbone" + (f" --out {args.out}" if args.out else "")
    page = markdown(rows, command, cfg_line)
    if args.out:
        write_bytes_atomic(args.out, page.encode())
    print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
