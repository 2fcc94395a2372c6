"""Evaluation of MIDI: read, check, describe and score generated MIDI against real MIDI, tier by tier.

Why: a REMI model writes MIDI and an ABC model writes ABC. Converting the ABC model's tunes with abc2midi
(``abcgen.notation.remi.abc_to_midi``) and scoring both sets here, against the same real tunes converted the
same way, measures both models by one piece of code: ``format_midi_report({"abc": a, "remi": b})`` prints
them in one table. Rows carry the ABC report's names and tiers (``abcgen.evaluation.report``) wherever the
quantity exists in both; a quantity only MIDI has gets a name of its own.

Units. Times are ticks as written and *beats*, the time signature's denominator note (as REMI counts its
24 positions a beat), so a 6/8 beat is an eighth; the copy symbols use quarter notes, which do not depend
on the meter. Pitches are MIDI numbers, intervals semitones, rates % where the unit says so.

Onsets closer than ``1 / ONSET_GRID_PER_QUARTER`` of a quarter are one onset: abc2midi starts every note
one tick late (tick 1, 481, ...) and a decoded REMI sequence does not, and neither may split a chord.

Which notes: every pitched note of every track (drum-channel notes are counted by the check, never
described).

Bars are the file's grid from tick 0. abc2midi writes a tune's pickup (anacrusis) at tick 0, unpadded, so
the grid of such a tune is shifted by the pickup; ``onsets_on_beats`` and the bar count read that grid, as
REMI's ``Bar`` tokens do, on the generated and the real side alike. The *melody* (copies) is the highest note per onset of ``MELODY_PROGRAM``'s track (a folk
tune's melody, a chorale's soprano), of all tracks when the piece has no such track.

Tiers (names as in the ABC report where the metric exists in both):

* A1 ``strict_validity`` (``check_midi`` against the request), ``midi_readable`` (both readers, notes);
* B1 ``overlap_<feature>``, ``overlap_mean``, ``kl_mean``: Yang & Lerch's overlap of intra- and inter-set
  distance densities (``metrics._overlap_and_kl``, the ABC tier's own code) per ``MIDI_FEATURES``; the real
  column is the floor, one half of the real set against the other;
* C per-piece descriptors, all tracks and per program (``_program<N>``);
* E1 ``nearest_neighbour_similarity``, ``copy_rate``, ``exact_copies`` (``novelty.NoveltyIndex`` over
  ``midi_melody_symbols``), E2 ``duplicates_within_set``;
* F1 ``key_adherence_ks``/``key_signature_adherence_ks`` (and ``_aarden``), F2 ``meter_adherence``,
  F3 ``bars_adherence``, F5 ``programs_adherence``.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
import os
import re
import statistics
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from abcgen._extras import needs_extra
from abcgen.errors import ConfigError, ConversionError
from abcgen.evaluation import novelty, stats
from abcgen.evaluation.report import REFERENCES, Metric, _fmt, adherence_summary
from abcgen.notation.keys import Key, key_for, parse_key
from abcgen.notation.remi import MELODY_PROGRAM, PROGRAM_RANGES

with needs_extra("eval"):  # a missing package: one line naming pip install 'abcgen[eval]'
    from scipy.spatial.distance import cdist, pdist

logger = logging.getLogger(__name__)

__all__ = [
    "DURATION_CLASSES",
    "MIDI_FEATURES",
    "MidiCheck",
    "MidiNote",
    "MidiPiece",
    "TimeSignature",
    "check_midi",
    "evaluate_midi",
    "format_midi_report",
    "midi_features",
    "midi_melody_symbols",
    "midi_overlap",
    "midi_values",
    "read_midi",
]

MidiSource = bytes | bytearray | str | os.PathLike[str]

NAN = float("nan")

# Onsets within 1/96 of a quarter of each other are one onset (5 ticks at 480 a quarter): abc2midi's
# one-tick delay is inside it, the finest REMI position (1/24 of a 16th-note beat, 1/96 quarter) is not.
ONSET_GRID_PER_QUARTER = 96

# Duration and inter-onset classes in beats (the denominator note), shortest first; a value goes to the
# nearest on a log scale, as the ABC tier's note-length bins: a 6/8 eighth is 1, a 4/4 eighth 1/2, an
# eighth-note triplet in 4/4 1/3, a dotted quarter in 6/8 3.
DURATION_CLASSES: tuple[Fraction, ...] = tuple(Fraction(x) for x in (
    "1/8", "1/6", "1/4", "1/3", "1/2", "2/3", "3/4", "1", "3/2", "2", "3", "4", "6", "8"))
_LOG_DURATION_CLASSES = np.log2(np.array([float(c) for c in DURATION_CLASSES]))

# The per-piece features of the overlap tier (B1): each a vector per piece, a scalar one a 1-vector.
MIDI_FEATURES: tuple[str, ...] = (
    "pitch_class_duration_histogram", "duration_histogram", "ioi_histogram", "pitch_range", "pitch_mean",
    "notes_per_bar", "polyphony", "onsets_on_beats",
)
# Per-piece descriptors (tier C) of all tracks; per program as ``<name>_program<N>`` for the first three.
_DESCRIPTORS: tuple[tuple[str, str, str], ...] = (
    ("pitch_range", "semitones", "highest minus lowest pitch, all tracks"),
    ("pitch_mean", "semitones", "mean MIDI pitch of the notes (60 = middle C), all tracks"),
    ("notes_per_bar", "", "notes / bars, all tracks"),
    ("polyphony", "", "mean number of notes sounding at an onset (a melody alone: 1)"),
    ("onsets_on_beats", "%", "onsets on a main beat of the meter (6/8: dotted quarters; 4/4: half bars)"),
)
_PER_PROGRAM = ("pitch_range", "pitch_mean", "notes_per_bar")
_PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_METER_ALIASES = {"C": (4, 4), "C|": (2, 2)}
# Rows measured as the ABC report measures them (same estimator on the same notes; abc2midi only expands
# the repeats), so its published reference applies.
_SAME_AS_ABC = frozenset({"key_adherence_ks", "key_signature_adherence_ks", "key_adherence_aarden",
                          "key_signature_adherence_aarden"})


# ---------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class MidiNote:
    """One pitched note: onset and duration in beats (from the start) and in ticks, program (0-based
    General MIDI), velocity, and the index of its track in the file."""

    onset: float
    duration: float
    onset_ticks: int
    duration_ticks: int
    pitch: int
    program: int
    velocity: int
    track: int

    @property
    def end_ticks(self) -> int:
        return self.onset_ticks + self.duration_ticks


@dataclass(frozen=True, slots=True)
class TimeSignature:
    """A time signature from ``tick`` on."""

    tick: int
    numerator: int
    denominator: int

    @property
    def text(self) -> str:
        return f"{self.numerator}/{self.denominator}"

    def bar_ticks(self, ticks_per_quarter: int) -> Fraction:
        return Fraction(4 * ticks_per_quarter * self.numerator, self.denominator)

    def beat_ticks(self, ticks_per_quarter: int) -> Fraction:
        return Fraction(4 * ticks_per_quarter, self.denominator)


@dataclass(frozen=True)
class MidiPiece:
    """A MIDI file read for evaluation (``read_midi``).

    ``time_signatures``: the changes in order, the first at tick 0 (MIDI's default 4/4 when the file has
    none there: ``meter_written`` False); changes at or after the music's end are dropped. ``bars``: bars
    up to the end of the last note on that grid (bars start at tick 0 and at each change; a bar cut short
    by a change counts as one). ``tempos``: (tick, quarter notes a minute); ``key_signatures``: (tick, key)
    as the file writes them (major or minor). ``drum_notes``: notes on drum tracks, not in ``notes``."""

    name: str
    notes: tuple[MidiNote, ...] = field(repr=False)
    ticks_per_quarter: int
    time_signatures: tuple[TimeSignature, ...]
    tempos: tuple[tuple[int, float], ...]
    key_signatures: tuple[tuple[int, Key], ...]
    bars: int
    end_ticks: int
    drum_notes: int = 0
    meter_written: bool = True
    _first_bars: tuple[int, ...] = field(default=(), repr=False)  # bar index at each time signature
    _first_beats: tuple[float, ...] = field(default=(), repr=False)  # beats at each time signature

    @property
    def programs(self) -> tuple[int, ...]:
        """The programs that have notes, ascending."""
        return tuple(sorted({n.program for n in self.notes}))

    @property
    def meter(self) -> str:
        """The first time signature, ``"6/8"``."""
        return self.time_signatures[0].text

    @property
    def key(self) -> Key | None:
        """The file's first key signature, None without one."""
        return self.key_signatures[0][1] if self.key_signatures else None

    def _segment(self, tick: float) -> int:
        return max(0, bisect.bisect_right([ts.tick for ts in self.time_signatures], tick) - 1)

    def beats_at(self, tick: float) -> float:
        """Beats (denominator notes of the time signature in force) from the start to ``tick``."""
        i = self._segment(tick)
        ts = self.time_signatures[i]
        return self._first_beats[i] + (tick - ts.tick) / float(ts.beat_ticks(self.ticks_per_quarter))

    def bar_at(self, tick: float) -> tuple[int, float, TimeSignature]:
        """(bar index from 0, ticks into that bar, its time signature) of ``tick``."""
        i = self._segment(tick)
        ts = self.time_signatures[i]
        length = float(ts.bar_ticks(self.ticks_per_quarter))
        k = math.floor((tick - ts.tick) / length)
        return self._first_bars[i] + k, tick - ts.tick - k * length, ts

    def bar_end(self, bars: int) -> float:
        """The tick where the first ``bars`` bars end on the file's grid (the last meter goes on)."""
        i = max(0, bisect.bisect_right(list(self._first_bars), bars) - 1)
        ts = self.time_signatures[i]
        return ts.tick + (bars - self._first_bars[i]) * float(ts.bar_ticks(self.ticks_per_quarter))


