"""The GPU check: SIAM's training and predict speed on Keras' JAX backend, and parity of a TF-trained model.

Made for a machine with JAX but neither TensorFlow nor Keras (the H200 lent now and then)::

    python -m age_estimation.bench.gpu BUNDLE OUT [--batches 8,64,256] [--steps 20] [--precisions ...]

BUNDLE is what ``age_estimation.bench.gpu_bundle`` writes here; the figures go to ``OUT/gpu.json``,
rewritten after each section so a run cut short keeps what it measured. Mixed precision is
``mixed_bfloat16`` by default: bfloat16 keeps float32's exponent range, so it needs no loss scaling
(``mixed_float16`` makes Keras wrap the optimizer in a LossScaleOptimizer), and Hopper's tensor cores
run both at the same rate; ``--precisions float32,mixed_bfloat16,mixed_float16`` times all three.
Training is timed as ``train_on_batch`` steps on a batch already on the device, after the first
call (tracing + XLA compile, reported apart) and ``--warmup`` more.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.bench.measure import median_spread
from age_estimation.config import PipelineConfig, load_config

REPORT_NAME = "gpu.json"
DEFAULT_SITE = Path(tempfile.gettempdir()) / "age_estimation_gpu_site"
# Module names of carried wheels whose import name differs from their distribution name.
MODULE_OF = {"pyyaml": "yaml", "absl_py": "absl"}
PARITY_TOLERANCE = 1e-3  # years: float32 on two backends and two machines, at full matmul precision


def parse_sizes(text: str) -> list[int]:
    """"8,64,256" -> [8, 64, 256]; each a positive integer."""
    sizes = [int(item) for item in text.split(",") if item.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers separated by commas")
    return sizes


def wheel_module(wheel: Path) -> str:
    """The import name of a wheel's package, from its file name (``optree-0.20.0-cp312-...whl`` -> optree)."""
    name = wheel.name.split("-", 1)[0].lower()
    return MODULE_OF.get(name, name)


def missing_wheels(wheel_dir: Path) -> list[Path]:
    """The wheels in ``wheel_dir`` whose package this Python cannot import."""
    return [wheel for wheel in sorted(wheel_dir.glob("*.whl")) if importlib.util.find_spec(wheel_module(wheel)) is None]


def install_missing(wheel_dir: Path, site: Path = DEFAULT_SITE) -> list[str]:
    """Install the carried wheels this Python lacks into ``site`` (offline, no dependency resolution).

    ``site`` goes first on ``sys.path``, so a second run on the same machine finds them installed.
    """
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    wheels = missing_wheels(wheel_dir)
    if wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
             "--no-deps", "--no-compile", "--target", str(site), *map(str, wheels)],
            check=True,
        )
        importlib.invalidate_caches()
    return [wheel.name for wheel in wheels]


# The model inputs a bundle's clips may carry; the landmark stream only for a model that reads it.
CLIP_INPUTS = ("frames", "mask", "landmarks", "landmark_mask")


def load_clips(path: Path) -> dict[str, np.ndarray]:
    """The carried clips: frames uint8 (N, T, S, S, 3), mask float32 (N, T), ages float32 (N,), and for a
    model that reads the landmark stream landmarks float32 (N, T, K, 2) and landmark_mask float32 (N, T)."""
    with np.load(path) as npz:
        clips = {key: npz[key] for key in npz.files}
    count = len(clips["frames"])
    steps = clips["frames"].shape[:2]
    if clips["frames"].dtype != np.uint8 or clips["frames"].ndim != 5 or clips["mask"].shape != steps:
        raise ValueError(f"{path}: expected frames uint8 (N, T, S, S, 3) and mask (N, T)")
    if clips["ages"].shape != (count,):
        raise ValueError(f"{path}: expected ages (N,) for {count} clips, got {clips['ages'].shape}")
    if ("landmarks" in clips) != ("landmark_mask" in clips) or ("landmarks" in clips and (
            clips["landmarks"].ndim != 4 or clips["landmarks"].shape[:2] != steps
            or clips["landmarks"].shape[3] != 2 or clips["landmark_mask"].shape != steps)):
        raise ValueError(f"{path}: expected landmarks (N, T, K, 2) with landmark_mask (N, T), or neither")
    return clips


