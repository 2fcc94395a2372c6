"""Music-aware tokenizers: a pretrained Hugging Face tokenizer extended with ABC units and control tokens.

``units`` chooses the units from a corpus, ``extend`` builds/saves/loads the tokenizer, ``embeddings``
resizes a model for it, ``report`` measures it, ``build`` is the ``abcgen tokenizer build`` command.
Heavy modules (transformers, torch) are imported only when one of their names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from abcgen.tokenization.units import UnitSpec, build_unit_spec, load_default_spec

_LAZY = {
    "build_music_tokenizer": "extend",
    "save_music_tokenizer": "extend",
    "load_music_tokenizer": "extend",
    "load_base_tokenizer": "extend",
    "abc_to_ids": "extend",
    "ids_to_abc": "extend",
    "resize_and_init_embeddings": "embeddings",
    "compare_tokenizers": "report",
    "tokenizer_build_command": "build",
}

__all__ = ["UnitSpec", "build_unit_spec", "load_default_spec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"abcgen.tokenization.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'abcgen.tokenization' has no attribute {name!r}")
