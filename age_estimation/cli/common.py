"""Flags and helpers that several subcommands share: ``--config``/``--set``, config errors, output folders."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from age_estimation.config import ConfigError, PipelineConfig, load_config


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = "pipelines/default.yaml") -> None:
    """``--config YAML`` and repeatable ``--set section.key=value`` overrides."""
    parser.add_argument("--config", default=default, help="pipeline YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=5 (repeatable)")


def config_or_none(args: argparse.Namespace) -> PipelineConfig | None:
    """The pipeline config of ``--config``/``--set``, or None after printing why it is invalid."""
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}")
        return None


def prepared_config(args: argparse.Namespace) -> PipelineConfig | None:
    """``config_or_none`` with the config's data prepared (a quiet progress bar under ``--json``).

    A cache another process is preparing, or a full disk, ends the command with its one-line error and
    exit code 1.
    """
    cfg = config_or_none(args)
    if cfg is not None:
        # Imported here so that a command's `--help` does not load TensorFlow.
        from age_estimation.data.cache_lock import CacheBusyError
        from age_estimation.data.prepare import DiskFullError, prepare_data

        try:
            prepare_data(cfg, progress=not args.json)
        except (CacheBusyError, DiskFullError) as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(1) from err
    return cfg


def output_dir(args: argparse.Namespace, cfg: PipelineConfig, kind: str) -> Path:
    """``--out`` or a fresh ``<runs_dir>/<name>-<kind>-<time>`` folder for a multi-run command."""
    return Path(args.out or Path(cfg.runtime.runs_dir) / f"{cfg.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
