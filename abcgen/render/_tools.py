"""What the renderers share: finding a command-line tool, the time a tool may take, and a tool's output
trimmed for an error message."""

from __future__ import annotations

import shutil

from abcgen.errors import ToolNotFoundError

TOOL_TIMEOUT_S = 300  # a tune renders in well under a second; a hang means a pathological input


def which(program: str, install: str) -> str:
    """The path of ``program``; ToolNotFoundError naming ``install`` (the command that installs it) if absent."""
    path = shutil.which(program)
    if path is None:
        raise ToolNotFoundError(f"{program} not found on PATH; install it with: {install}")
    return path


def tail(text: str, lines: int = 8, chars: int = 1500) -> str:
    """The last non-blank ``lines`` of a tool's output on one line, at most ``chars`` long."""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-chars:] or "no output"
