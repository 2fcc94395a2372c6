"""Melody piano rolls of a fixed number of bars: ABC -> rolls (the GAN's data) and rolls -> ABC (its output).

**Layout.** A roll is an array of shape ``(2, bars, bar_steps, num_pitches)``:

* channel 0 (``SOUNDING``) is 1 where a pitch sounds during a step;
* channel 1 (``ONSET``) is 1 where a note starts, so two repeated notes (``AA``) stay two notes and do not
  merge into one long ``A2``.

Pitch index ``i`` is MIDI pitch ``lowest_pitch + i``. Only one pitch sounds at a time (a melody: a chord
contributes its top note, as in ``abcgen.notation.piece``).

**Grid.** Time is quantised to ``steps_per_whole_note`` steps per whole note (16: a sixteenth note a step),
so a 4/4 or 2/2 bar has 16 steps, a 6/8 or 3/4 bar 12, a 2/4 bar 8 and a 9/8 bar 18. The roll's time axis
is ``bar_steps`` wide whatever the meter; the steps after the end of a shorter bar are always 0 (the GAN
masks them too). Meters whose bar is not a whole number of steps, or longer than ``bar_steps``, are not
supported and their tunes are skipped with that reason. Note onsets and ends are rounded to the nearest
step (half up); the report counts the notes that moved (triplets, 32nd notes) and the ones a
neighbour overwrote.

**Keys.** Every window is transposed to the *white-key* signature of its mode -- no sharps or flats: C
major, A minor, D dorian, G mixolydian, F lydian, E phrygian, B locrian -- by the nearest interval
(-6..+5 semitones), and the mode is kept as a condition. The tonic is given back on output:
``roll_to_abc`` writes the white-key tune and moves it to the requested key with
``abcgen.notation.transpose``, which spells every note the way the target key does.

**Windows.** The pickup is skipped; from there the body is cut into bars of exactly the meter's length
whose ends fall on written bar lines (a bar split in two at a repeat still counts as one bar); where a bar
line is off that grid, the run of bars ends and a new one starts at the next bar line. Each run is cut
into windows of ``bars`` bars (non-overlapping; the remainder is counted, not hidden). Windows whose
notes do not fit the pitch range are moved by whole octaves when that fits them in, else skipped. Every
tune and window that is dropped is counted with its reason in a ``WindowReport``.

**Output.** ``roll_to_abc`` decodes a roll monophonically (the highest sounding pitch of each step; a step
continues the previous note unless the pitch changes or an onset is set) and writes every bar to exactly
the meter's length (rests where silent, notes that cross a bar line tied), ``X:1``, ``M:``, ``L:1/8``,
``K:`` in the requested key, bar lines, and a final ``|]``: valid for our checker and abc2midi by
construction, whatever the roll holds.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from abcgen.corpus.labels import normalise_meter
from abcgen.errors import ConfigError
from abcgen.notation import events as ev
from abcgen.notation.bars import events_by_voice, split_bars
from abcgen.notation.keys import LETTERS, Key, format_key, parse_key
from abcgen.notation.lexer import parse_fraction
from abcgen.notation.piece import read_piece
from abcgen.notation.transpose import format_pitch, transpose_to_key
from abcgen.notation.tune import parse_tune

SOUNDING, ONSET = 0, 1
# The unit note length of every generated tune: durations are written as multiples of an eighth note.
OUTPUT_UNIT = Fraction(1, 8)
BARS_PER_LINE = 4
# Modes a white-key signature exists for (Key.mode values from abcgen.notation.keys.parse_key).
MODES = ("major", "minor", "dorian", "mixolydian", "lydian", "phrygian", "locrian")
# Pitch class -> (letter, alteration) with black keys spelt as sharps, for the white-key tune.
_SPELLING = {0: ("C", 0), 1: ("C", 1), 2: ("D", 0), 3: ("D", 1), 4: ("E", 0), 5: ("F", 0), 6: ("F", 1),
             7: ("G", 0), 8: ("G", 1), 9: ("A", 0), 10: ("A", 1), 11: ("B", 0)}
_OCTAVE_MOVES = (0, -12, 12, -24, 24)


def white_key(mode: str) -> Key:
    """The key of ``mode`` with no sharps or flats (``minor`` -> A minor, ``dorian`` -> D dorian)."""
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} has no white-key signature: use one of {', '.join(MODES)}")
    return next(key for key in (parse_key(f"{letter} {mode}") for letter in LETTERS) if key.sharps == 0)


def white_key_shift(key: Key) -> int:
    """Semitones (-6..+5, the nearest way) that move ``key``'s tonic to the white-key tonic of its mode."""
    shift = (white_key(key.mode).tonic_semitone() - key.tonic_semitone()) % 12
    return shift - 12 if shift > 5 else shift


