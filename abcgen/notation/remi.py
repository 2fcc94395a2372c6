"""MIDI and REMI: miditok 3 REMI as the event-token text form (abc2midi converts ABC to MIDI first).

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
import tempfile
from pathlib import Path

from abcgen.errors import ConversionError

# abc2midi, the converter and strict checker, lives in abcgen.notation.abc2midi (the checks home); these
# names stay importable from here.
from abcgen.notation.abc2midi import abc2midi_check, abc_to_midi

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

_TOKENIZER = None  # the shared miditok REMI tokenizer, built on first use (importing miditok is slow)


def get_remi_tokenizer():  # noqa: ANN201 -- miditok.REMI, not imported at module load
    """The shared miditok REMI tokenizer built from :data:`REMI_CONFIG` (created once, then cached)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from miditok import REMI, TokenizerConfig

        _TOKENIZER = REMI(TokenizerConfig(**REMI_CONFIG))
    return _TOKENIZER


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
