"""``mid``: abc2midi (Debian ``abcmidi``) on the tune as written, so ``%%MIDI`` directives are honoured; and
the length of the MIDI it writes, which the audio limits are checked against."""

from __future__ import annotations

from pathlib import Path

from abcgen.errors import ConversionError
from abcgen.notation.remi import abc_to_midi

ABC2MIDI_INSTALL = "apt-get install abcmidi"


def render_midi(abc: str, out: Path, name: str) -> None:
    """Write the tune's MIDI to ``out``; ConversionError naming the tune when abc2midi fails."""
    try:
        abc_to_midi(abc, out)  # it logs abc2midi's recoverable Error/Warning lines at debug level
    except ConversionError as exc:
        raise ConversionError(f"MIDI for tune {name!r}: {exc}") from exc


def midi_seconds(midi: Path) -> float:
    """The length of a MIDI file in seconds (its last note's end, repeats expanded by abc2midi)."""
    from symusic import Score

    try:
        return float(Score(str(midi), ttype="second").end())
    except Exception as exc:  # symusic raises RuntimeError/ValueError with C++ messages
        raise ConversionError(f"cannot read the MIDI file abc2midi wrote ({exc})") from exc
