"""abcgen: teach pretrained causal language models to write music (ABC and REMI)."""

from __future__ import annotations

import logging

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

__all__ = [
    "AbcgenError",
    "AbcParseError",
    "BarDurationError",
    "ConfigError",
    "ConversionError",
    "ToolNotFoundError",
    "__version__",
]
