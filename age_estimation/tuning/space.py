"""The search space: SIAM's architecture and training choices, scaled from a base config.

``declare`` is the ``build(hp)`` side of the search: it declares each choice on Keras Tuner's
``HyperParameters``, and ``apply_values`` maps the chosen values onto the same typed
``PipelineConfig`` that ``build_siam`` and ``train`` read, so a tuned run and a hand-written one share
one code path. The space is scaled from the base config (a tiny CI config searches tiny models):

===========================  ==========================================================================
hyperparameter               values
===========================  ==========================================================================
conv_depth                   len(conv_filters) - 1 .. + 1, limited so the last map is at least 2x2
conv_width                   conv_filters[0] x (0.5, 1, 2); block i gets width * (i + 1) filters
attention_block_d<depth>     0 .. depth - 1 (a block index valid for the chosen depth)
attention_normalization      softmax | sigmoid
attention_mode               residual | plain
rnn / rnn_units              lstm | gru / rnn_units x (0.5, 1, 2)
dynamics                     false | true: read the landmark motion stream (``model.dynamics``); only
                             false when the cache is prepared without it (``align.landmarks`` off)
dropout                      0.0 .. 0.5, step 0.1
learning_rate                learning_rate / 10 .. x 3, log scale
batch_size                   batch_size x (0.5, 1, 2) (applied in ``SiamHyperModel.fit``)
===========================  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import keras_tuner as kt

from age_estimation.config import PipelineConfig

SCALES = (0.5, 1.0, 2.0)


@dataclass
class SearchSpace:
    """The choices of one search, derived from the base config by :func:`search_space`."""

    depths: list[int]
    widths: list[int]
    rnn_units: list[int]
    batch_sizes: list[int]
    learning_rate: tuple[float, float]
    dropout: tuple[float, float, float] = (0.0, 0.5, 0.1)
    normalizations: list[str] = field(default_factory=lambda: ["softmax", "sigmoid"])
    attention_modes: list[str] = field(default_factory=lambda: ["residual", "plain"])
    rnns: list[str] = field(default_factory=lambda: ["lstm", "gru"])
    dynamics: list[bool] = field(default_factory=lambda: [False, True])
    defaults: dict[str, Any] = field(default_factory=dict)


def search_space(cfg: PipelineConfig, crop_size: int) -> SearchSpace:
    """The search space scaled from ``cfg`` (widths, units, batch and rate around the base values)."""
    model, n = cfg.model, len(cfg.model.conv_filters)
    max_depth = max(1, int(math.log2(crop_size)) - 1)  # the last pooled map stays at least 2x2
    space = SearchSpace(
        depths=sorted({d for d in (n - 1, n, n + 1) if 1 <= d <= max_depth} or {min(n, max_depth)}),
        widths=_scaled(model.conv_filters[0], minimum=4),
        rnn_units=_scaled(model.rnn_units, minimum=4),
        batch_sizes=_scaled(cfg.data.batch_size, minimum=1),
        learning_rate=(cfg.train.learning_rate / 10, cfg.train.learning_rate * 3),
        # A trial reads the landmark stream only from a cache that holds it.
        dynamics=[False, True] if cfg.align.landmarks else [False],
    )
    low, high, step = space.dropout
    # The first point of the space (Keras Tuner's defaults) is the base config itself, where it lies inside.
    space.defaults = {
        "conv_depth": n if n in space.depths else space.depths[0],
        "conv_width": model.conv_filters[0] if model.conv_filters[0] in space.widths else space.widths[0],
        "attention_after_block": model.attention_after_block,
        "attention_normalization": model.attention_normalization,
        "attention_mode": model.attention_mode,
        "rnn": model.rnn,
        "rnn_units": model.rnn_units if model.rnn_units in space.rnn_units else space.rnn_units[0],
        "dynamics": model.dynamics if model.dynamics in space.dynamics else space.dynamics[0],
        "dropout": min(high, max(low, round(model.dropout / step) * step)),
        "learning_rate": cfg.train.learning_rate,
        "batch_size": cfg.data.batch_size if cfg.data.batch_size in space.batch_sizes else space.batch_sizes[0],
    }
    return space


def declare(hp: kt.HyperParameters, space: SearchSpace) -> dict[str, Any]:
    """Declare every hyperparameter of ``space`` on ``hp`` and return the values of this trial."""
    base = space.defaults
    depth = hp.Choice("conv_depth", space.depths, default=base.get("conv_depth"))
    values: dict[str, Any] = {"conv_depth": depth}
    values["conv_width"] = hp.Choice("conv_width", space.widths, default=base.get("conv_width"))
    for option in space.depths:
        with hp.conditional_scope("conv_depth", [option]):
            default = min(base.get("attention_after_block", 0), option - 1)
            block = hp.Int(f"attention_block_d{option}", 0, option - 1, default=default)
        if option == depth:
            values["attention_after_block"] = block
    for name, choices in (("attention_normalization", space.normalizations),
                          ("attention_mode", space.attention_modes), ("rnn", space.rnns),
                          ("rnn_units", space.rnn_units), ("batch_size", space.batch_sizes)):
        values[name] = hp.Choice(name, choices, default=base.get(name))
    # Keras Tuner's Choice stores booleans as 0/1: Boolean keeps them booleans, Fixed pins a single option.
    if len(space.dynamics) > 1:
        values["dynamics"] = hp.Boolean("dynamics", default=bool(base.get("dynamics", False)))
    else:
        values["dynamics"] = hp.Fixed("dynamics", space.dynamics[0])
    low, high, step = space.dropout
    values["dropout"] = hp.Float("dropout", low, high, step=step, default=base.get("dropout"))
    low, high = space.learning_rate
    values["learning_rate"] = hp.Float("learning_rate", low, high, sampling="log", default=base.get("learning_rate"))
    return values


def apply_values(cfg: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """A copy of ``cfg`` with one trial's values in their config keys (the config ``build_siam`` reads)."""
    width, depth = int(values["conv_width"]), int(values["conv_depth"])
    model = dataclasses.replace(
        cfg.model,
        conv_filters=[width * (i + 1) for i in range(depth)],
        attention_after_block=int(values["attention_after_block"]),
        attention_normalization=values["attention_normalization"],
        attention_mode=values["attention_mode"],
        rnn=values["rnn"],
        rnn_units=int(values["rnn_units"]),
        dynamics=bool(values["dynamics"]),
        dropout=round(float(values["dropout"]), 4),
    )
    data = dataclasses.replace(cfg.data, batch_size=int(values["batch_size"]))
    train = dataclasses.replace(cfg.train, learning_rate=float(values["learning_rate"]))
    return dataclasses.replace(cfg, model=model, data=data, train=train)


def _scaled(base: int, minimum: int) -> list[int]:
    return sorted({max(minimum, round(base * scale)) for scale in SCALES})
