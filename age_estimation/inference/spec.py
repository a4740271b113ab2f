"""What a deployed model needs beside its weights: input shapes, alignment template, window settings.

Exported SavedModels keep it in ``assets.extra/input_spec.json`` of each version; TFLite variants in a
JSON sidecar beside the ``.tflite`` file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC_NAME = "input_spec.json"
SPEC_DIR = "assets.extra"


def read_spec(version_dir: str | Path) -> dict[str, Any]:
    """The input spec stored with an exported SavedModel version (empty when it has none)."""
    path = Path(version_dir) / SPEC_DIR / SPEC_NAME
    return json.loads(path.read_text()) if path.is_file() else {}