def _midi_bytes(data: MidiSource) -> tuple[bytes, str]:
    """The file's bytes and a name for messages. Raises ConversionError for a path it cannot read."""
    if isinstance(data, bytes | bytearray):
        return bytes(data), f"<{len(data)} bytes of MIDI>"
    path = Path(data)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise ConversionError(f"cannot read MIDI file {path}: {exc.strerror}; give an existing .mid path "
                              "or the file's bytes") from exc


def _key_of_signature(sharps: int, minor: bool) -> Key:
    """The key a MIDI key signature names: sharps count fifths from C major (A minor for a minor one)."""
    return key_for((7 * sharps + (9 if minor else 0)) % 12, "minor" if minor else "major")


def _parse(raw: bytes, name: str) -> MidiPiece:
    from symusic import Score  # a dependency of miditok (core); imported here: loading it takes ~0.1 s

    try:
        score = Score.from_midi(raw)
    except Exception as exc:  # symusic raises RuntimeError with its C++ message
        raise ConversionError(f"cannot read MIDI {name}: {exc}") from exc
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise ConversionError(f"MIDI {name} has {tpq} ticks a quarter; a file needs a positive resolution")
    raw_notes: list[tuple[int, int, int, int, int, int]] = []  # onset, duration, pitch, program, velocity, track
    drums = 0
    for index, track in enumerate(score.tracks):
        if track.is_drum:
            drums += len(track.notes)
            continue
        raw_notes += [(int(n.time), max(int(n.duration), 0), int(n.pitch), int(track.program), int(n.velocity),
                       index) for n in track.notes]
    raw_notes.sort(key=lambda n: (n[0], -n[2], n[5]))
    end = max((onset + duration for onset, duration, *_ in raw_notes), default=0)

    signatures: dict[int, TimeSignature] = {}
    for ts in sorted(score.time_signatures, key=lambda t: t.time):  # the last at a tick wins
        if int(ts.numerator) > 0 and int(ts.denominator) > 0 and (int(ts.time) < end or int(ts.time) == 0):
            signatures[int(ts.time)] = TimeSignature(int(ts.time), int(ts.numerator), int(ts.denominator))
    meter_written = 0 in signatures
    if not meter_written:
        signatures[0] = TimeSignature(0, 4, 4)  # MIDI's default until the first time signature
    changes: list[TimeSignature] = []
    for ts in sorted(signatures.values(), key=lambda t: t.tick):
        if not changes or (ts.numerator, ts.denominator) != (changes[-1].numerator, changes[-1].denominator):
            changes.append(ts)
    first_bars, first_beats = [0], [0.0]
    for ts, following in zip(changes, changes[1:], strict=False):
        span = following.tick - ts.tick
        first_bars.append(first_bars[-1] + math.ceil(Fraction(span) / ts.bar_ticks(tpq)))
        first_beats.append(first_beats[-1] + float(Fraction(span) / ts.beat_ticks(tpq)))

    def count_bars(end_tick: int) -> int:
        if end_tick <= 0:
            return 0
        i = max(0, bisect.bisect_left([ts.tick for ts in changes], end_tick) - 1)  # the last start < end
        return first_bars[i] + math.ceil(Fraction(end_tick - changes[i].tick) / changes[i].bar_ticks(tpq))

    piece = MidiPiece(
        name=name, notes=(), ticks_per_quarter=tpq, time_signatures=tuple(changes),
        tempos=tuple((int(t.time), float(t.qpm)) for t in score.tempos),
        key_signatures=tuple((int(k.time), _key_of_signature(int(k.key), bool(k.tonality)))
                             for k in score.key_signatures if -7 <= int(k.key) <= 7),
        bars=count_bars(end), end_ticks=end, drum_notes=drums, meter_written=meter_written,
        _first_bars=tuple(first_bars), _first_beats=tuple(first_beats))
    notes = []
    for onset, duration, pitch, program, velocity, track in raw_notes:
        start = piece.beats_at(onset)
        notes.append(MidiNote(start, piece.beats_at(onset + duration) - start, onset, duration, pitch, program,
                              velocity, track))
    return replace(piece, notes=tuple(notes))  # the beats need the piece's grid first


