"""Importing MediaPipe Tasks light: without TensorFlow and without its matplotlib drawing helpers."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

MEDIAPIPE_DRAWING = ("mediapipe.tasks.python.vision.drawing_utils", "mediapipe.tasks.python.vision.drawing_styles")


def import_mediapipe() -> tuple[Any, Any, Any]:
    """Import MediaPipe Tasks without TensorFlow.

    mediapipe imports TensorFlow (when installed) only for API-doc decorators in
    ``optional_dependencies``; a no-op stand-in keeps worker start-up light (TF costs ~3 s and
    hundreds of MB per process) and the edge path free of TensorFlow. Its drawing helpers, which
    import matplotlib, are empty modules while mediapipe is imported here.
    """
    name = "mediapipe.tasks.python.core.optional_dependencies"
    if name not in sys.modules and "tensorflow" not in sys.modules:
        stand_in = types.ModuleType(name)
        stand_in.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)  # type: ignore[attr-defined]
        sys.modules[name] = stand_in
    skip_drawing = _EmptyModules(MEDIAPIPE_DRAWING)
    sys.meta_path.insert(0, skip_drawing)
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    finally:
        sys.meta_path.remove(skip_drawing)

    return mp, vision, BaseOptions


class _EmptyModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook that makes the named modules empty (mediapipe's drawing helpers import matplotlib,
    0.8 s a process, and alignment draws nothing)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in self.names else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        pass
