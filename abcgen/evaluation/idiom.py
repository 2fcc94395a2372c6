"""Folk idiom and form, per piece: what a player hears in a tune beyond valid ABC (``folk-idiom.md``).

Every value is computed by the same code on generated and real tunes; ``report.py`` shows them side by side
under "Folk idiom and form" (tiers G1-G4). Values are 0/1 flags or shares in [0, 1], NaN where undefined
(an unreadable piece, ``K:none``, a tune without the bars a value needs).

* ``uses_<idiom>`` (G1), one per idiom of ``abcgen.grammar.idioms.IDIOMS`` (broken rhythm, tuplets, ties,
  grace notes, decorations, slurs, chord symbols, chords): 1 when the tune uses it at least once. What
  counts as an idiom is ``tune_idioms``'s, the same reading that decides which idioms the grammar allows.
* ``ends_on_tonic`` (G2): 1 when the last melody note (voice 1, the last one written: a second ending's)
  has the pitch class of the tonic of the header's ``K:`` (the tonic of A dorian is A).
* ``phrase_cadence`` (G2): the share of phrase ends whose last melody note is a note of the tonic triad
  (degrees 1, 3 and 5 of the ``K:`` mode's scale: D F# A in D major, A C E in A dorian). Phrase ends are
  the bars numbered 4, 8, 12, ... of each section, where:

  - a **section** is a run of bars between section marks: a bar line with a repeat colon (``|:``, ``:|``,
    ``::``), a double or closing bar (``||``, ``|]``, ``[|``) or a ``P:`` part change;
  - bars are **numbered from 1 in each section without its pickup** (a short first bar of the section, as
    ``counted_bars`` leaves out the tune's pickup: ``|:A|dfd ...`` and ``:| f|afa ...`` start at the bar
    after the ``A`` and the ``f``);
  - a **second ending** (``:|2``, ``[2``) is numbered from where the first ending began, so the last bar of
    an eight-bar part is bar 8 in both endings (an ending does not open a section).

  For a usual dance tune (two eight-bar parts) the phrase ends are bars 4 and 8 of each part.
* ``bar_repeats`` (G3): the share of voice 1's bars with notes whose notes -- (onset in the bar, duration,
  sounding pitch) of every melody note starting in it -- equal those of an earlier bar of the tune.
* ``strong_beats`` (G4): the share of full bars (as long as the header's meter) with a melody note starting
  on every main beat of the meter. Main beats: the dotted quarters of compound meters (6/8: 0 and 3/8;
  9/8: three; 12/8: four), the half bars of 4/4, ``C``, ``C|`` and 2/2 (a reel's two beats), the quarters
  of 3/4 and 2/4; the grammar's beamed groups (``abcgen.grammar.timing.beam_length``), so the beats the
  constrained decoder writes its notes in are the beats measured here. A note tied over a beat leaves the
  beat without an onset.

``bar_repeats`` compares notes, where ``metrics.self_similarity`` (D3) compares bar *texts*: the text of a
bar keeps only its notes and rests, so ``A>B c>d`` and ``AB cd`` (broken rhythm), ``(3ABc`` and ``ABc`` read
as equal, and ``~A2`` / ``A2`` as equal too while a tie into the bar is not seen. Comparing sounding notes
counts a repeat only when the music repeats. The share is of all bars with notes (the first included), as
the reference's "24 % of all bars" is.

``bars_without_pickups`` is the bar count a tune asks for: bars with music, no pickup counted, neither the
tune's nor a section's (``|:A|...|D3 D2:||:f|afa...``: 16 bars, not 17 as ``counted_bars`` counts them).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from abcgen.errors import AbcgenError
from abcgen.grammar.idioms import IDIOMS, tune_idioms
from abcgen.grammar.timing import beam_length, meter_parts
from abcgen.notation.bars import Bar, counted_bars
from abcgen.notation.keys import MODE_OFFSETS, Key
from abcgen.notation.piece import Note, Piece

__all__ = [
    "IDIOM_ROWS",
    "IDIOM_VALUE_NAMES",
    "bars_without_pickups",
    "idiom_values",
    "main_beats",
    "numbered_bars",
    "phrase_end_bars",
    "sections",
    "tonic_triad",
]

NAN = float("nan")

IDIOM_VALUE_NAMES: tuple[str, ...] = (
    *(f"uses_{name}" for name in IDIOMS), "ends_on_tonic", "phrase_cadence", "bar_repeats", "strong_beats",
)

# The report's rows of this module: (value name, tier, description); flags are reported as % of tunes, shares
# as the mean share per tune in %. Published values beside them are in ``report.REFERENCES``.
_IDIOM_LABELS = {"broken": "broken rhythm (A>B)", "tuplets": "tuplets ((3ABc)", "ties": "ties (A2-A)",
                 "grace": "grace notes ({g}A)", "decorations": "decorations (~A, .A, !trill!A)",
                 "slurs": "slurs ((AB))", "chord_symbols": 'chord symbols ("Am")', "chords": "chords ([ceg])"}
IDIOM_ROWS: tuple[tuple[str, str, str], ...] = (
    *((f"uses_{name}", "G1", f"tunes using {_IDIOM_LABELS.get(name, name)}") for name in IDIOMS),
    ("ends_on_tonic", "G2", "tunes whose last melody note is the tonic of K:"),
    ("phrase_cadence", "G2", "phrase ends (last note of bars 4, 8, ... of each section, pickup not counted) on "
     "a note of the tonic triad"),
    ("bar_repeats", "G3", "bars whose notes (pitches, lengths, onsets) equal an earlier bar's"),
    ("strong_beats", "G4", "full bars with a note starting on every main beat (6/8: 2 dotted quarters; 4/4, "
     "2/2: 2 half bars; 3/4: 3 quarters)"),
)

# Bar lines that close a section (as the bar check's tolerance reads them).
_SECTION_MARKS = (":", "||", "]", "[|")
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# Which degree of the major scale each mode starts on (dorian: the 2nd), to build the mode's own scale.
_MODE_ROTATION = {"major": 0, "ionian": 0, "dorian": 1, "phrygian": 2, "lydian": 3, "mixolydian": 4,
                  "minor": 5, "aeolian": 5, "locrian": 6}
assert set(_MODE_ROTATION) == set(MODE_OFFSETS)  # a new mode in notation needs its rotation here


# ---------------------------------------------------------------- bars: sections, numbers, the count


def _opens_section(bar: Bar) -> bool:
    """The bar starts a section: after a repeat colon, a double/closing bar or a ``P:`` change. An ending
    (``:|2``, ``[2``) does not: it continues the section its first ending belongs to."""
    if bar.ending:
        return False
    return bar.section_start or any(mark in bar.opening for mark in _SECTION_MARKS)


def sections(bars: Sequence[Bar]) -> list[list[Bar]]:
    """The bars with music (a bar check's ``bars``, voice 1) split into sections (see the module docstring),
    each without its pickup: ``counted_bars`` applied to each section (``g |:fed ...``: the pickup alone is
    a section, and it is left empty)."""
    split: list[list[Bar]] = []
    for bar in bars:
        if not bar.has_notes:
            continue
        if not split or _opens_section(bar):
            split.append([])
        split[-1].append(bar)
    return [counted_bars(section) for section in split]


def bars_without_pickups(bars: Sequence[Bar]) -> int:
    """Bars with music, no pickup counted (the tune's, nor a section's): the number of bars to ask for."""
    return sum(len(section) for section in sections(bars))


def numbered_bars(bars: Sequence[Bar]) -> list[tuple[Bar, int]]:
    """Every bar of ``sections(bars)`` with its 1-based number in its section; a second (third ...) ending
    is numbered from where the first ending began."""
    out: list[tuple[Bar, int]] = []
    for section in sections(bars):
        number = 0
        first_ending_from: int | None = None
        for bar in section:
            if bar.ending.startswith("1"):
                first_ending_from = number
            elif bar.ending and first_ending_from is not None:
                number = first_ending_from
            number += 1
            out.append((bar, number))
    return out


def phrase_end_bars(bars: Sequence[Bar], phrase: int = 4) -> list[Bar]:
    """The bars numbered ``phrase``, ``2 * phrase``, ... in their section (``numbered_bars``)."""
    return [bar for bar, number in numbered_bars(bars) if number % phrase == 0]


# ---------------------------------------------------------------- keys and meters


def tonic_triad(key: Key) -> frozenset[int]:
    """Pitch classes of degrees 1, 3, 5 of the key's mode (0 = C); empty for ``K:none``."""
    if not key.tonic or key.mode not in _MODE_ROTATION:
        return frozenset()
    rotation = _MODE_ROTATION[key.mode]
    scale = [(_MAJOR_SCALE[(rotation + i) % 7] - _MAJOR_SCALE[rotation]) % 12 for i in range(7)]
    return frozenset((key.tonic_semitone() + scale[degree]) % 12 for degree in (0, 2, 4))


def main_beats(meter_text: str | None, meter: Fraction | None) -> tuple[Fraction, ...] | None:
    """Onsets (whole notes from the bar start) of the meter's main beats; None in free meter or for a meter
    that is not a whole number of beats."""
    if meter is None or meter <= 0:
        return None
    numerator, denominator = meter_parts(meter, meter_text)
    beat = beam_length(numerator, denominator)
    count = meter / beat
    if count.denominator != 1:
        return None
    return tuple(k * beat for k in range(count.numerator))


# ---------------------------------------------------------------- per-piece values


def idiom_values(piece: Piece) -> dict[str, float]:
    """The values of ``IDIOM_VALUE_NAMES`` for one piece (see the module docstring), NaN where undefined."""
    values = dict.fromkeys(IDIOM_VALUE_NAMES, NAN)
    if piece.tune is None or piece.check is None:
        return values
    try:
        used = tune_idioms(piece.abc)
    except AbcgenError:
        used = None  # the raw text did not lex (its normalised form did): no idiom values
    if used is not None:
        values.update({f"uses_{name}": float(name in used) for name in IDIOMS})
    key = piece.key
    if key is not None and key.tonic and piece.melody:
        values["ends_on_tonic"] = float(piece.melody[-1].pitch % 12 == key.tonic_semitone())
    music_bars = [b for b in piece.check.report.bars if b.has_notes]
    if not piece.melody or len(music_bars) != len(piece.bar_texts):
        return values  # the melody and the bar check split bars alike on every real tune (as in groove)
    notes_by_bar: list[list[Note]] = [[] for _ in music_bars]
    for note in piece.melody:
        notes_by_bar[note.bar].append(note)
    starts = [Fraction(0)]
    for bar in music_bars[:-1]:
        starts.append(starts[-1] + bar.duration)
    values["phrase_cadence"] = _phrase_cadence(music_bars, notes_by_bar, key)
    values["bar_repeats"] = _bar_repeats(notes_by_bar, starts)
    values["strong_beats"] = _strong_beats(piece, music_bars, notes_by_bar, starts)
    return values


def _phrase_cadence(music_bars: list[Bar], notes_by_bar: list[list[Note]], key: Key | None) -> float:
    triad = tonic_triad(key) if key is not None else frozenset()
    if not triad:
        return NAN
    index = {id(bar): i for i, bar in enumerate(music_bars)}
    hits = [notes_by_bar[index[id(bar)]][-1].pitch % 12 in triad
            for bar in phrase_end_bars(music_bars) if notes_by_bar[index[id(bar)]]]
    return sum(hits) / len(hits) if hits else NAN


def _bar_repeats(notes_by_bar: list[list[Note]], starts: list[Fraction]) -> float:
    seen: set[tuple[tuple[Fraction, Fraction, int], ...]] = set()
    repeats = bars = 0
    for notes, start in zip(notes_by_bar, starts, strict=True):
        if not notes:
            continue
        signature = tuple((n.onset - start, n.duration, n.pitch) for n in notes)
        repeats += signature in seen
        bars += 1
        seen.add(signature)
    return repeats / bars if bars >= 2 else NAN


def _strong_beats(piece: Piece, music_bars: list[Bar], notes_by_bar: list[list[Note]],
                  starts: list[Fraction]) -> float:
    meter = piece.meter
    beats = main_beats(piece.tune.get("M") if piece.tune else None, meter)
    if beats is None:
        return NAN
    full = [(notes, start) for bar, notes, start in zip(music_bars, notes_by_bar, starts, strict=True)
            if bar.meter == meter and bar.duration == meter]
    if not full:
        return NAN
    on_every_beat = sum(set(beats) <= {n.onset - start for n in notes} for notes, start in full)
    return on_every_beat / len(full)