def read_midi(data: MidiSource, *, name: str | None = None) -> MidiPiece:
    """A MIDI file (its bytes or a path) read with symusic into a ``MidiPiece``. Raises ConversionError
    when the file cannot be read."""
    raw, default_name = _midi_bytes(data)
    return _parse(raw, name or default_name)


# ---------------------------------------------------------------- validity (A1)


@dataclass(frozen=True)
class MidiCheck:
    """``check_midi``'s verdict: ``valid`` when ``problems`` is empty; each problem is ``kind: detail``.
    ``readable``: both readers open it and it has notes; ``piece``: the file as read (None if unreadable)."""

    valid: bool
    problems: list[str]
    piece: MidiPiece | None = field(default=None, repr=False)
    readable: bool = False


def _meter_of(value: str) -> tuple[int, int]:
    text = re.sub(r"\s+", "", str(value).split("%")[0])
    if text in _METER_ALIASES:
        return _METER_ALIASES[text]
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ConfigError(f"meter {value!r} is not a time signature; give it as N/D, e.g. '6/8' (or 'C', 'C|')")
    return int(match.group(1)), int(match.group(2))


def _programs_of(value: str | Iterable[int]) -> frozenset[int]:
    """Programs as a request gives them: ``"40,32,0"``, ``"40 32 0"`` or integers."""
    programs = [int(p) for p in re.findall(r"-?\d+", value)] if isinstance(value, str) else [int(p) for p in value]
    bad = [p for p in programs if not 0 <= p <= 127]
    if bad or not programs:
        raise ConfigError(f"programs {value!r}: give General MIDI programs 0..127, e.g. '40,32,0'")
    return frozenset(programs)


def _bars_of(value: object) -> int:
    try:
        bars = int(str(value).strip())
    except ValueError:
        bars = 0
    if bars <= 0:
        raise ConfigError(f"bars={value!r}: give a positive whole number of bars, e.g. 32")
    return bars


def _open_elsewhere(raw: bytes) -> list[str]:
    """Problems of the two independent readers (mido, pretty_midi) with the file; [] when both open it."""
    import mido
    import pretty_midi

    problems = []
    try:
        mido.MidiFile(file=io.BytesIO(raw))
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError ... on broken files
        problems.append(f"mido: cannot read the file ({type(exc).__name__}: {exc})")
    try:
        with warnings.catch_warnings():  # pretty_midi warns about tempo and key events it only tolerates
            warnings.simplefilter("ignore")
            pretty_midi.PrettyMIDI(io.BytesIO(raw))
    except Exception as exc:
        problems.append(f"pretty_midi: cannot read the file ({type(exc).__name__}: {exc})")
    return problems


def check_midi(data: MidiSource, *, meter: str | None = None, bars: int | str | None = None,
               programs: str | Iterable[int] | None = None, name: str | None = None) -> MidiCheck:
    """Whether a MIDI file is a valid answer to a request; every problem found, not only the first.

    It must open in both mido and pretty_midi (independent readers) and in symusic (``read_midi``), have
    pitched notes, have the time signature ``meter`` throughout (no time signature is MIDI's 4/4), end its
    last note at or before the end of ``bars`` whole bars of that meter (every bar the meter's length),
    play only the ``programs`` asked for (drums are a program no request names), and keep each program of
    ``PROGRAM_RANGES`` inside its range. ``None`` skips a request's check. Raises ``ConfigError`` for an
    unreadable request (a meter that is not N/D, no programs, bars not a positive number)."""
    wanted_meter = _meter_of(meter) if meter else None
    wanted_bars = _bars_of(bars) if bars not in (None, "") else None
    wanted_programs = _programs_of(programs) if programs not in (None, "") else None
    try:
        raw, label = _midi_bytes(data)
    except ConversionError as exc:
        return MidiCheck(False, [f"file: {exc}"])
    problems = _open_elsewhere(raw)
    try:
        piece = _parse(raw, name or label)
    except ConversionError as exc:
        return MidiCheck(False, [*problems, f"symusic: {exc}"])
    if not piece.notes:
        problems.append("no notes: the file has no pitched note; a piece needs at least one")
    readable = not problems
    tpq = piece.ticks_per_quarter
    if wanted_meter is not None:
        asked = f"{wanted_meter[0]}/{wanted_meter[1]}"
        for ts in piece.time_signatures:
            if (ts.numerator, ts.denominator) != wanted_meter:
                written = ts.text if piece.meter_written or ts.tick else "none (MIDI's default 4/4)"
                problems.append(f"meter: time signature {written} from bar {piece.bar_at(ts.tick)[0] + 1} "
                                f"(tick {ts.tick}); asked for {asked} throughout")
    if wanted_bars is not None and piece.notes:
        if wanted_meter is not None:
            length = Fraction(4 * tpq * wanted_meter[0], wanted_meter[1])
            limit, of = float(wanted_bars * length), f"{wanted_meter[0]}/{wanted_meter[1]}"
        else:
            limit, of = piece.bar_end(wanted_bars), "the file's meter"
        if piece.end_ticks > limit:
            problems.append(f"bars: the last note ends at tick {piece.end_ticks}, in bar "
                            f"{piece.bar_at(piece.end_ticks - 1)[0] + 1}; asked for {wanted_bars} bars of {of} "
                            f"(ending at tick {limit:g})")
    if wanted_programs is not None:
        asked = ", ".join(map(str, sorted(wanted_programs)))
        for program, count in sorted(Counter(n.program for n in piece.notes).items()):
            if program not in wanted_programs:
                problems.append(f"programs: {count} notes on program {program}; asked only for {asked}")
        if piece.drum_notes:
            problems.append(f"drums: {piece.drum_notes} notes on the drum channel; asked only for programs "
                            f"{asked}")
    for program in piece.programs:
        if program not in PROGRAM_RANGES:
            continue
        low, high = PROGRAM_RANGES[program]
        pitches = [n.pitch for n in piece.notes if n.program == program]
        outside = sum(not low <= p <= high for p in pitches)
        if outside:
            problems.append(f"range: {outside} notes of program {program} outside its range {low}..{high} "
                            f"(lowest {min(pitches)}, highest {max(pitches)})")
    return MidiCheck(not problems, problems, piece, readable)


