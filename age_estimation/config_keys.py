"""The pipeline config's error, and the keys a config file may still name: moved to another section,
removed after they were measured and not kept, or a named framing standing for the alignment geometry.
Read by ``config.load_config`` and ``config.from_dict``, and by ``Siam.from_config``.
"""

from __future__ import annotations

import typing
from typing import Any


class ConfigError(ValueError):
    """A pipeline config is invalid; the message names the file and the key."""


# Keys that belong to another section: the dotted name a file may still use -> the key's section.
MOVED_KEYS = {
    "model.test_time_flip": "inference.test_time_flip",
    "data.window_span": "inference.window_span",
    "train.seed": "runtime.seed",
    "train.deterministic": "runtime.deterministic",
    "train.mixed_precision": "runtime.mixed_precision",
    "train.strategy": "runtime.strategy",
    "train.runs_dir": "runtime.runs_dir",
    "train.export_after": "export.after_training",
}


class RemovedKey(typing.NamedTuple):
    """An option that was measured and not kept: what it measured (held-out MAE in years), its value when off."""

    measured: str
    off: Any


# A file stating a removed key's off value, as every run saved before the removal does, describes a model
# that exists and still loads; any other value asks for the removed option and fails (docs/experiments.md).
REMOVED_KEYS = {
    "model.dynamics_fusion": RemovedKey("late fusion (the landmark stream through its own recurrent and temporal "
                                        "model), measured 5.35 against early fusion's 5.14 on fold 0", "early"),
    "model.frame_summary_dropout": RemovedKey("late fusion's dropout of whole pixel summaries, measured 5.53 (0.1) "
                                              "and 6.18 (0.3) against early fusion's 5.14 on fold 0", 0.0),
    "model.dynamics_statistics": RemovedKey("statistics pooling of the landmark stream (its codes' mean, spread and "
                                            "maximum), measured 5.39 against 5.14 on fold 0", False),
    "model.landmark_frame": RemovedKey("the landmark stream in the face mesh's own eye frame ('eyes'), measured "
                                       "5.84 against 5.14 on fold 0 (5.13 with statistics pooling)", "template"),
    "model.dynamics_quantiles": RemovedKey("quantile pooling of the landmark stream, measured 5.12 against 4.98 on "
                                           "five folds", 0),
    "model.dynamics_quantile_features": RemovedKey("the signals of the landmark stream's quantile pooling, measured "
                                                   "5.12 against 4.98 on five folds", 8),
}


def without_removed_keys(raw: dict[str, Any], origin: str, prefix: str) -> dict[str, Any]:
    """``raw`` less the removed keys (``REMOVED_KEYS``) that hold their off value; any other value fails.

    ``prefix`` is the section's dotted prefix ("model."). A run saved before a removal states every key
    at its value then, so its config and model file still load while they describe a model that exists.
    """
    asked = [
        f"'{prefix + key}' was removed: {REMOVED_KEYS[prefix + key].measured}, not kept (docs/experiments.md)"
        for key, value in raw.items()
        if prefix + key in REMOVED_KEYS and value != REMOVED_KEYS[prefix + key].off
    ]
    if asked:
        raise ConfigError(f"{origin}: {'; '.join(asked)}")
    return {key: value for key, value in raw.items() if prefix + key not in REMOVED_KEYS}


# The framings ``align.framing`` names: dlib's 5-point face chip at 64 px with dlib's padding 0.2, the
# framing the face-age backbone was trained on (``models/face_age/framing.py`` derives these values from
# dlib's template; a test keeps them equal).
ALIGN_FRAMINGS = {"dlib_chip": {"crop_size": 64, "eye_distance": 0.3753, "eye_y": 0.3009}}


def expand_framing(raw: dict[str, Any], origin: str, overwrite: bool) -> None:
    """Replace ``align.framing`` by the crop size and eye geometry it names (``ALIGN_FRAMINGS``).

    In a file, a geometry key the file also states must agree with it; an override (``overwrite``)
    replaces the file's geometry.
    """
    align = raw.get("align")
    if not isinstance(align, dict) or "framing" not in align:
        return
    name = align.pop("framing")
    if name not in ALIGN_FRAMINGS:
        raise ConfigError(f"{origin}: 'align.framing' must be one of {sorted(ALIGN_FRAMINGS)}, got {name!r}")
    for key, value in ALIGN_FRAMINGS[name].items():
        if not overwrite and key in align and align[key] != value:
            raise ConfigError(f"{origin}: 'align.{key}' is {align[key]!r}, but align.framing {name} sets {value}")
        align[key] = value
