"""Register the ``abc-generation`` pipeline when ``transformers.pipelines`` is imported, not before.

``import abcgen`` must make ``pipeline("abc-generation", ...)`` work, but importing transformers'
pipelines (and torch) costs seconds that every ``abcgen`` command and data worker would pay. So: if the
pipelines module is already imported, register now; otherwise a one-shot import hook registers right
after it is first imported (``from transformers import pipeline`` does that).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

_TARGET = "transformers.pipelines"


def _register() -> None:
    # Importing the pipeline module registers the task (its last line). When that module is the one whose
    # own ``from transformers import Pipeline`` triggered this hook, it is half-imported: import_module
    # returns it as is, and it registers itself when it finishes.
    importlib.import_module("abcgen.generation.pipeline")


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``transformers.pipelines`` through the normal finders, then registers after executing it."""

    def __init__(self) -> None:
        self._spec: importlib.machinery.ModuleSpec | None = None

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET or self._spec is not None:
            return None
        sys.meta_path.remove(self)  # one shot: let the real finders locate the module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        self._spec = spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = self._loader  # type: ignore[union-attr]
        self._loader.exec_module(module)
        _register()


def install() -> None:
    if _TARGET in sys.modules:
        _register()
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
