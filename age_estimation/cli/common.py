"""One module per CLI subcommand, each with ``configure(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = "pipelines/default.yaml") -> None:
    """``--config YAML`` and repeatable ``--set section.key=value`` overrides."""
    parser.add_argument("--config", default=default, help="pipeline YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=5 (repeatable)")


def config_or_none(args: argparse.Namespace) -> Any:
    """The pipeline config of ``--config``/``--set``, or None after printing why it is invalid."""
    from age_estimation.config import ConfigError, load_config

    try:
        return load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}")
        return None


def output_dir(args: argparse.Namespace, cfg: Any, kind: str) -> Any:
    """``--out`` or a fresh ``<runs_dir>/<name>-<kind>-<time>`` folder for a multi-run command."""
    import time
    from pathlib import Path

    return Path(args.out or Path(cfg.runtime.runs_dir) / f"{cfg.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