# ---------------------------------------------------------------- descriptors (C) and features (B1)


def _onset_groups(piece: MidiPiece, notes: Sequence[MidiNote] | None = None) -> list[list[MidiNote]]:
    """Notes grouped by onset (within ``1 / ONSET_GRID_PER_QUARTER`` quarter of the group's first), in time
    order; ``notes`` defaults to all of them (``piece.notes`` is sorted by onset)."""
    tolerance = piece.ticks_per_quarter / ONSET_GRID_PER_QUARTER
    groups: list[list[MidiNote]] = []
    for note in piece.notes if notes is None else notes:
        if groups and note.onset_ticks - groups[-1][0].onset_ticks <= tolerance:
            groups[-1].append(note)
        else:
            groups.append([note])
    return groups


def _melody(piece: MidiPiece) -> list[MidiNote]:
    """The highest note of each onset of ``MELODY_PROGRAM``'s notes (of all notes without that program)."""
    own = [n for n in piece.notes if n.program == MELODY_PROGRAM]
    return [max(group, key=lambda n: n.pitch) for group in _onset_groups(piece, own or piece.notes)]


def _classes(beats: np.ndarray) -> np.ndarray:
    """(len(DURATION_CLASSES),) shares of ``beats`` by nearest class on a log scale."""
    logs = np.log2(np.maximum(beats, 1e-9))[:, None]
    index = np.abs(logs - _LOG_DURATION_CLASSES[None, :]).argmin(axis=1)
    counts = np.bincount(index, minlength=len(DURATION_CLASSES)).astype(float)
    return counts / counts.sum()


def _polyphony(piece: MidiPiece, groups: list[list[MidiNote]]) -> float:
    """Mean over onsets of the notes sounding there: those starting at it and those still held (ending
    later than the onset's tolerance, so abc2midi's one-tick gaps and legato ends do not count)."""
    tolerance = piece.ticks_per_quarter / ONSET_GRID_PER_QUARTER
    times = np.array([g[0].onset_ticks for g in groups], dtype=float)[:, None]  # (onsets, 1)
    starts = np.array([n.onset_ticks for n in piece.notes], dtype=float)[None, :]  # (1, notes)
    ends = np.array([n.end_ticks for n in piece.notes], dtype=float)[None, :]
    sounding = (starts <= times + tolerance) & (ends > times + tolerance)
    return float(sounding.sum(axis=1).mean())


def _onsets_on_beats(piece: MidiPiece, groups: list[list[MidiNote]]) -> float:
    """Share of onsets on a main beat of the meter in force (``idiom.main_beats``, the grammar's beats:
    6/8's dotted quarters, 4/4's half bars, 3/4's quarters), on the file's bar grid; the time signature's
    own beat would count every eighth of a 6/8 jig. NaN without a meter that has main beats."""
    # imported here: abcgen.grammar (the beats' home) loads torch, which reading and checking MIDI do not need
    from abcgen.evaluation.idiom import main_beats

    tolerance = piece.ticks_per_quarter / ONSET_GRID_PER_QUARTER
    positions: dict[TimeSignature, list[float] | None] = {}  # ticks into the bar; the next downbeat last
    hits = counted = 0
    for group in groups:
        _, into, ts = piece.bar_at(group[0].onset_ticks)
        if ts not in positions:
            beats = main_beats(ts.text, Fraction(ts.numerator, ts.denominator))
            positions[ts] = None if beats is None else [float(b) * 4 * piece.ticks_per_quarter for b in beats] + [
                float(ts.bar_ticks(piece.ticks_per_quarter))]
        if positions[ts] is None:
            continue
        counted += 1
        hits += min(abs(into - p) for p in positions[ts]) <= tolerance
    return hits / counted if counted else NAN