@dataclass(frozen=True)
class RollGrid:
    """The shape of a roll: ``bars`` bars of ``bar_steps`` steps (``steps_per_whole_note`` a whole note)
    over ``num_pitches`` MIDI pitches from ``lowest_pitch``."""

    bars: int = 4
    steps_per_whole_note: int = 16
    bar_steps: int = 18
    lowest_pitch: int = 52
    num_pitches: int = 40

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (2, self.bars, self.bar_steps, self.num_pitches)

    def meter_problem(self, meter: Fraction | None) -> str | None:
        """Why a meter (whole notes per bar) cannot be put on this grid, or None when it can."""
        if meter is None:
            return "free meter (no bars to cut)"
        steps = meter * self.steps_per_whole_note
        if steps.denominator != 1:
            return f"meter of {meter} whole notes is not a whole number of 1/{self.steps_per_whole_note} steps"
        if steps > self.bar_steps:
            return f"meter of {meter} whole notes needs {steps} steps a bar, more than gan.bar_steps={self.bar_steps}"
        return None

    def steps_in_bar(self, meter: Fraction) -> int:
        """Steps of one bar of ``meter`` (whole notes); ConfigError when the grid cannot hold it."""
        problem = self.meter_problem(meter)
        if problem:
            raise ConfigError(f"{problem}: choose a meter such as 4/4, 6/8, 3/4 or 2/4, or widen the grid")
        return int(meter * self.steps_per_whole_note)

    def step_mask(self, meter: Fraction) -> np.ndarray:
        """``(bar_steps,)`` bool: True for the steps inside a bar of ``meter``."""
        return np.arange(self.bar_steps) < self.steps_in_bar(meter)


@dataclass
class RollWindow:
    """One training example: a roll and its conditions."""

    roll: np.ndarray  # (2, bars, bar_steps, num_pitches) uint8, in the white key of ``mode``
    key: str  # the tune's key label ("D major"); the roll itself is in the white key of ``mode``
    mode: str  # "major", "minor", "dorian", ...
    meter: str  # the meter label as the corpus writes it ("6/8", "4/4" for C)
    rhythm: str  # "reel", "jig", ... or "" when the tune has none
    source: str  # tune name and window start, for messages
    transposed_by: int  # semitones applied to reach the white key (octave moves included)


@dataclass
class WindowReport:
    """What happened to every tune and window (no silent drops)."""

    tunes: int = 0
    tunes_used: int = 0
    windows: int = 0
    skipped_tunes: Counter[str] = field(default_factory=Counter)  # reason -> tunes
    skipped_windows: Counter[str] = field(default_factory=Counter)  # reason -> windows
    bars: int = 0  # bars with notes in the tunes read (pickups included)
    bars_in_windows: int = 0
    notes: int = 0  # melody notes written into windows
    notes_moved_to_grid: int = 0  # onset or end not on the grid: rounded to the nearest step
    notes_overwritten: int = 0  # two notes rounded onto the same step: the later one kept
    windows_octave_moved: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"tunes": self.tunes, "tunes_used": self.tunes_used, "windows": self.windows,
                "tunes_skipped": sum(self.skipped_tunes.values()),
                "skipped_tunes": dict(self.skipped_tunes.most_common()),
                "windows_skipped": sum(self.skipped_windows.values()),
                "skipped_windows": dict(self.skipped_windows.most_common()),
                "bars": self.bars, "bars_in_windows": self.bars_in_windows, "notes": self.notes,
                "notes_moved_to_grid": self.notes_moved_to_grid, "notes_overwritten": self.notes_overwritten,
                "windows_octave_moved": self.windows_octave_moved}


