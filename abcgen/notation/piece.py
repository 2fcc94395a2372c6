"""One piece of music as notes: read once from ABC text, never raising.

Every metric of ``abcgen.evaluation`` works on ``Piece`` objects, so generated tunes, real tunes and tunes
from another toolkit are read by the same code; the GAN's piano rolls (``abcgen.models.pianoroll``) are
made from its melody too, which is why it lives in the notation layer, below both. A text that cannot be read still becomes a ``Piece``
(``error`` says why, ``notes`` is empty): nothing is dropped, and validity counts it as invalid.

Times are in **whole notes** (a quarter note is 1/4) from the start of the body; pitches are MIDI numbers
(middle C = 60) with the key signature, bar accidentals and ties applied. Chord symbols (``"Am"``),
annotations, decorations and grace notes are not notes. A chord counts as its top note in the melody and
as all its notes in ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from abcgen.errors import AbcgenError
from abcgen.notation import events as ev
from abcgen.notation.bars import events_by_voice
from abcgen.notation.checks import TuneCheck, check_tune
from abcgen.notation.keys import Key
from abcgen.notation.lexer import unit_lengths
from abcgen.notation.pitches import sounding_pitches
from abcgen.notation.tune import Tune, normalise_tune


@dataclass(frozen=True, slots=True)
class Note:
    onset: Fraction  # whole notes from the start of the body (per voice)
    duration: Fraction  # whole notes, ties merged
    pitch: int  # MIDI number
    bar: int  # 0-based index of the bar it starts in (bars counted per voice, pickup included)


@dataclass
class Piece:
    """A tune read for evaluation. ``ok`` is our checker's verdict (parses, bars, repeats, not truncated)."""

    abc: str
    name: str = ""
    tune: Tune | None = None
    error: str | None = None  # why the text could not be read at all (then everything below is empty)
    check: TuneCheck | None = None
    melody: list[Note] = field(default_factory=list)  # voice 1, one note per onset (a chord's top note)
    notes: list[Note] = field(default_factory=list)  # every note of every voice, sorted by onset
    bar_texts: list[str] = field(default_factory=list)  # voice 1: the timed events' text of each bar
    bar_lines: list[str] = field(default_factory=list)  # voice 1: the bar-line texts in order ("|", ":|", "|1")
    num_voices: int = 0

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def ok(self) -> bool:
        return self.check is not None and self.check.ok

    @property
    def problems(self) -> list[str]:
        if self.error is not None:
            return [self.error]
        return self.check.problems if self.check else []

    @property
    def key(self) -> Key | None:
        try:
            return self.tune.key if self.tune else None
        except AbcgenError:
            return None

    @property
    def meter(self) -> Fraction | None:
        try:
            return self.tune.meter if self.tune else None
        except AbcgenError:
            return None


def read_piece(abc: str, name: str = "") -> Piece:
    """Normalise, lex, check and extract the notes of one tune. Never raises on bad ABC."""
    piece = Piece(abc=abc, name=name)
    try:
        tune = normalise_tune(abc, name=name or None)
        events = tune.events()
        key = tune.key
        piece.tune = tune
        piece.check = check_tune(tune)
    except AbcgenError as exc:
        piece.error = str(exc)
        return piece
    voices = events_by_voice(events)
    piece.num_voices = len(voices)
    for number, voice_events in enumerate(voices.values()):
        notes, bar_texts, bar_lines = _voice_notes(voice_events, key, tune.unit_length)
        piece.notes += [n for chord in notes for n in chord]
        if number == 0:
            piece.melody = [max(chord, key=lambda n: n.pitch) for chord in notes]
            piece.bar_texts, piece.bar_lines = bar_texts, bar_lines
    piece.notes.sort(key=lambda n: (n.onset, n.pitch))
    return piece


def read_pieces(texts: list[str], names: list[str] | None = None) -> list[Piece]:
    names = names or [f"#{i}" for i in range(len(texts))]
    return [read_piece(text, name) for text, name in zip(texts, names, strict=True)]


def _voice_notes(events: list[ev.Event], key: Key, unit_length: Fraction) -> tuple[list[list[Note]], list[str], list[str]]:
    """Notes of one voice grouped by onset (a chord is one group), and its bars' texts and bar lines."""
    # The key signature of *this* voice's events: sounding_pitches follows inline [K:] changes.
    pitched = {id(e): midis for e, midis in sounding_pitches(events, key)}
    lengths = unit_lengths(events, unit_length)
    groups: list[list[Note]] = []
    bar_texts: list[str] = []
    bar_lines: list[str] = []
    current_bar: list[str] = []
    time = Fraction(0)
    bar = 0
    tie_from: list[Note] | None = None  # the previous group when it ended with a tie
    for event, length in zip(events, lengths, strict=True):
        if event.kind == ev.BAR:
            if current_bar:
                bar_texts.append("".join(current_bar))
                current_bar = []
                bar += 1
            bar_lines.append(event.text.strip())
            continue
        if not event.is_timed:
            continue
        current_bar.append(event.text)
        duration = (event.duration or Fraction(0)) * length
        midis = pitched.get(id(event))
        if midis:
            if tie_from is not None and sorted(n.pitch for n in tie_from) == sorted(midis):
                # a tie continues the previous notes: lengthen them instead of starting new ones
                groups[-1] = [Note(n.onset, n.duration + duration, n.pitch, n.bar) for n in tie_from]
            else:
                groups.append([Note(time, duration, m, bar) for m in midis])
            tie_from = groups[-1] if event.tied else None
        else:
            tie_from = None
        time += duration
    if current_bar:
        bar_texts.append("".join(current_bar))
    return groups, bar_texts, bar_lines