def midi_features(piece: MidiPiece) -> dict[str, np.ndarray | None]:
    """The features of ``MIDI_FEATURES`` of one piece, each a 1-D array (a scalar one a 1-vector), None
    where undefined (no notes; fewer than two onsets for ``ioi_histogram``; no main beats):

    * ``pitch_class_duration_histogram``: shares of sounding time (ticks) on each pitch class, C..B;
    * ``duration_histogram`` / ``ioi_histogram``: shares of the notes' durations / of the intervals between
      successive onsets (all tracks) in ``DURATION_CLASSES`` (beats);
    * ``pitch_range`` (semitones), ``pitch_mean`` (MIDI pitch), ``notes_per_bar``, ``polyphony``,
      ``onsets_on_beats`` (0-1): see ``midi_values``."""
    features: dict[str, np.ndarray | None] = dict.fromkeys(MIDI_FEATURES)
    values = midi_values(piece)
    for name in ("pitch_range", "pitch_mean", "notes_per_bar", "polyphony", "onsets_on_beats"):
        if not math.isnan(values[name]):
            features[name] = np.array([values[name] / (100.0 if name == "onsets_on_beats" else 1.0)])
    if not piece.notes:
        return features
    histogram = np.zeros(12)
    for note in piece.notes:
        histogram[note.pitch % 12] += note.duration_ticks
    if histogram.sum() > 0:
        features["pitch_class_duration_histogram"] = histogram / histogram.sum()
    features["duration_histogram"] = _classes(np.array([n.duration for n in piece.notes]))
    onsets = np.array([g[0].onset for g in _onset_groups(piece)])
    if len(onsets) >= 2:
        features["ioi_histogram"] = _classes(np.diff(onsets))
    return features


def midi_values(piece: MidiPiece) -> dict[str, float]:
    """Per-piece descriptors (tier C), NaN where undefined: ``pitch_range`` (semitones), ``pitch_mean``
    (MIDI pitch), ``notes_per_bar`` (notes / ``piece.bars``), ``polyphony`` (mean notes sounding at an onset),
    ``onsets_on_beats`` (% of onsets on a main beat), ``num_notes``, ``num_bars``, and per program ``N``
    ``pitch_range_programN``, ``pitch_mean_programN``, ``notes_per_bar_programN``."""
    values = {name: NAN for name, _, _ in _DESCRIPTORS}
    values.update(num_notes=float(len(piece.notes)), num_bars=float(piece.bars))
    if not piece.notes:
        return values
    groups = _onset_groups(piece)
    values["polyphony"] = _polyphony(piece, groups)
    values["onsets_on_beats"] = 100.0 * _onsets_on_beats(piece, groups)
    for program in (None, *piece.programs):
        pitches = np.array([n.pitch for n in piece.notes if program is None or n.program == program])
        suffix = "" if program is None else f"_program{program}"
        values[f"pitch_range{suffix}"] = float(pitches.max() - pitches.min())
        values[f"pitch_mean{suffix}"] = float(pitches.mean())
        values[f"notes_per_bar{suffix}"] = len(pitches) / piece.bars
    return values


def midi_melody_symbols(piece: MidiPiece) -> list[tuple[int | None, Fraction]]:
    """The transposition-normalised melody (``_melody``) for copy detection: (interval to the previous
    note in semitones, ``None`` for the first; time to the next melody onset in quarters, the last note's
    duration) per note, on a 1/96-quarter grid. Onsets, not durations: abc2midi and a REMI decoder write
    the same onsets but not the same note ends (staccato, gaps)."""
    melody = _melody(piece)
    grid = piece.ticks_per_quarter / ONSET_GRID_PER_QUARTER
    symbols: list[tuple[int | None, Fraction]] = []
    for i, note in enumerate(melody):
        span = (melody[i + 1].onset_ticks - note.onset_ticks) if i + 1 < len(melody) else note.duration_ticks
        symbols.append((None if i == 0 else note.pitch - melody[i - 1].pitch,
                        Fraction(round(span / grid), ONSET_GRID_PER_QUARTER)))
    return symbols


def midi_overlap(a: Sequence[MidiPiece], b: Sequence[MidiPiece]) -> dict[str, dict[str, float]]:
    """Yang & Lerch overlap of set ``a`` with set ``b`` per feature of ``MIDI_FEATURES``, exactly as the ABC
    tier's ``metrics.yang_lerch``: intra-set distances of ``a`` and inter-set distances ``a`` x ``b``
    (Euclidean; a piece in both sets is not compared with itself), one Gaussian KDE bandwidth and grid,
    ``overlap`` = area under min(p, q) (1 = same distribution), ``kl`` = KL(intra || inter) in nats. NaN
    (and a warning) for a feature fewer than two pieces of ``a`` or no other piece of ``b`` have."""
    # the B1 definition itself, so overlaps mean what they mean in the ABC report
    from abcgen.evaluation.metrics import _overlap_and_kl

    features_a = [midi_features(p) for p in a]
    features_b = [midi_features(p) for p in b]
    out: dict[str, dict[str, float]] = {}
    for name in MIDI_FEATURES:
        rows_a = [(id(p), f[name]) for p, f in zip(a, features_a, strict=True) if f[name] is not None]
        rows_b = [(id(p), f[name]) for p, f in zip(b, features_b, strict=True) if f[name] is not None]
        if len(rows_a) < 2 or not rows_b:
            logger.warning("MIDI overlap %s: %d pieces of the first set and %d of the second have it; need two "
                           "in the first and one other in the second", name, len(rows_a), len(rows_b))
            out[name] = {"overlap": NAN, "kl": NAN}
            continue
        matrix_a, matrix_b = np.vstack([r for _, r in rows_a]), np.vstack([r for _, r in rows_b])
        ids_a, ids_b = np.array([i for i, _ in rows_a]), np.array([i for i, _ in rows_b])
        intra = pdist(matrix_a)  # (n_a * (n_a - 1) / 2,)
        inter = cdist(matrix_a, matrix_b)[ids_a[:, None] != ids_b[None, :]]  # (n_a * n_b,) less self-pairs
        if len(inter) == 0:
            out[name] = {"overlap": NAN, "kl": NAN}
            continue
        out[name] = _overlap_and_kl(intra, inter)
    return out


def _pooled_histograms(pieces: Sequence[MidiPiece]) -> dict[str, dict[str, list[Any]]]:
    """The set's pooled histograms (sounding time per pitch class; note durations and inter-onset intervals
    per class), as the ABC report's ``histograms``: bins and probabilities (zeros without notes)."""
    pitch_classes = np.zeros(12)
    durations = np.zeros(len(DURATION_CLASSES))
    iois = np.zeros(len(DURATION_CLASSES))
    for piece in pieces:
        for note in piece.notes:
            pitch_classes[note.pitch % 12] += note.duration_ticks / piece.ticks_per_quarter
        if piece.notes:
            durations += _classes(np.array([n.duration for n in piece.notes])) * len(piece.notes)
            onsets = np.array([g[0].onset for g in _onset_groups(piece)])
            if len(onsets) >= 2:
                iois += _classes(np.diff(onsets)) * (len(onsets) - 1)
    labels = [str(c) for c in DURATION_CLASSES]
    return {name: {"bins": bins, "probabilities": (counts / counts.sum() if counts.sum() else counts).tolist()}
            for name, bins, counts in (("pitch_class_duration", list(_PITCH_CLASS_NAMES), pitch_classes),
                                       ("duration", labels, durations), ("ioi", labels, iois))}