# --- ABC -> windows --------------------------------------------------------------------------------------

def _round_half_up(value: Fraction) -> int:
    """The nearest integer, halves rounded up (Python's ``round`` rounds halves to even)."""
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def _bar_starts(line_times: list[Fraction], start: Fraction, end: Fraction, meter: Fraction) -> list[list[Fraction]]:
    """Runs of consecutive bar start times: each bar lasts ``meter`` and ends on a written bar line."""
    runs: list[list[Fraction]] = []
    run: list[Fraction] = []
    t = start
    while t + meter <= end:
        position = bisect.bisect_left(line_times, t + meter)
        if position < len(line_times) and line_times[position] == t + meter:
            run.append(t)
            t += meter
            continue
        if run:
            runs.append(run)
            run = []
        t = line_times[bisect.bisect_right(line_times, t)]  # the next bar line (end is one, so it exists)
    if run:
        runs.append(run)
    return runs


def windows_from_abc(abc: str, grid: RollGrid, report: WindowReport, *, rhythm: str = "",
                     name: str = "") -> list[RollWindow]:
    """The windows of one tune, counted in ``report`` (a skipped tune or window is counted with its reason)."""
    report.tunes += 1
    piece = read_piece(abc, name)
    if piece.error is not None or piece.tune is None:
        report.skipped_tunes["unreadable ABC"] += 1
        return []
    tune = piece.tune
    key, meter = piece.key, piece.meter
    if key is None or not key.tonic:
        report.skipped_tunes["no key signature (K:none)"] += 1
        return []
    problem = grid.meter_problem(meter)
    if problem or meter is None:
        report.skipped_tunes[problem or "free meter"] += 1
        return []
    voice = next(iter(events_by_voice(tune.events()).values()))
    if any(e.field and e.field[0] == "M" for e in voice if e.kind in (ev.FIELD, ev.VOICE)):
        report.skipped_tunes["meter changes inside the tune"] += 1
        return []
    bars = split_bars(voice, tune.unit_length, meter)
    report.bars += sum(b.has_notes for b in bars)
    if not piece.melody:
        report.skipped_tunes["no notes"] += 1
        return []
    ends = [Fraction(0)]
    for bar in bars:
        ends.append(ends[-1] + bar.duration)
    line_times = sorted(set(ends))
    # Skip the pickup: a first bar with notes shorter than the meter (an empty bar before "|:" takes no time).
    first = next(i for i, bar in enumerate(bars) if bar.has_notes)
    start = ends[first + 1] if bars[first].duration < meter else ends[first]
    runs = _bar_starts(line_times, start, line_times[-1], meter)
    starts = [run[i] for run in runs for i in range(0, len(run) - grid.bars + 1, grid.bars)]
    if not starts:
        report.skipped_tunes[f"fewer than {grid.bars} whole bars in a row after the pickup"] += 1
        return []
    shift = white_key_shift(key)
    spw = grid.steps_per_whole_note
    # (onset, end) in grid steps, exact (Fractions), and pitch: sorted by onset, one note per onset.
    notes = [(n.onset * spw, (n.onset + n.duration) * spw, n.pitch) for n in piece.melody]
    onsets = [onset for onset, _, _ in notes]
    windows = []
    for start in starts:
        first = bisect.bisect_left(onsets, start * spw)
        last = bisect.bisect_left(onsets, (start + grid.bars * meter) * spw)
        if first and notes[first - 1][1] > start * spw:
            first -= 1  # a note held over from the bar before the window sounds at its start
        window = _window(notes[first:last], start * spw, meter, grid, shift, report)
        if window is None:
            continue
        roll, moved = window
        report.windows += 1
        report.bars_in_windows += grid.bars
        windows.append(RollWindow(roll=roll, key=key.label, mode=key.mode, meter=_meter_label(tune.get("M"), meter),
                                  rhythm=rhythm, source=f"{name or tune.name} @ {start}", transposed_by=shift + moved))
    report.tunes_used += bool(windows)
    return windows


