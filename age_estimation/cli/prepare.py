"""``age-estimation prepare``: detect, align and cache the face clips of a manifest or UvA-NEMO.

Without ``--manifest``/``--uva-nemo`` it prepares the config's dataset; a synthetic one (the embedded
default) is generated first when it is not there, as ``train`` does.

Exit codes: 0 done; 2 a bad config, manifest or missing face models; 1 the run could not write its
cache (another prepare holds the folder, the disk is full, no permission): one ``error:`` line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from age_estimation.config import PipelineConfig, load_config
from age_estimation.data.cache_lock import CacheBusyError
from age_estimation.data.manifest import (
    ManifestScan,
    scan_csv_manifest,
    scan_manifest,
    scan_uva_nemo,
)
from age_estimation.data.prepare import generate_if_synthetic, prepare
from age_estimation.logs import native_logs_hidden
from age_estimation.video.face_models import AssetError


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", type=Path, help="CSV manifest (path, age, subject[, label, split])")
    source.add_argument("--uva-nemo", type=Path, metavar="ROOT", help="UvA-NEMO root (details file + videos/)")
    parser.add_argument("--out", type=Path, help="cache folder (default: data.cache_dir of the config)")
    parser.add_argument("--config", type=Path, help="pipeline YAML (align settings; data.* when no source given)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--workers", type=int, help="worker processes (default data.workers; 0 = all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--runner", choices=("local", "beam"), default="local",
                        help="local process pool (default) or an Apache Beam pipeline")
    parser.add_argument("--beam-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a Beam pipeline option, e.g. runner=DirectRunner (repeatable; --runner beam)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.set)
        problem = _runner_problem(args)
        if problem:
            print(f"error: {problem}")
            return 2
        workers = cfg.data.workers if args.workers is None else args.workers
        scan = _scan(args, cfg, workers)
    except (ValueError, OSError) as err:  # a ConfigError, a ManifestError, or the synthetic data cannot be written
        print(f"error: {err}")
        return 2
    out = args.out or Path(cfg.data.cache_dir)
    rejected = [{"path": p.path, "reason": f"manifest row {p.row}: {p.reason}"} for p in scan.problems]
    try:
        if args.runner == "beam":
            # Apache Beam is an optional extra: imported only for --runner beam. Its import logs a
            # warning about Google Cloud clients by itself.
            with native_logs_hidden():
                from age_estimation.data.beam_prepare import prepare_beam

            report = prepare_beam(scan.rows, out, cfg.align, args.beam_option, workers=workers, rejected=rejected)
        else:
            report = prepare(scan.rows, out, cfg.align, workers=workers, progress=not args.no_progress,
                             rejected=rejected)
    except AssetError as err:
        print(f"error: {err}")
        return 2
    except (CacheBusyError, OSError) as err:  # another prepare on --out, a full disk (DiskFullError), ...
        print(f"error: {err}")
        return 1
    print(json.dumps(report, indent=2) if args.json else _summary(report, out))
    return 0


def _runner_problem(args: argparse.Namespace) -> str | None:
    """Why ``--runner``/``--beam-option`` cannot be used as given, or None."""
    if args.runner != "beam":
        return "--beam-option needs --runner beam" if args.beam_option else None
    if importlib.util.find_spec("apache_beam") is None:
        return "--runner beam needs Apache Beam: pip install 'age-estimation[beam]'"
    bad = [pair for pair in args.beam_option if not pair.partition("=")[0].strip("- ")]
    return f"--beam-option {bad[0]!r}: expected KEY=VALUE (or KEY for a switch)" if bad else None


def _scan(args: argparse.Namespace, cfg: PipelineConfig, workers: int) -> ManifestScan:
    if args.manifest:
        return scan_csv_manifest(args.manifest)
    if args.uva_nemo:
        return scan_uva_nemo(args.uva_nemo)
    generate_if_synthetic(cfg, workers, progress=not args.no_progress)
    return scan_manifest(cfg.data)


def _summary(report: dict, out: Path) -> str:
    lines = [
        (f"prepared {len(report['prepared'])}, unchanged {len(report['skipped'])}, "
        f"rejected {len(report['rejected'])} of {report['videos']} videos "
        f"({report['frames']} frames, {report['frames_per_second']:.1f} frames/s)"),
        *(f"  rejected {item['path']}: {item['reason']}" for item in report["rejected"]),
        *(f"  warning {item['path']}: {item['warning']}" for item in report["prepared"] if "warning" in item),
        f"cache: {out}  report: {out / 'report.json'}",
    ]
    return "\n".join(lines)