# ---------------------------------------------------------------- adherence (F)


def _key_match(piece: MidiPiece | None, requested: Key, profile: str) -> dict[str, bool]:
    """``keys.compare_keys`` of the Krumhansl-Schmuckler estimate from the notes' sounding time (every
    track) with ``requested``; a piece without notes misses."""
    from abcgen.evaluation import keys

    if piece is None or not piece.notes:
        keys.mode_quality(requested.mode)  # a request without a tonic is an error, notes or not
        return {"exact": False, "signature": False}
    histogram = np.zeros(12)
    for note in piece.notes:
        histogram[note.pitch % 12] += note.duration_ticks
    return keys.compare_keys(keys.key_from_histogram(histogram, profile), requested)


def _meter_kept(piece: MidiPiece | None, meter: str) -> bool:
    """Every time signature of the piece is ``meter`` (no time signature: MIDI's 4/4); bars on a MIDI grid
    always fit their meter, so this is the ABC tier's meter adherence."""
    wanted = _meter_of(meter)
    return piece is not None and bool(piece.notes) and all(
        (ts.numerator, ts.denominator) == wanted for ts in piece.time_signatures)


@dataclass
class _Rows:
    """The report's rows in order, and the bootstrap settings they share (as ``report._Scoring``)."""

    n_resamples: int
    seed: int
    rows: list[Metric] = field(default_factory=list)

    def mean_ci(self, values: Sequence[float]) -> dict[str, float]:
        return stats.bootstrap_mean([float(v) for v in values], n_resamples=self.n_resamples,
                                    seed=self.seed).as_dict()

    def add(self, name: str, tier: str, unit: str, description: str, gen_values: Sequence[float],
            real_values: Sequence[float] | None, higher: bool | None) -> None:
        self.rows.append(Metric(name, tier, unit, description, self.mean_ci(gen_values),
                                self.mean_ci(real_values) if real_values is not None else None,
                                higher_is_better=higher))


def _asked(request: Mapping[str, Any] | None, name: str) -> Any:
    value = request.get(name) if request else None
    return None if value in (None, "") else value


def _validity_rows(r: _Rows, gen: list[MidiCheck], real: list[MidiCheck]) -> None:
    r.add("strict_validity", "A1", "%", "files that open in mido and pretty_midi, have notes and keep the "
          "requested meter, bars, programs and program ranges (real: their own request, if given)",
          [100.0 * c.valid for c in gen], [100.0 * c.valid for c in real], True)
    r.add("midi_readable", "A1", "%", "files that open in mido, pretty_midi and symusic and have notes",
          [100.0 * c.readable for c in gen], [100.0 * c.readable for c in real], True)


def _overlap_rows(r: _Rows, gen: list[MidiPiece], real: list[MidiPiece],
                  floor: list[MidiPiece]) -> tuple[dict[str, Any], list[int]]:
    half_a, half_b = stats.split_halves(floor, seed=r.seed)
    overlap_gen, overlap_floor = midi_overlap(gen, real), midi_overlap(half_a, half_b)
    for feature in MIDI_FEATURES:
        r.rows.append(Metric(f"overlap_{feature}", "B1", "", f"Yang-Lerch overlap area of {feature} (generated "
                             "vs real; real: half vs half, the floor)", {"value": overlap_gen[feature]["overlap"]},
                             {"value": overlap_floor[feature]["overlap"]}, None, True))

    def mean(values: Mapping[str, Mapping[str, float]], kind: str) -> float:
        kept = [v[kind] for v in values.values() if not math.isnan(v[kind])]
        return statistics.fmean(kept) if kept else NAN

    r.rows.append(Metric("overlap_mean", "B1", "", "mean Yang-Lerch overlap over the MIDI features",
                         {"value": mean(overlap_gen, "overlap")}, {"value": mean(overlap_floor, "overlap")},
                         None, True))
    r.rows.append(Metric("kl_mean", "B1", "", "mean Yang-Lerch KL(intra || inter) over the MIDI features",
                         {"value": mean(overlap_gen, "kl")}, {"value": mean(overlap_floor, "kl")}, None, False))
    return {"generated_vs_real": overlap_gen, "real_vs_real": overlap_floor}, [len(half_a), len(half_b)]


def _descriptor_rows(r: _Rows, gen: list[MidiPiece | None], real: list[MidiPiece | None]) -> None:
    gen_values = [midi_values(p) if p else {} for p in gen]
    real_values = [midi_values(p) if p else {} for p in real]
    for name, unit, description in _DESCRIPTORS:
        r.add(name, "C", unit, description, [v.get(name, NAN) for v in gen_values],
              [v.get(name, NAN) for v in real_values], None)
    programs = sorted({prog for p in [*gen, *real] if p is not None for prog in p.programs})
    for program in programs:
        for name, unit, description in _DESCRIPTORS:
            if name in _PER_PROGRAM:
                key = f"{name}_program{program}"
                r.add(key, "C", unit, description.replace("all tracks", f"program {program}"),
                      [v.get(key, NAN) for v in gen_values], [v.get(key, NAN) for v in real_values], None)


