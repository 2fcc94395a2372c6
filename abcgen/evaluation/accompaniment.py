"""How an accompaniment fits its melody, measured from the notes of a multi-track MIDI file.

Each measure is computed the same way for a generated accompaniment and for a real one (Bach's own lower
voices under the same soprano), so the numbers are read against real music, not against an ideal:

* ``bars_covered``: share of bars in which every accompanying track plays at least one note;
* ``onsets_supported``: share of melody onsets at which the lowest accompanying track is sounding (a bass
  under the tune);
* ``consonance``: share of melody onsets whose interval to the lowest sounding accompaniment note is a
  consonance (unison/octave, thirds, fifth, sixths: 0, 3, 4, 7, 8, 9 semitones modulo 12);
* ``parallels_per_bar``: consecutive fifths or octaves between melody and bass (both moving, the same
  perfect interval twice), per bar, the voice-leading fault harmony books count first;
* ``notes_per_bar``: accompaniment notes per bar (all accompanying tracks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from abcgen.errors import ConversionError

CONSONANT = frozenset({0, 3, 4, 7, 8, 9})
PERFECT = frozenset({0, 7})


@dataclass(frozen=True)
class Fit:
    bars: int
    bars_covered: float
    onsets_supported: float
    consonance: float
    parallels_per_bar: float
    notes_per_bar: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _notes(midi: bytes) -> tuple[dict[int, list[tuple[int, int, int]]], int, int]:
    """{program: [(start, end, pitch)]} in ticks, the ticks of one bar, ticks per quarter."""
    from symusic import Score

    try:
        score = Score.from_midi(midi)
    except Exception as exc:  # symusic raises RuntimeError with C++ messages
        raise ConversionError(f"cannot read MIDI ({exc})") from exc
    tracks: dict[int, list[tuple[int, int, int]]] = {}
    for track in score.tracks:
        tracks.setdefault(track.program, []).extend((n.time, n.time + n.duration, n.pitch) for n in track.notes)
    signature = score.time_signatures[0] if len(score.time_signatures) else None
    numerator, denominator = (signature.numerator, signature.denominator) if signature else (4, 4)
    bar = int(Fraction(score.ticks_per_quarter * 4 * numerator, denominator))
    return {p: sorted(n) for p, n in tracks.items()}, bar, score.ticks_per_quarter


def accompaniment_fit(midi: bytes, melody_program: int, bars: int | None = None) -> Fit:
    """The measures of the module docstring for the tracks other than ``melody_program``."""
    tracks, bar, _ = _notes(midi)
    if melody_program not in tracks:
        raise ConversionError(f"the MIDI has no track of program {melody_program} (it has {sorted(tracks)})")
    melody = tracks.pop(melody_program)
    if not tracks:
        raise ConversionError("the MIDI has no accompanying track besides the melody")
    end = max(e for notes in [melody, *tracks.values()] for _, e, _ in notes)
    bars = bars or max(1, -(-end // bar))
    covered = sum(all(any(s < (b + 1) * bar and e > b * bar for s, e, _ in notes) for notes in tracks.values())
                  for b in range(bars))
    lowest = min(tracks, key=lambda p: sum(pitch for _, _, pitch in tracks[p]) / len(tracks[p]))
    bass = tracks[lowest]
    supported = consonant = counted = parallels = 0
    previous: tuple[int, int] | None = None  # (melody pitch, bass pitch) at the previous melody onset
    for start, _, pitch in melody:
        sounding = [p for s, e, p in bass if s <= start < e]
        if not sounding:
            previous = None
            continue
        supported += 1
        low = min(p for notes in tracks.values() for s, e, p in notes if s <= start < e)
        counted += 1
        consonant += (pitch - low) % 12 in CONSONANT
        here = (pitch, min(sounding))
        if previous and here[0] != previous[0] and here[1] != previous[1] and \
                (here[0] - here[1]) % 12 in PERFECT and (here[0] - here[1]) % 12 == (previous[0] - previous[1]) % 12:
            parallels += 1
        previous = here
    notes = sum(len(n) for n in tracks.values())
    return Fit(bars=bars, bars_covered=covered / bars, onsets_supported=supported / len(melody),
               consonance=consonant / counted if counted else 0.0, parallels_per_bar=parallels / bars,
               notes_per_bar=notes / bars)


def mean_fit(fits: Sequence[Fit]) -> dict[str, float]:
    """The mean of each measure over pieces."""
    if not fits:
        return {}
    keys = [k for k in fits[0].as_dict() if k != "bars"]
    return {k: round(sum(getattr(f, k) for f in fits) / len(fits), 4) for k in keys}


__all__ = ["CONSONANT", "Fit", "accompaniment_fit", "mean_fit"]
