"""Exceptions raised by abcgen.

Callers branch on these types, so every error that comes from bad *input* (as opposed to a bug) is one
of them, and its message names the tune, the place and the fix where one exists.
"""

from __future__ import annotations


class AbcgenError(Exception):
    """Base class of every abcgen error."""


class AbcParseError(AbcgenError, ValueError):
    """ABC text that cannot be read.

    ``tune`` is the tune's ``X:`` number or title (or ``None``), ``bar`` the 1-based bar index in the
    body, ``line``/``column`` 1-based positions in the tune text (body text for lexer errors).
    """

    def __init__(
        self,
        message: str,
        *,
        tune: str | None = None,
        bar: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = message
        self.tune = tune
        self.bar = bar
        self.line = line
        self.column = column
        where = []
        if tune is not None:
            where.append(f"tune {tune!r}")
        if bar is not None:
            where.append(f"bar {bar}")
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class BarDurationError(AbcParseError):
    """A bar whose length disagrees with the meter beyond what real music tolerates."""


class ConversionError(AbcgenError):
    """A conversion between formats (MusicXML, MIDI, REMI, ABC) failed; the message says which input."""


class ToolNotFoundError(AbcgenError):
    """A system program (abc2midi, fluidsynth, ...) is missing; the message names the Debian package."""


class ConfigError(AbcgenError, ValueError):
    """A configuration value or key is invalid; the message names the key and the closest valid one."""


class MissingExtraError(ToolNotFoundError, ImportError):
    """An optional Python package is not installed; the message names the extra: pip install 'abcgen[EXTRA]'."""