def _novelty_rows(r: _Rows, gen: list[MidiPiece | None], real: list[MidiPiece | None],
                  train: list[MidiPiece], threshold: float) -> dict[str, list[float]]:
    similarities: dict[str, list[float]] = {}
    if train:
        index = novelty.NoveltyIndex(train, symbols=midi_melody_symbols)

        def scores(pieces: list[MidiPiece | None]) -> tuple[list[float], int]:
            readable = [p for p in pieces if p is not None]
            found = iter(index.nearest_many(readable))
            neighbours = [next(found) if p is not None else novelty.Neighbour(NAN, -1, "") for p in pieces]
            return [n.similarity for n in neighbours], sum(n.exact_copy for n in neighbours)

        (gen_sim, gen_exact), (real_sim, real_exact) = scores(gen), scores(real)
        similarities = {"generated": gen_sim, "real": real_sim}

        def median(values: Sequence[float]) -> float:
            kept = [v for v in values if not math.isnan(v)]
            return statistics.median(kept) if kept else NAN

        def median_ci(values: list[float]) -> dict[str, float]:
            return stats.bootstrap_statistic(values, median, n_resamples=r.n_resamples, seed=r.seed).as_dict()

        r.rows.append(Metric("nearest_neighbour_similarity", "E1", "", "median normalised Levenshtein similarity "
                             "of the transposition-normalised melody (intervals, inter-onset times) to its "
                             "nearest training piece", median_ci(gen_sim), median_ci(real_sim), None, None))

        def copies(values: list[float]) -> list[float]:
            return [100.0 * (v >= threshold) if not math.isnan(v) else NAN for v in values]

        r.add("copy_rate", "E1", "%", f"pieces at similarity >= {threshold:g} to a training piece",
              copies(gen_sim), copies(real_sim), False)
        r.rows.append(Metric("exact_copies", "E1", "tunes", "pieces whose melody equals a training piece's",
                             {"value": gen_exact}, {"value": real_exact}, None, False))

    def duplicates(pieces: list[MidiPiece | None]) -> int:
        seen: set[tuple[tuple[int | None, Fraction], ...]] = set()
        count = 0
        for piece in pieces:
            symbols = tuple(midi_melody_symbols(piece)) if piece is not None else ()
            if symbols:
                count += symbols in seen
                seen.add(symbols)
        return count

    r.rows.append(Metric("duplicates_within_set", "E2", "tunes", "pieces whose melody (intervals, inter-onset "
                         "times) repeats an earlier piece's of the set", {"value": duplicates(gen)},
                         {"value": duplicates(real)}, None, False))
    return similarities


