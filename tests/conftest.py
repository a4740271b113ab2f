"""Test-wide settings and the shared tiny prepared dataset (real synth videos through real alignment)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "pipelines" / "ci_tiny.yaml"


def tiny_overrides(root: Path) -> list[str]:
    """Overrides that point the ci_tiny pipeline at a private folder."""
    return [
        f"data.path={root / 'videos'}",
        f"data.cache_dir={root / 'cache'}",
        f"runtime.runs_dir={root / 'runs'}",
        f"tune.directory={root / 'tune'}",
        f"export.directory={root / 'exported'}",
        "data.workers=1",
    ]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A folder holding the ci_tiny synthetic videos and their prepared cache (made once per session)."""
    from age_estimation.config import load_config
    from age_estimation.data.prepare import prepare_data

    root = tmp_path_factory.mktemp("tiny")
    report = prepare_data(load_config(TINY_CONFIG, tiny_overrides(root)), progress=False)
    assert len(report["prepared"]) >= 10, report["rejected"]
    return root


@pytest.fixture()
def tiny_config(tiny_root):
    """A fresh ci_tiny PipelineConfig bound to the shared prepared data; extra overrides via the call."""
    from age_estimation.config import load_config

    def make(*overrides: str):
        return load_config(TINY_CONFIG, tiny_overrides(tiny_root) + list(overrides))

    return make


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """The tiny pixel-only run (interval and model card included) exported once per session: SavedModel and
    float32 TFLite (``tests.tiny_run.TinyExport``). An export costs seconds and the predict, runtime, edge,
    serving and bench tests only read one, so they share it; a test that changes a file of it puts it back."""
    from tests.tiny_run import make_tiny_export

    return make_tiny_export(tmp_path_factory.mktemp("tiny_export"))


from tests.video_files import videos  # noqa: F401  (the session fixture of test videos)