def _window(notes: list[tuple[Fraction, Fraction, int]], start: Fraction, meter: Fraction, grid: RollGrid,
            shift: int, report: WindowReport) -> tuple[np.ndarray, int] | None:
    """The roll of the ``grid.bars`` bars from ``start`` and its octave move, or None (counted).
    ``notes``: (onset, end, MIDI pitch) of the melody notes that sound in the window, by onset; times in
    grid steps from the start of the body, like ``start``."""
    per_bar = grid.steps_in_bar(meter)
    total = grid.bars * per_bar
    if not notes:
        report.skipped_windows["silent"] += 1
        return None
    pitches = [pitch + shift for _, _, pitch in notes]
    low, high = min(pitches), max(pitches)
    top = grid.lowest_pitch + grid.num_pitches - 1
    move = next((m for m in _OCTAVE_MOVES if low + m >= grid.lowest_pitch and high + m <= top), None)
    if move is None:
        report.skipped_windows[f"melody outside MIDI {grid.lowest_pitch}..{top} (span {high - low} semitones)"] += 1
        return None
    # Flattened in-bar steps (bar * per_bar + step); monophonic: a later note overwrites an earlier one.
    sounding = np.zeros((total, grid.num_pitches), dtype=np.uint8)
    onset = np.zeros((total, grid.num_pitches), dtype=np.uint8)
    for (note_on, note_off, _), pitch in zip(notes, pitches, strict=True):
        offset, end = max(note_on, start) - start, min(note_off - start, Fraction(total))
        report.notes_moved_to_grid += offset.denominator != 1 or end.denominator != 1
        first = _round_half_up(offset)
        last = min(total, max(first + 1, _round_half_up(end)))
        if first >= total:
            continue  # rounded onto the end of the window (counted as moved)
        report.notes += 1
        report.notes_overwritten += bool(onset[first].any())
        sounding[first:last] = 0
        onset[first:last] = 0
        sounding[first:last, pitch + move - grid.lowest_pitch] = 1
        onset[first, pitch + move - grid.lowest_pitch] = 1
    report.windows_octave_moved += move != 0
    roll = np.zeros(grid.shape, dtype=np.uint8)
    roll[SOUNDING, :, :per_bar] = sounding.reshape(grid.bars, per_bar, grid.num_pitches)
    roll[ONSET, :, :per_bar] = onset.reshape(grid.bars, per_bar, grid.num_pitches)
    return roll, move


def _meter_label(written: str | None, meter: Fraction) -> str:
    """The corpus's meter label (``C`` -> ``4/4``), as ``abcgen.corpus.labels.normalise_meter`` writes it."""
    return normalise_meter(meter, written)


def windows_from_rows(rows: Iterable[Mapping[str, Any]], grid: RollGrid) -> tuple[list[RollWindow], WindowReport]:
    """The windows of corpus rows (``abc``, ``rhythm``, ``title`` columns) and the report of what was kept."""
    report = WindowReport()
    windows: list[RollWindow] = []
    for row in rows:
        windows += windows_from_abc(str(row["abc"]), grid, report, rhythm=str(row.get("rhythm") or ""),
                                    name=str(row.get("title") or ""))
    return windows, report


# --- roll -> ABC -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MelodyNote:
    """A decoded note (``pitch`` a MIDI number) or rest (``pitch`` None), in flattened in-bar steps."""

    start: int
    steps: int
    pitch: int | None


def decode_melody(roll: np.ndarray, grid: RollGrid, meter: Fraction) -> list[MelodyNote]:
    """The melody of a roll ``(2, bars, bar_steps, num_pitches)`` (any number of bars; values > 0.5 are
    on): the highest sounding pitch of each step; a step continues the previous note unless its pitch
    differs or its onset is set. Steps after the end of each bar are ignored."""
    per_bar = grid.steps_in_bar(meter)
    if roll.ndim != 4 or roll.shape[0] != 2 or roll.shape[2:] != (grid.bar_steps, grid.num_pitches):
        raise ConfigError(f"a roll of shape {tuple(roll.shape)} does not fit the grid "
                          f"(2, bars, {grid.bar_steps}, {grid.num_pitches})")
    bars = roll.shape[1]
    sounding = (np.asarray(roll[SOUNDING, :, :per_bar]) > 0.5).reshape(bars * per_bar, grid.num_pitches)
    onset = (np.asarray(roll[ONSET, :, :per_bar]) > 0.5).reshape(bars * per_bar, grid.num_pitches)
    notes: list[MelodyNote] = []
    for step in range(bars * per_bar):
        active = np.flatnonzero(sounding[step])
        index = int(active[-1]) if active.size else None
        pitch = None if index is None else grid.lowest_pitch + index
        if notes and notes[-1].pitch == pitch and not (index is not None and onset[step, index]):
            notes[-1] = MelodyNote(notes[-1].start, notes[-1].steps + 1, pitch)
        else:
            notes.append(MelodyNote(step, 1, pitch))
    return notes