def tiled_batch(clips: dict[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A batch of ``size`` clips, repeating the carried ones in order when there are fewer: (inputs, ages (B, 1)).

    The inputs are every model input the clips carry (``CLIP_INPUTS``), float32 but the frames.
    """
    take = np.arange(size) % len(clips["frames"])
    inputs = {name: clips[name][take] if name == "frames" else clips[name][take].astype(np.float32)
              for name in CLIP_INPUTS if name in clips}
    return inputs, clips["ages"][take].astype(np.float32)[:, None]


def model_inputs(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The entries of ``inputs`` that ``model`` takes; a clear error when the clips lack one (an old bundle)."""
    missing = [name for name in model.input if name not in inputs]
    if missing:
        raise ValueError(f"the model takes {missing} but the bundle's clips carry only {sorted(inputs)}; "
                         "write the bundle again with age_estimation.bench.gpu_bundle")
    return {name: inputs[name] for name in model.input}


def time_calls(call: Callable[[], Any], calls: int, repeats: int, sync: Callable[[Any], Any] = np.asarray) -> list[float]:
    """Seconds per call, once per repeat: ``calls`` calls back to back, the clock stopped after ``sync`` of the last."""
    per_call = []
    for _ in range(repeats):
        begin = time.perf_counter()
        for _ in range(calls):
            result = call()
        sync(result)
        per_call.append((time.perf_counter() - begin) / calls)
    return per_call


def rate_figures(batch: int, first_call_s: float, per_call_s: list[float]) -> dict[str, Any]:
    """Calls/s and clips/s (medians, with the range over repeats) and the compile time the first call took."""
    seconds = median_spread(per_call_s)
    return {
        "batch": batch,
        "steps_per_second": 1.0 / seconds["median"],
        "clips_per_second": batch / seconds["median"],
        "clips_per_second_range": [batch / seconds["max"], batch / seconds["min"]],
        "seconds_per_step": seconds,
        "first_call_seconds": first_call_s,
        "compile_seconds": max(first_call_s - seconds["median"], 0.0),
    }


def parity_figures(ages: np.ndarray, expected: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """How far the ages here are from those recorded with TensorFlow: max and mean |diff| in years, and pass/fail."""
    ages, expected = np.asarray(ages, np.float64).ravel(), np.asarray(expected, np.float64).ravel()
    if ages.shape != expected.shape:
        raise ValueError(f"{ages.shape[0]} ages against {expected.shape[0]} expected")
    diff = np.abs(ages - expected)
    return {"clips": int(ages.size), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "tolerance": tolerance, "equal": bool(diff.max() <= tolerance)}


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as ``out/gpu.json`` (again after every section); returns the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def check_parity(bundle: Path, clips: dict[str, np.ndarray], tolerance: float) -> dict[str, Any]:
    """Load the TF-trained ``model.keras`` and compare its ages on the carried clips with ``expected_ages.npy``.

    Once at JAX's "highest" matmul precision (true float32; the pass/fail) and once at its default,
    which on NVIDIA GPUs may run float32 matrix work as TF32.
    """
    import jax  # lazy, as every JAX/Keras import here: Keras comes from the carried wheels, installed first

    from age_estimation.models.siam.model import load_siam

    model = load_siam(bundle / "model.keras")
    expected = np.load(bundle / "expected_ages.npy")
    inputs = model_inputs(model, tiled_batch(clips, len(expected))[0])
    figures = {}
    for precision in ("highest", "default"):
        with jax.default_matmul_precision(precision):
            ages = model.predict(inputs, batch_size=min(len(expected), 64), verbose=0)["age"][:, 0]
        figures[precision] = parity_figures(ages, expected, tolerance)
    return {**figures["highest"], "default_matmul_precision": figures["default"]}


def training_figures(cfg: PipelineConfig, clips: dict[str, np.ndarray], age_prior: tuple[float, float],
                     precision: str, batch: int, steps: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Train steps/s and clips/s of the config's SIAM (age view, the training optimizer and loss) at one batch."""
    import jax
    import keras

    from age_estimation.models.siam.model import build_siam
    from age_estimation.training.task import age_view, compile_task

    keras.mixed_precision.set_global_policy(precision)
    try:
        fitted = age_view(build_siam(cfg.model, crop_size=clips["frames"].shape[2], age_prior=age_prior))
        compile_task(fitted, cfg.train, steps_per_epoch=100)
        inputs, targets = tiled_batch(clips, batch)
        inputs, targets = jax.device_put((model_inputs(fitted, inputs), targets))

        def step() -> Any:
            return fitted.train_on_batch(inputs, targets)

        begin = time.perf_counter()
        step()
        first = time.perf_counter() - begin
        for _ in range(warmup):
            step()
        return {"precision": precision, **rate_figures(batch, first, time_calls(step, steps, repeats))}
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def predict_figures(cfg: PipelineConfig, clips: dict[str, np.ndarray], precision: str, batch: int,
                    calls: int, repeats: int, warmup: int) -> dict[str, Any]:
    """``predict_on_batch`` clips/s of the full SIAM (age and attention maps) at one batch."""
    import jax
    import keras

    from age_estimation.models.siam.model import build_siam

    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_siam(cfg.model, crop_size=clips["frames"].shape[2])
        inputs = jax.device_put(model_inputs(model, tiled_batch(clips, batch)[0]))

        def call() -> Any:
            return model.predict_on_batch(inputs)

        begin = time.perf_counter()
        jax.block_until_ready(call())
        first = time.perf_counter() - begin
        for _ in range(warmup):
            call()
        per_call = time_calls(call, calls, repeats, sync=jax.block_until_ready)
        return {"precision": precision, **rate_figures(batch, first, per_call)}
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def environment() -> dict[str, Any]:
    """The devices JAX sees and the versions that ran the check."""
    import jax
    import keras

    devices = jax.devices()
    return {"devices": [str(device) for device in devices], "device_kind": devices[0].device_kind,
            "platform": devices[0].platform, "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": importlib.import_module("jaxlib").__version__, "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), "numpy": np.__version__}


def run_check(bundle: Path, out: Path, batches: list[int], predict_batches: list[int], precisions: list[str],
              steps: int, repeats: int, warmup: int, tolerance: float, site: Path = DEFAULT_SITE) -> dict[str, Any]:
    """The whole check: install, environment, parity, training and predict figures, each saved as it ends."""
    installed = install_missing(bundle / "wheels", site)
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
        raise RuntimeError("keras was imported before KERAS_BACKEND=jax was set; run this module on its own")
    os.environ["KERAS_BACKEND"] = "jax"
    cfg = load_config(bundle / "config.yaml")
    clips = load_clips(bundle / "clips.npz")
    manifest = json.loads((bundle / "bundle.json").read_text()) if (bundle / "bundle.json").is_file() else {}
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "installed_wheels": installed, **environment(),
        "bundle": manifest, "clips": list(clips["frames"].shape),
        "method": {"steps": steps, "repeats": repeats, "warmup": warmup, "inputs": "device-resident batch, "
                   "carried clips repeated in order up to the batch", "train": "Model.train_on_batch on the age "
                   "view with the config's optimizer and loss", "predict": "Model.predict_on_batch, all outputs"},
        "parity": None, "train": [], "predict": [],
    }
    report["parity"] = check_parity(bundle, clips, tolerance)
    write_report(out, report)
    age_prior = tuple(manifest.get("age_prior", (40.0, 20.0)))
    for precision in precisions:
        for batch in batches:
            report["train"].append(training_figures(cfg, clips, age_prior, precision, batch, steps, repeats, warmup))
            write_report(out, report)
    for precision in precisions:
        for batch in predict_batches:
            report["predict"].append(predict_figures(cfg, clips, precision, batch, steps, repeats, warmup))
            write_report(out, report)
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per figure, for the console."""
    parity = report["parity"]
    verdict = "equal" if parity["equal"] else "NOT equal"
    default = parity["default_matmul_precision"]["max_abs_diff"]
    lines = [
        f"{report['device_kind']} ({report['platform']}), jax {report['jax']}, keras {report['keras']}",
        f"parity: max |diff| {parity['max_abs_diff']:.3g} years over {parity['clips']} clips "
        + f"({verdict} within {parity['tolerance']:g}); default matmul precision: {default:.3g}",
    ]
    for kind in ("train", "predict"):
        for row in report[kind]:
            lines.append(f"{kind} {row['precision']:>15} batch {row['batch']:>4}: {row['steps_per_second']:8.2f} "
                         f"steps/s {row['clips_per_second']:10.1f} clips/s (compile {row['compile_seconds']:.1f} s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m age_estimation.bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="folder written by age_estimation.bench.gpu_bundle")
    parser.add_argument("out", type=Path, help="folder for gpu.json")
    parser.add_argument("--batches", type=parse_sizes, default=[8, 64, 256], help="training batches (8,64,256)")
    parser.add_argument("--predict-batches", type=parse_sizes, default=[1, 256], help="predict batches (1,256)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="Keras dtype policies to time")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the timed calls")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after the compiling one")
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE, help="parity tolerance in years")
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE, help="where missing wheels are installed")
    args = parser.parse_args(argv)
    report = run_check(args.bundle, args.out, args.batches, args.predict_batches,
                       [p for p in args.precisions.split(",") if p], args.steps, args.repeats, args.warmup,
                       args.tolerance, args.site)
    print("\n".join(summary_lines(report)))
    print(f"wrote {args.out / REPORT_NAME}")
    return 0 if report["parity"]["equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