def _real_request(piece: MidiPiece | None, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a real piece counts as having been asked for (the ceiling): ``given`` (its corpus labels) where
    it has a value, else its own file's first key signature and first time signature."""
    own: dict[str, Any] = {}
    if piece is not None:
        own["meter"] = piece.meter
        if piece.key is not None:
            own["key"] = piece.key.label
    return {**own, **{k: v for k, v in (given or {}).items() if v not in (None, "")}}


def _adherence_rows(r: _Rows, gen: list[MidiPiece | None], requests: list[Mapping[str, Any]],
                    real: list[MidiPiece | None], real_asked: list[dict[str, Any]]) -> None:
    for profile, tag in (("krumhansl", "ks"), ("aarden", "aarden")):
        gen_key = [_key_match(p, parse_key(str(k)), profile) if (k := _asked(q, "key")) else None
                   for p, q in zip(gen, requests, strict=True)]
        real_key = [_key_match(p, parse_key(str(q["key"])), profile) if p is not None and q.get("key") else None
                    for p, q in zip(real, real_asked, strict=True)]
        for level in ("exact", "signature"):
            name = f"key_adherence_{tag}" if level == "exact" else f"key_signature_adherence_{tag}"
            r.add(name, "F1", "%", f"key estimated from the notes ({profile} profile) equals the requested one"
                  + (" at key-signature level" if level == "signature" else " (tonic and mode)")
                  + "; real: its own key (label or key signature)",
                  [100.0 * k[level] if k else NAN for k in gen_key],
                  [100.0 * k[level] if k else NAN for k in real_key], True)
    r.add("meter_adherence", "F2", "%", "every time signature is the requested meter; real: its own (label or "
          "first time signature) throughout",
          [100.0 * _meter_kept(p, str(m)) if (m := _asked(q, "meter")) else NAN
           for p, q in zip(gen, requests, strict=True)],
          [100.0 * _meter_kept(p, str(q["meter"])) if p is not None and q.get("meter") else NAN
           for p, q in zip(real, real_asked, strict=True)], True)

    def bars_kept(piece: MidiPiece | None, bars: object) -> float:
        return 100.0 * (piece is not None and piece.bars == _bars_of(bars))

    def programs_kept(piece: MidiPiece | None, programs: str | Iterable[int]) -> float:
        return 100.0 * (piece is not None and bool(piece.notes) and set(piece.programs) == _programs_of(programs))

    for name, tier, test, description in (
            ("bars", "F3", bars_kept, "the piece has the requested number of bars (to its last note's end)"),
            ("programs", "F5", programs_kept, "the programs with notes are exactly the requested set")):
        if any(_asked(q, name) for q in requests):
            real_values = [test(p, q[name]) if q.get(name) else NAN for p, q in zip(real, real_asked, strict=True)]
            r.add(f"{name}_adherence", tier, "%", description,
                  [test(p, v) if (v := _asked(q, name)) else NAN for p, q in zip(gen, requests, strict=True)],
                  real_values if any(not math.isnan(v) for v in real_values) else None, True)


def _problem_counts(checks: list[MidiCheck]) -> dict[str, int]:
    """The most frequent first problem of invalid generated pieces, by kind (the text before the ':')."""
    counts = Counter(c.problems[0].split(":")[0] for c in checks if c.problems)
    return dict(counts.most_common(10))


# ---------------------------------------------------------------- the report


def evaluate_midi(generated: Sequence[MidiSource], requests: Sequence[Mapping[str, Any]] | None,
                  real: Sequence[MidiSource], *, train: Sequence[MidiSource] = (),
                  real_requests: Sequence[Mapping[str, Any]] | None = None, floor_real: Sequence[MidiSource] = (),
                  n_resamples: int = 1000, seed: int = 0,
                  copy_threshold: float = novelty.COPY_THRESHOLD) -> dict[str, Any]:
    """Score generated MIDI against real MIDI, as ``report.evaluate_texts`` scores ABC.

    ``requests``: per generated piece what it was asked for (``key`` like ``"D major"``, ``meter``
    ``"6/8"``, ``bars`` ``32``, ``programs`` ``"40,32,0"``; others are listed by the adherence summary but
    not measured), or None. ``real``: held-out real pieces; ``real_requests`` their own labels for the
    adherence ceiling (default: each file's key and time signature). ``train``: the training pieces, for
    copies (no copy rows without them). ``floor_real``: the pieces split in two for the real-vs-real floor
    of the overlap tier (default ``real``).

    Returns ``metrics`` (``Metric.as_dict()`` rows, tiers and names as in the ABC report), ``adherence``
    (``report.adherence_summary``), ``counts``, ``histograms``, ``overlap`` (``generated_vs_real``,
    ``real_vs_real``), ``similarities`` and ``problems``. Raises ValueError for empty sets or a request
    count that does not match, ConfigError for an unreadable request value."""
    if not generated:
        raise ValueError("no generated MIDI to evaluate")
    if not real:
        raise ValueError("no real MIDI to compare with: give the held-out split's pieces as MIDI")
    asked = list(requests) if requests else [{} for _ in generated]
    if len(asked) != len(generated):
        raise ValueError(f"{len(asked)} requests for {len(generated)} generated pieces: give one per piece")
    if real_requests is not None and len(real_requests) != len(real):
        raise ValueError(f"{len(real_requests)} real requests for {len(real)} real pieces: give one per piece")

    def checked(sources: Sequence[MidiSource], wanted: Sequence[Mapping[str, Any] | None],
                kind: str) -> list[MidiCheck]:
        return [check_midi(s, meter=_asked(q, "meter"), bars=_asked(q, "bars"), programs=_asked(q, "programs"),
                           name=f"{kind} #{i}") for i, (s, q) in enumerate(zip(sources, wanted, strict=True))]

    gen_checks = checked(generated, asked, "generated")
    real_checks = checked(real, real_requests or [None] * len(real), "real")
    gen = [c.piece if c.piece is not None and c.piece.notes else None for c in gen_checks]
    real_pieces = [c.piece if c.piece is not None and c.piece.notes else None for c in real_checks]
    train_pieces = [p for p in (_read_or_none(s, f"train #{i}") for i, s in enumerate(train)) if p is not None]
    floor = [p for p in (_read_or_none(s, f"floor #{i}") for i, s in enumerate(floor_real)) if p is not None]

    r = _Rows(n_resamples, seed)
    _validity_rows(r, gen_checks, real_checks)
    present_gen = [p for p in gen if p is not None]
    present_real = [p for p in real_pieces if p is not None]
    overlap, floor_halves = _overlap_rows(r, present_gen, present_real, floor or present_real)
    _descriptor_rows(r, gen, real_pieces)
    similarities = _novelty_rows(r, gen, real_pieces, train_pieces, copy_threshold)
    real_asked = [_real_request(p, q)
                  for p, q in zip(real_pieces, real_requests or [None] * len(real), strict=True)]
    if requests:
        _adherence_rows(r, gen, asked, real_pieces, real_asked)
    rows = []
    for row in r.rows:
        entry = row.as_dict()
        entry["reference"] = REFERENCES.get(row.name, "") if row.name in _SAME_AS_ABC else ""
        rows.append(entry)
    return {
        "metrics": rows,
        "adherence": adherence_summary(rows, requests),
        "counts": {"generated": len(gen), "real": len(real), "train": len(train),
                   "generated_unreadable": sum(not c.readable for c in gen_checks),
                   "real_unreadable": sum(not c.readable for c in real_checks),
                   "floor_halves": floor_halves},
        "histograms": {"generated": _pooled_histograms(present_gen), "real": _pooled_histograms(present_real)},
        "overlap": overlap,
        "similarities": similarities,
        "problems": _problem_counts(gen_checks),
    }


def _read_or_none(source: MidiSource, name: str) -> MidiPiece | None:
    """A training or floor piece; one that cannot be read is left out (and logged), as it has no melody."""
    try:
        piece = read_midi(source, name=name)
    except ConversionError as exc:
        logger.warning("%s left out: %s", name, exc)
        return None
    return piece if piece.notes else None


def format_midi_report(result: Mapping[str, Any]) -> str:
    """``evaluate_midi``'s result as a Markdown table, or several results in ONE table: ``result`` may map
    a model's name to its result (``{"abc": ..., "remi": ...}``), each then a column; the real column is
    the first result's (it says so when the real sets differ in size). Values with bootstrap 95 % intervals;
    set-level rows (B1) have the real-vs-real floor in the real column."""
    models: dict[str, Mapping[str, Any]] = {"generated": result} if "metrics" in result else dict(result)
    if not models:
        raise ValueError("no evaluate_midi result to format: give one result or a mapping name -> result")
    first = next(iter(models.values()))
    names: list[str] = []
    by_model: dict[str, dict[str, Mapping[str, Any]]] = {}
    for model, res in models.items():
        by_model[model] = {m["name"]: m for m in res["metrics"]}
        names += [m["name"] for m in res["metrics"] if m["name"] not in names]
    real_rows = {m["name"]: m for m in first["metrics"]}
    lines = []
    for model, res in models.items():
        c = res["counts"]
        lines.append(f"- {model}: {c['generated']} pieces ({c['generated_unreadable']} unreadable) against "
                     f"{c['real']} real; {c['train']} training pieces indexed for copies.")
    if len({res["counts"]["real"] for res in models.values()}) > 1:
        lines.append("- The real sets differ in size: the real column is the first model's.")
    lines += ["", "Values: mean [bootstrap 95 % interval] over pieces. B1 rows compare sets: their real column is "
              "one half of the real set against the other (the floor).",
              "", "| tier | metric | unit | " + " | ".join(models) + " | real | meaning |",
              "|---|---|---|" + "---|" * len(models) + "---|---|"]
    for name in names:
        row = next(by_model[m][name] for m in models if name in by_model[m])
        cells = [_fmt((by_model[m].get(name) or {}).get("generated"), row["unit"]) for m in models]
        real_cell = _fmt((real_rows.get(name) or {}).get("real"), row["unit"])
        lines.append(f"| {row['tier']} | {name} | {row['unit']} | " + " | ".join(cells) +
                     f" | {real_cell} | {row['description']} |")
    problems = {model: res.get("problems") for model, res in models.items() if res.get("problems")}
    for model, counts in problems.items():
        lines += ["", f"Most frequent problems of invalid pieces ({model}): "
                  + ", ".join(f"{kind} {n}" for kind, n in counts.items())]
    return "\n".join(lines) + "\n"