def _duration_text(steps: int, grid: RollGrid) -> str:
    """``steps`` grid steps as an ABC length in ``OUTPUT_UNIT`` units: ``""``, ``"3"``, ``"/2"``, ``"3/2"``."""
    length = Fraction(steps, grid.steps_per_whole_note) / OUTPUT_UNIT
    if length == 1:
        return ""
    if length.denominator == 1:
        return str(length.numerator)
    return (str(length.numerator) if length.numerator != 1 else "") + f"/{length.denominator}"


def _bar_text(pieces: list[tuple[int | None, int, bool]], grid: RollGrid) -> str:
    """One bar of the white-key tune from (pitch, steps, tied to the next bar) pieces.

    Accidentals are tracked per letter and octave as ABC applies them (to the end of the bar), so a
    natural after a sharp gets its ``=``; a note tied over the bar line repeats its accidental."""
    in_effect: dict[tuple[str, int], int] = {}
    out = []
    for pitch, steps, tied in pieces:
        if pitch is None:
            out.append("z" + _duration_text(steps, grid))
            continue
        letter, alteration = _SPELLING[pitch % 12]
        octave = pitch // 12 - 5
        accidental = ""
        if in_effect.get((letter, octave), 0) != alteration:
            accidental = "^" if alteration else "="
            in_effect[(letter, octave)] = alteration
        out.append(format_pitch(letter, octave, accidental) + _duration_text(steps, grid) + ("-" if tied else ""))
    return "".join(out)


def roll_to_abc(roll: np.ndarray, grid: RollGrid, *, meter: str, key: str, rhythm: str = "", title: str = "") -> str:
    """A roll in the white key of ``key``'s mode (any number of bars) as a tune in ``key``.

    ``meter`` is a meter text (``6/8``, ``C``), ``key`` a key text (``D``, ``A dorian``, ``Em``); ``rhythm``
    and ``title`` add ``R:`` and ``T:`` when given. Every bar lasts exactly the meter; the tune ends with ``|]``."""
    meter_length = parse_fraction(meter)
    if meter_length is None:
        raise ConfigError(f"meter {meter!r} cannot be written as bars: give one such as 4/4 or 6/8")
    target = parse_key(key)
    if not target.tonic:
        raise ConfigError(f"key {key!r} has no tonic: give one such as D, A minor or E dorian")
    per_bar = grid.steps_in_bar(meter_length)
    bars: list[list[tuple[int | None, int, bool]]] = [[] for _ in range(roll.shape[1])]
    for note in decode_melody(roll, grid, meter_length):
        step, remaining = note.start, note.steps
        while remaining:
            bar, position = divmod(step, per_bar)
            steps = min(remaining, per_bar - position)
            remaining -= steps
            step += steps
            bars[bar].append((note.pitch, steps, bool(remaining) and note.pitch is not None))
    lines = []
    for first in range(0, len(bars), BARS_PER_LINE):
        chunk = [_bar_text(pieces, grid) for pieces in bars[first:first + BARS_PER_LINE]]
        last = first + BARS_PER_LINE >= len(bars)
        lines.append(" | ".join(chunk) + (" |]" if last else " |"))
    header = ["X:1"] + ([f"T:{title}"] if title else []) + [f"M:{meter}", "L:1/8"]
    header += [f"R:{rhythm}"] if rhythm else []
    header.append(f"K:{format_key(white_key(target.mode))}")
    white = parse_tune("\n".join(header + lines) + "\n")
    return transpose_to_key(white, target.tonic).to_abc()
