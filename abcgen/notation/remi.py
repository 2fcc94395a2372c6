"""MIDI and REMI: abc2midi as converter and strict checker, miditok 3 REMI as the event-token text form.

REMI text is the space-separated token strings of miditok's REMI tokenizer, e.g.
``Bar_None TimeSig_4/4 Position_0 Pitch_67 Velocity_63 Duration_1.0.8``.

Choices (one shared :data:`REMI_CONFIG`, so every REMI string in the project means the same thing):

* miditok's default REMI settings: pitches 21-108 (piano range), 8 positions per beat for the first
  four beats of a duration and 4 for longer ones, 32 velocity bins, time-signature tokens on (the
  default in miditok 3), no tempo, rest, chord or sustain tokens. Tempo is dropped on purpose: ABC
  ``Q:`` is often missing and a model need not learn it from REMI.
* ``use_programs`` off: all non-drum tracks are merged into one before tokenising, so one tune gives one
  token stream (a chorale's four voices become one stream of simultaneous notes; voice identity is
  lost, pitches and timing are kept). Decoding writes a one-track MIDI file.
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

__all__ = [
    "REMI_CONFIG",
    "abc2midi_check",
    "abc_to_midi",
    "abc_to_remi",
    "get_remi_tokenizer",
    "midi_to_remi",
    "remi_to_midi",
]

# Keyword arguments of miditok.TokenizerConfig; see the module docstring for why.
REMI_CONFIG: dict[str, object] = {
    "pitch_range": (21, 109),
    "beat_res": {(0, 4): 8, (4, 12): 4},
    "num_velocities": 32,
    "use_programs": False,
    "use_time_signatures": True,
    "use_tempos": False,
    "use_rests": False,
    "use_chords": False,
    "use_sustain_pedals": False,
}

# abc2midi reports problems as "Error in line-char 7-31 : ..." / "Warning in line-char 6-16 : ...",
# some without a position ("Error : ...").
_DIAGNOSTIC_RE = re.compile(r"^\s*(Error|Warning)\b")

# Generous: abc2midi converts a normal tune in a few milliseconds; a hang means a pathological input.
_ABC2MIDI_TIMEOUT_S = 30

_TOKENIZER = None  # the shared miditok REMI tokenizer, built on first use (importing miditok is slow)


def get_remi_tokenizer():  # noqa: ANN201 -- miditok.REMI, not imported at module load
    """The shared miditok REMI tokenizer built from :data:`REMI_CONFIG` (created once, then cached)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from miditok import REMI, TokenizerConfig

        _TOKENIZER = REMI(TokenizerConfig(**REMI_CONFIG))
    return _TOKENIZER


def _abc2midi_path() -> str:
    """Where abc2midi is, or ToolNotFoundError saying how to install it."""
    path = shutil.which("abc2midi")
    if path is None:
        raise ToolNotFoundError("abc2midi not found on PATH; install it with: apt-get install abcmidi")
    return path


def _diagnostics(output: str) -> list[str]:
    """The ``Error``/``Warning`` lines of abc2midi's output (it writes them to stdout)."""
    return [line.strip() for line in output.splitlines() if _DIAGNOSTIC_RE.match(line)]


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


def abc_to_midi(abc: str, out_path: str | os.PathLike[str]) -> list[str]:
    """Convert one ABC tune to a MIDI file at ``out_path`` with abc2midi; return its Error/Warning lines.

    Raises ToolNotFoundError when abc2midi is missing and ConversionError when it writes no file (a
    tune it cannot read at all). Errors it recovers from are returned, not raised: abc2midi still writes
    a usable file for most of them.
    """
    out = Path(out_path).resolve()
    out.unlink(missing_ok=True)  # so that a stale file is not mistaken for abc2midi's output
    with tempfile.TemporaryDirectory(prefix="abcgen-abc2midi-") as tmp:
        source = Path(tmp) / "tune.abc"
        source.write_text(abc if abc.endswith("\n") else abc + "\n", encoding="utf-8")
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


def _load_score(midi: str | os.PathLike[str] | bytes):  # noqa: ANN202 -- symusic.Score
    """Read a MIDI file (path or bytes) into a symusic Score, ConversionError if unreadable."""
    from symusic import Score

    name = f"<{len(midi)} bytes of MIDI>" if isinstance(midi, bytes) else os.fspath(midi)
    try:
        return Score.from_midi(midi) if isinstance(midi, bytes) else Score(os.fspath(midi))
    except Exception as exc:  # symusic raises RuntimeError/ValueError with C++ messages
        raise ConversionError(f"cannot read MIDI {name}: {exc}") from exc


def midi_to_remi(midi: str | os.PathLike[str] | bytes) -> str:
    """Tokenise a MIDI file (path or bytes) to REMI text with the shared tokenizer.

    All non-drum tracks are merged into one first (see the module docstring). Raises ConversionError
    when the file cannot be read or holds no notes.
    """
    from symusic import Track

    score = _load_score(midi)
    merged = Track("merged", 0, False)
    for track in score.tracks:
        if not track.is_drum:
            merged.notes.extend(track.notes)
    if len(merged.notes) == 0:
        raise ConversionError("MIDI holds no (non-drum) notes to tokenise")
    merged.notes.sort()
    score.tracks = [merged]
    sequences = get_remi_tokenizer().encode(score)
    # Without use_programs miditok returns one sequence per track; we merged to exactly one.
    sequence = sequences[0] if isinstance(sequences, list) else sequences
    return " ".join(sequence.tokens)


def remi_to_midi(text: str, path: str | os.PathLike[str]) -> None:
    """Decode REMI text (as :func:`midi_to_remi` writes it) to a one-track MIDI file at ``path``."""
    from miditok import TokSequence

    tokens = text.split()
    if not tokens:
        raise ConversionError("empty REMI text")
    tokenizer = get_remi_tokenizer()
    unknown = [token for token in tokens if token not in tokenizer.vocab]
    if unknown:
        raise ConversionError(f"REMI text has tokens outside the vocabulary: {unknown[:5]}")
    try:
        score = tokenizer.decode([TokSequence(tokens=tokens)])
        score.dump_midi(os.fspath(path))
    except Exception as exc:  # miditok/symusic errors on malformed sequences
        raise ConversionError(f"cannot decode REMI to MIDI: {exc}") from exc


def abc_to_remi(abc: str) -> str:
    """ABC tune -> MIDI (abc2midi, in a temporary directory) -> REMI text."""
    with tempfile.TemporaryDirectory(prefix="abcgen-remi-") as tmp:
        midi_path = Path(tmp) / "tune.mid"
        abc_to_midi(abc, midi_path)
        return midi_to_remi(midi_path)
