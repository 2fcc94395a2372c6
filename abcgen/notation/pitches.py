"""Sounding pitches of lexed notes: key signature, bar-local accidentals and ties applied.

ABC accidentals last to the end of the bar and apply to the same letter *and octave*; the key
signature applies otherwise. Inline ``[K:...]`` fields change the signature from that point on.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

from abcgen.notation import events as ev
from abcgen.notation.events import Event, Pitch
from abcgen.notation.keys import NATURAL_SEMITONES, Key, parse_key
from abcgen.notation.lexer import unit_lengths

ACCIDENTAL_SEMITONES = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
MIDDLE_C = 60


def natural_midi(letter: str, octave: int) -> int:
    """MIDI number of a natural letter in abcgen's octave numbering (``C`` = middle C = 60)."""
    return MIDDLE_C + 12 * octave + NATURAL_SEMITONES[letter]


class AccidentalState:
    """What alteration a written pitch gets: explicit accidental > earlier one in this bar > signature."""

    def __init__(self, key: Key) -> None:
        self.set_key(key)

    def set_key(self, key: Key) -> None:
        self.signature = key.accidentals()
        self.bar: dict[tuple[str, int], int] = {}

    def new_bar(self) -> None:
        self.bar.clear()

    def alteration(self, pitch: Pitch) -> int:
        if pitch.accidental:
            semis = ACCIDENTAL_SEMITONES[pitch.accidental]
            self.bar[(pitch.letter, pitch.octave)] = semis
            return semis
        return self.bar.get((pitch.letter, pitch.octave), self.signature[pitch.letter])

    def midi(self, pitch: Pitch) -> int:
        return natural_midi(pitch.letter, pitch.octave) + self.alteration(pitch)


def sounding_pitches(events: list[Event], key: Key) -> list[tuple[Event, tuple[int, ...]]]:
    """Each NOTE/CHORD event with its MIDI pitches (a chord gives several), in order."""
    state = AccidentalState(key)
    out: list[tuple[Event, tuple[int, ...]]] = []
    for event in events:
        if event.kind == ev.BAR:
            state.new_bar()
        elif event.kind in (ev.FIELD, ev.VOICE) and event.field and event.field[0] == "K":
            state.set_key(parse_key(event.field[1]))
        elif event.kind == ev.NOTE and event.pitch:
            out.append((event, (state.midi(event.pitch),)))
        elif event.kind == ev.CHORD:
            out.append((event, tuple(state.midi(p) for p in event.notes)))
    return out


def melody_fingerprint(events: list[Event], key: Key, unit_length: Fraction) -> str:
    """A transposition-invariant fingerprint of a melody: the hash of its successive pitch intervals
    and note lengths (whole notes; chords by their top note; tied notes merged; rests, grace notes and
    decorations ignored). Two tunes that differ only by key, bar-line layout or ornaments collide."""
    parts: list[str] = []
    previous: int | None = None
    pending_tie = False
    durations: list[Fraction] = []
    pitches: list[int] = []
    state_events = sounding_pitches(events, key)
    l_at = {id(e): length for e, length in zip(events, unit_lengths(events, unit_length), strict=True)}
    for event, midis in state_events:
        top = max(midis)
        length = (event.duration or Fraction(0)) * l_at[id(event)]
        if pending_tie and pitches and pitches[-1] == top:
            durations[-1] += length
        else:
            pitches.append(top)
            durations.append(length)
        pending_tie = event.tied
    for pitch, length in zip(pitches, durations, strict=True):
        interval = 0 if previous is None else pitch - previous
        parts.append(f"{interval}:{length.numerator}/{length.denominator}")
        previous = pitch
    return hashlib.blake2b(" ".join(parts).encode(), digest_size=12).hexdigest()
