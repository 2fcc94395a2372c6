"""Load a repository file that is not in a package (``train/finetune.py``, ``tests/tiny_models.py``) as a
module, for the benchmark scripts (each runs as ``python benchmarks/NAME.py``, so this folder is on
``sys.path``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_module(name: str, relative_path: str) -> ModuleType:
    """Import ``ROOT/relative_path`` as module ``name`` (registered in ``sys.modules`` for dataclasses)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {ROOT / relative_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
