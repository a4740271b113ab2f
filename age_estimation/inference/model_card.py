"""The model card: what a model was trained on and how good it was on videos it never saw.

Training writes it as ``model_card.json`` in the run directory; export copies it into every deployment
spec, and ``predict`` shows it (text, ``--json``, ``--explain`` titles), so a user always sees whether
an age came from a model trained on real faces or on the synthetic benchmark.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from age_estimation.config import PipelineConfig

SYNTHETIC_NOTICE = (
    "note: this model was trained on synthetic faces only; its ages for real faces mean little"
)


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Training data (source, path, videos/subjects per split), held-out quality, date and config."""

    config: str
    data_source: str
    data_path: str
    synthetic: bool
    splits: dict[str, dict[str, int]]  # split name -> {"videos": n, "subjects": m}
    heldout_mae: float | None = None
    coverage: float | None = None  # nominal coverage of the interval
    heldout_coverage: float | None = None  # share of held-out true ages inside the interval
    mean_interval_width: float | None = None  # years, on the held-out videos
    trained: str = ""  # ISO date of the end of training
    # A pretrained model not trained here (``predict --model face-age-v1``): what it is, said instead of the
    # training summary, and why it has no interval (shown instead of the "exported before intervals" line).
    description: str = ""
    interval_note: str = ""

    @classmethod
    def from_run(
        cls,
        cfg: PipelineConfig,
        counts: Mapping[str, Mapping[str, int]],
        heldout_mae: float | None,
        interval: Mapping[str, Any] | None = None,
        date: datetime.date | str | None = None,
    ) -> ModelCard:
        """The card of a run trained with ``cfg``: ``counts`` is split -> {"videos", "subjects"},
        ``interval`` the held-out ``interval_report`` (or None), ``date`` the day training ended (today)."""
        date = date or datetime.datetime.now(datetime.UTC).date()
        return cls(
            config=Path(cfg.source_file).name if cfg.source_file else "<defaults>",
            data_source=cfg.data.source,
            data_path=cfg.data.path,
            synthetic=cfg.data.source == "synthetic",
            splits={name: {k: int(v) for k, v in split.items()} for name, split in counts.items()},
            heldout_mae=_rounded(heldout_mae),
            coverage=None if interval is None else float(interval["coverage"]),
            heldout_coverage=None if interval is None else _rounded(interval["empirical_coverage"]),
            mean_interval_width=None if interval is None else _rounded(interval["mean_width"]),
            trained=date if isinstance(date, str) else date.isoformat(),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``model_card.json`` and of the deployment spec's ``model_card`` key."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelCard:
        """The card ``to_json`` wrote; unknown keys are ignored, a missing required one is a ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.name not in data
        )
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def data_summary(self) -> str:
        """'synthetic data at data/synthetic, 40/10/10 videos and 12/3/3 subjects (train/val/heldout)'."""
        kind = "synthetic data" if self.synthetic else f"{self.data_source} data"
        if not self.splits:
            return f"{kind} at {self.data_path}"
        videos = "/".join(str(split.get("videos", 0)) for split in self.splits.values())
        subjects = "/".join(str(split.get("subjects", 0)) for split in self.splits.values())
        return f"{kind} at {self.data_path}, {videos} videos and {subjects} subjects ({'/'.join(self.splits)})"

    def summary_line(self) -> str:
        """One line for the terminal: data, held-out MAE and coverage, date and config (or the description)."""
        if self.description:
            return f"model: {self.description}"
        parts = [f"trained {self.trained or 'on an unknown date'} on {self.data_summary()}"]
        if self.heldout_mae is not None:
            parts.append(f"held-out MAE {self.heldout_mae:.2f} years")
        if self.coverage is not None and self.heldout_coverage is not None:
            parts.append(f"{self.coverage:.0%} interval held {self.heldout_coverage:.0%} of held-out ages")
        parts.append(f"config {self.config}")
        return "model: " + ", ".join(parts)

    def short(self) -> str:
        """The card in a few words, for picture titles: 'synthetic data, held-out MAE 5.2 y, 2025-01-01'."""
        kind = "synthetic data" if self.synthetic else f"{self.data_source} data"
        mae = f", held-out MAE {self.heldout_mae:.1f} y" if self.heldout_mae is not None else ""
        return f"{kind}{mae}, {self.trained or 'undated'}"

    def synthetic_notice(self) -> str | None:
        """The one line ``predict`` prints for a model trained on synthetic faces only (None otherwise)."""
        return SYNTHETIC_NOTICE if self.synthetic else None


def _rounded(value: float | None) -> float | None:
    """A figure to 4 decimals (what a card needs), or None."""
    return None if value is None else round(float(value), 4)
