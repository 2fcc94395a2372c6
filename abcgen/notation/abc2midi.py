"""abc2midi as converter (ABC -> MIDI) and as the strict checker of a tune (``abc2midi -c``).

The strict checker is the second opinion on a tune after the corpus's own checks (``abcgen.notation.checks``
re-exports it): evaluation's strict validity, the GAN's samples and the tests compare against it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from abcgen.errors import ConversionError, ToolNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["abc2midi_check", "abc_to_midi"]

# abc2midi reports problems as "Error in line-char 7-31 : ..." / "Warning in line-char 6-16 : ...",
# some without a position ("Error : ...").
_DIAGNOSTIC_RE = re.compile(r"^\s*(Error|Warning)\b")
# Not problems: how abc2midi reads a second ':|' with no '|:' between (``A :| B :|``, legal ABC and the
# way most of O'Neill's writes a two-part tune) -- it plays the B part twice, as written.
_IMPLICIT_REPEAT_RE = re.compile(r"^Warning in line-char \d+-\d+ : (Assuming repeat|replacing \|: with double repeat \(::\))$")

# A clef with an octave (``treble-8``, the chorales' tenor; ``bass+8``) on a V: line. abc2midi 4.84 applies
# its octave only when the clef is the line's last word (``V:4 treble-8 nm="Tenor"`` sounds an octave too
# high), but always honours an explicit ``octave=``, which we add (without one already there).
_CLEF_OCTAVE_RE = re.compile(r"(?:^|[ \t])(?:clef=)?[A-Za-z]+([+-])(8|15)(?=[ \t]|$)")
_VOICE_LINE_RE = re.compile(r"^V:[^\n%]*", re.MULTILINE)

# Generous: abc2midi converts a normal tune in a few milliseconds; a hang means a pathological input.
_ABC2MIDI_TIMEOUT_S = 30

def _abc2midi_path() -> str:
    """Where abc2midi is, or ToolNotFoundError saying how to install it."""
    path = shutil.which("abc2midi")
    if path is None:
        raise ToolNotFoundError("abc2midi not found on PATH; install it with: apt-get install abcmidi")
    return path


def _diagnostics(output: str) -> list[str]:
    """The ``Error``/``Warning`` lines of abc2midi's output (it writes them to stdout), without its notes on
    implicit repeats (``_IMPLICIT_REPEAT_RE``)."""
    lines = (line.strip() for line in output.splitlines() if _DIAGNOSTIC_RE.match(line))
    return [line for line in lines if not _IMPLICIT_REPEAT_RE.match(line)]


def _run_abc2midi(args: list[str], cwd: str) -> subprocess.CompletedProcess[str]:
    """Run abc2midi with ``args``, output captured; it exits 0 even on errors, so the caller reads it.
    ``cwd`` is a scratch folder: abc2midi drops a ``barloc.txt`` into its working directory."""
    try:
        return subprocess.run(
            [_abc2midi_path(), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_ABC2MIDI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"abc2midi did not finish within {_ABC2MIDI_TIMEOUT_S} s") from exc


def _with_clef_octaves(abc: str) -> str:
    """``abc`` with ``octave=N`` added to each V: line whose clef has an octave (see ``_CLEF_OCTAVE_RE``)."""

    def add_octave(line: re.Match[str]) -> str:
        text = line.group(0)
        clef = _CLEF_OCTAVE_RE.search(text)
        if clef is None or "octave=" in text:
            return text
        octaves = (1 if clef.group(2) == "8" else 2) * (1 if clef.group(1) == "+" else -1)
        kept = text.rstrip()
        return f"{kept} octave={octaves}{text[len(kept):]}"

    return _VOICE_LINE_RE.sub(add_octave, abc)


def abc_to_midi(abc: str, out_path: str | os.PathLike[str]) -> list[str]:
    """Convert one ABC tune to a MIDI file at ``out_path`` with abc2midi; return its Error/Warning lines.

    A clef's octave on a V: line is made explicit (``_with_clef_octaves``) so that abc2midi plays it.
    Raises ToolNotFoundError when abc2midi is missing and ConversionError when it writes no file (a
    tune it cannot read at all). Errors it recovers from are returned, not raised: abc2midi still writes
    a usable file for most of them.
    """
    out = Path(out_path).resolve()
    out.unlink(missing_ok=True)  # so that a stale file is not mistaken for abc2midi's output
    with tempfile.TemporaryDirectory(prefix="abcgen-abc2midi-") as tmp:
        source = Path(tmp) / "tune.abc"
        text = _with_clef_octaves(abc)
        source.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        result = _run_abc2midi([str(source), "-o", str(out)], cwd=tmp)
    output = result.stdout + result.stderr
    messages = _diagnostics(output)
    if not out.is_file() or out.stat().st_size == 0:
        detail = "; ".join(messages) or output.strip() or f"exit status {result.returncode}"
        raise ConversionError(f"abc2midi wrote no MIDI file for the tune: {detail}")
    for message in messages:
        logger.debug("abc2midi: %s", message)
    return messages


def abc2midi_check(abc: str, *, quiet: bool = False) -> list[str]:
    """abc2midi's Error/Warning lines for one tune, without writing MIDI (``-c``, one subprocess).

    The default keeps every warning: ``-quiet`` (``quiet=True``) would also hide the "Bar N has k time
    units while the time signature has m" bar-length warnings, which are the ones worth comparing a bar
    check against. Returns an empty list for a clean tune.
    """
    with tempfile.TemporaryDirectory(prefix="abcgen-abc2midi-") as tmp:
        source = Path(tmp) / "tune.abc"
        source.write_text(abc if abc.endswith("\n") else abc + "\n", encoding="utf-8")
        result = _run_abc2midi([str(source), "-c", *(["-quiet"] if quiet else [])], cwd=tmp)
    return _diagnostics(result.stdout + result.stderr)
