"""abcgen: teach pretrained causal language models to write music (ABC and REMI)."""

from __future__ import annotations

import logging

from abcgen import _lazy_registration
from abcgen.errors import (
    AbcgenError,
    AbcParseError,
    BarDurationError,
    ConfigError,
    ConversionError,
    ToolNotFoundError,
)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


# ``import abcgen`` makes ``pipeline("abc-generation", model=...)`` and the Auto classes work for abcgen's
# models (no remote code), registering each when transformers imports the module it needs (see
# _lazy_registration for why not right now).
_lazy_registration.install()

__all__ = [
    "AbcgenError",
    "AbcParseError",
    "BarDurationError",
    "ConfigError",
    "ConversionError",
    "ToolNotFoundError",
    "__version__",
]
