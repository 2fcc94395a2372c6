"""MIDI and REMI: miditok 3 REMI, with a program per track, as the event-token text form of a tune.

REMI text is the space-separated token strings of miditok's REMI tokenizer built from
:data:`REMI_CONFIG`, every track in one stream, a ``Program`` token before each note, e.g.
``Bar_None TimeSig_6/8 Position_0 Tempo_122.99 Program_40 Pitch_67 Velocity_103 Duration_1.0.24 ...``.

ABC -> REMI (:func:`abc_to_remi`) goes through abc2midi (repeats played out) and then:

* **programs**: a one-voice tune's melody on :data:`MELODY_PROGRAM`; voice k of a multi-voice tune (a Bach
  chorale: soprano, alto, tenor, bass) on ``VOICE_PROGRAMS[k]``; abc2midi's accompaniment of chord symbols
  (``"G"``, ``"D7"``) on :data:`BASS_PROGRAM` (bass) and :data:`CHORD_PROGRAM` (chords). abc2midi sets them
  from ``%%MIDI program/bassprog/chordprog`` lines we insert after ``K:`` and after each voice's first
  ``V:`` (the tune's own such lines are removed). A tune with more voices than ``VOICE_PROGRAMS`` is
  refused (ConversionError): in the corpus those are the chorales with obbligato instruments (horns,
  trumpets, timpani, continuo), and a trumpet on the viola's program would give generation the wrong
  pitch range (:data:`PROGRAM_RANGES`).
* **quoted strings**: only chord symbols are played. The chorales' strings are annotations
  (``"^Alleluja"``), which abc2midi skips; O'Neill's and Ryan's are fingerings (``"4"``), dynamics
  (``"f"``) and directions (``"D.C."``, ``"A MINOR"``), which abc2midi would play from their first letter
  (an F bass for ``"f"``): quoted text that is not a chord symbol is made an annotation first. The
  embedded corpus has next to no real chord symbols (music21's ``nottingham-dataset``, not one of our
  sources, is full of them).
* **timing**: abc2midi starts every note one tick late (its note-offs are on time), and starts a tune that
  opens with a pickup at tick 0, so REMI bars would not be ABC bars. Notes (and tempo changes, which it
  also writes a tick late) are moved one tick earlier, the note kept ending where it ended, and the whole
  tune is moved later by the part of a bar the pickup lacks (:func:`abcgen.notation.bars.counted_bars`
  knows the pickup): the pickup sits at the end of REMI bar 1 and the tune's bar 1 starts at the second
  ``Bar_None``.

Only a pickup is aligned: a short bar later on (a section's own pickup after an ``M:`` change) moves the
REMI bars after it off the ABC bars, notes keep their times.

REMI itself is lossy: onsets fall on a grid of 24 positions a beat, durations on 24 a beat up to 4 beats
and 4 a beat up to 12 beats, 16 velocity bins, pitches 21-108, a few time signatures. The beat is the
time signature's denominator, so in 2/2 the grid is 1/12 of a quarter: most tunes that do not come back
exactly are cut-time reels whose grace notes and ornaments (rolls, trills) abc2midi plays as shorter notes
(``benchmarks/results/remi_round_trip.json`` has the counts).
:func:`remi_round_trip` says whether a tune's notes come back exactly (ABC -> MIDI -> REMI -> MIDI, every
note's onset, duration, pitch, program and binned velocity, and the time signatures) and, when they do
not, why (``REASON_*``). Tempo is kept as a token but not compared: 32 tempo bins.

:func:`midi_to_remi` / :func:`remi_to_midi` work on any MIDI file: non-drum tracks are kept apart by
program (miditok merges tracks that share a program), drum tracks are dropped, decoding writes one
track per program.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from abcgen.errors import AbcParseError, ConversionError

# abc2midi, the converter and strict checker, lives in abcgen.notation.abc2midi (the checks home); these
# names stay importable from here.
from abcgen.notation import events as ev
from abcgen.notation.abc2midi import abc2midi_check, abc_to_midi
from abcgen.notation.bars import counted_bars, events_by_voice, split_bars
from abcgen.notation.tune import Tune, parse_tune

logger = logging.getLogger(__name__)

POSITIONS_PER_BEAT = 24  # REMI positions in one beat (the time signature's denominator note)
# The instrument (General MIDI program, 0-based) of each kind of track, so that one token stream keeps
# the tracks apart: a melody (the one voice of a folk tune) on the violin, a chorale's voices on a string
# quartet (soprano, alto, tenor, bass), abc2midi's accompaniment of chord symbols on piano and bass.
MELODY_PROGRAM = 40
VOICE_PROGRAMS: tuple[int, ...] = (40, 41, 42, 43)
CHORD_PROGRAM = 0
BASS_PROGRAM = 32
# The playable range (lowest, highest MIDI pitch) of the programs abcgen writes; generation keeps each
# track's pitches inside it. Other programs get the piano's range (REMI_CONFIG's pitch_range).
PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    0: (21, 108),  # acoustic grand piano
    32: (28, 67),  # acoustic bass (E1..G4)
    40: (55, 103),  # violin (G3..G7)
    41: (48, 91),  # viola (C3..G6)
    42: (36, 76),  # cello (C2..E5)
    43: (28, 67),  # contrabass (E1..G4)
}
# General MIDI programs that play chords: pianos, chromatic percussion, organs, guitars (0-31), harp (46),
# string/choir/synth ensembles and pads (48-55, 88-95). Every other instrument is a single line (a violin,
# a bass, a flute, one voice of a chorale): generation lets it start a note only when its last one has ended.
POLYPHONIC_PROGRAMS: frozenset[int] = frozenset([*range(0, 32), 46, *range(48, 56), *range(88, 96)])

__all__ = [
    "BASS_PROGRAM",
    "CHORD_PROGRAM",
    "MELODY_PROGRAM",
    "POSITIONS_PER_BEAT",
    "POLYPHONIC_PROGRAMS",
    "PROGRAM_RANGES",
    "REASON_DURATION",
    "REASON_LONG",
    "REASON_ONSET",
    "REASON_OVERLAP",
    "REASON_PITCH",
    "REASON_TIME_SIGNATURE",
    "REASON_TIME_SIGNATURE_CHANGE",
    "REASON_UNEXPLAINED",
    "REMI_CONFIG",
    "VOICE_PROGRAMS",
    "RoundTrip",
    "abc2midi_check",
    "abc_to_midi",
    "abc_to_remi",
    "get_remi_tokenizer",
    "midi_to_remi",
    "quantisation_loss",
    "remi_round_trip",
    "remi_to_midi",
    "remi_to_midi_bytes",
]

# Keyword arguments of miditok.TokenizerConfig, one shared set so that every REMI string in the project means
# the same thing.
REMI_CONFIG: dict[str, object] = {
    "pitch_range": (21, 109),  # the piano's range, MIDI pitches 21..108
    # 24 positions a beat (the beat is the time signature's denominator): sixteenths, 32nds in 4/4, and
    # triplets all fall on the grid; durations at 24 a beat up to 4 beats, then 4 a beat up to 12.
    "beat_res": {(0, 4): POSITIONS_PER_BEAT, (4, 12): 4},
    "num_velocities": 16,
    "use_programs": True,  # one Program token before each note: tracks are told apart by instrument
    "one_token_stream_for_programs": True,  # every track in one sequence, notes interleaved by time
    "program_changes": False,
    "programs": list(range(128)),  # every General MIDI instrument, no drums
    "use_time_signatures": True,  # Bar_None TimeSig_6/8 at every bar
    "time_signature_range": {8: [3, 5, 6, 7, 9, 12], 4: [1, 2, 3, 4, 5, 6, 7], 2: [1, 2, 3, 4]},
    "use_tempos": True,  # Tempo_x after the first Position (abc2midi writes 120 when Q: is missing)
    "num_tempos": 32,
    "tempo_range": (40, 250),
    "log_tempos": True,
    "use_rests": False,
    "use_chords": False,
    "use_sustain_pedals": False,
}

# Why a tune's notes do not come back exactly from REMI (RoundTrip.reason), in the order they are looked
# for. Each is a loss of REMI's grid or ranges, found on the notes themselves; the last one is a bug.
REASON_TIME_SIGNATURE = "time signature outside the REMI range"
REASON_TIME_SIGNATURE_CHANGE = "time signature change inside a REMI bar"
REASON_PITCH = "pitch outside 21-108"
REASON_LONG = "duration over 12 beats"
REASON_ONSET = "onset off the 1/24-beat grid (tuplet, grace note or ornament)"
REASON_DURATION = "duration off the REMI grid"
REASON_OVERLAP = "same-pitch notes overlap"
REASON_UNEXPLAINED = "not exact although every note fits REMI (a bug)"
_MAX_DURATION_BEATS = 12  # the longest REMI duration (REMI_CONFIG's beat_res)
_FINE_DURATION_BEATS = 4  # durations up to here on the 1/24-beat grid, longer ones on the 1/4-beat grid
_LONG_POSITIONS_PER_BEAT = 4

# A quoted string abc2midi may play as a chord: a root, an accidental, a chord type, a bass note (ABC 2.1
# section 4.18), in parentheses for an alternative chord. The corpus's other quoted strings are text --
# fingerings ("4"), dynamics ("f", "pp"), "D.C.", "Segno", "A MINOR" -- which abc2midi would otherwise play
# as an F or D chord (it reads the first letter): they become annotations ("^f"), which it ignores.
_CHORD_SYMBOL_RE = re.compile(r'"\(?[A-G][#b]?(?:maj|min|dim|aug|sus|add|m|M|[0-9]|[+#b°ø-])*(?:/[A-G][#b]?)?\)?"')

# The tune's own program lines would fight ours; other %%MIDI lines (transpose, gchord patterns) stay.
_PROGRAM_LINE_RE = re.compile(r"^[ \t]*%%MIDI[ \t]+(?:program|bassprog|chordprog|channel)\b[^\n]*\n?",
                              re.MULTILINE)

_TOKENIZER = None  # the shared miditok REMI tokenizer, built on first use (importing miditok is slow)
_VELOCITY_BINS: list[int] = []  # MIDI velocity 0..127 -> the bin miditok keeps (filled with the tokenizer)


def get_remi_tokenizer():  # noqa: ANN201 -- miditok.REMI, not imported at module load
    """The shared miditok REMI tokenizer built from :data:`REMI_CONFIG` (created once, then cached)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from miditok import REMI, TokenizerConfig

        tokenizer = REMI(TokenizerConfig(**REMI_CONFIG))
        bins = [int(v) for v in tokenizer.velocities]
        # miditok's rounding (np_get_closest): the nearest bin, a tie going to the higher one.
        _VELOCITY_BINS[:] = [min(bins, key=lambda b, v=v: (abs(b - v), -b)) for v in range(128)]
        _TOKENIZER = tokenizer
    return _TOKENIZER


# --- MIDI <-> REMI --------------------------------------------------------------------------------------

def _load_score(midi: str | os.PathLike[str] | bytes):  # noqa: ANN202 -- symusic.Score
    """Read a MIDI file (path or bytes) into a symusic Score, ConversionError if unreadable."""
    from symusic import Score

    name = f"<{len(midi)} bytes of MIDI>" if isinstance(midi, bytes) else os.fspath(midi)
    try:
        return Score.from_midi(midi) if isinstance(midi, bytes) else Score(os.fspath(midi))
    except Exception as exc:  # symusic raises RuntimeError/ValueError with C++ messages
        raise ConversionError(f"cannot read MIDI {name}: {exc}") from exc


def _pitched_tracks(score: Any) -> Any:
    """``score`` with only its non-drum tracks that hold notes (REMI_CONFIG has no drum programs: miditok
    would drop them anyway); ConversionError when none is left."""
    score.tracks = [track for track in score.tracks if not track.is_drum and len(track.notes) > 0]
    if not score.tracks:
        raise ConversionError("MIDI holds no (non-drum) notes to tokenise")
    return score


def _score_to_remi(score: Any) -> str:
    """REMI text of a Score whose tracks are already what REMI should hold (see :func:`midi_to_remi`)."""
    sequence = get_remi_tokenizer().encode(score)
    # one_token_stream_for_programs: one sequence for all tracks (a list only in other configurations)
    sequence = sequence[0] if isinstance(sequence, list) else sequence
    return " ".join(sequence.tokens)


def midi_to_remi(midi: str | os.PathLike[str] | bytes) -> str:
    """Tokenise a MIDI file (path or bytes) to REMI text with the shared tokenizer.

    Tracks stay apart by program (miditok merges tracks that share one); drum tracks are dropped. Raises
    ConversionError when the file cannot be read or holds no pitched notes.
    """
    return _score_to_remi(_pitched_tracks(_load_score(midi)))


def _remi_to_score(text: str):  # noqa: ANN202 -- symusic.Score
    """Decode REMI text to a Score with one track per program; ConversionError for text that is not REMI."""
    from miditok import TokSequence

    tokens = text.split()
    if not tokens:
        raise ConversionError("empty REMI text: give the tokens of midi_to_remi or abc_to_remi")
    tokenizer = get_remi_tokenizer()
    unknown = [token for token in tokens if token not in tokenizer.vocab]
    if unknown:
        raise ConversionError(f"REMI text has tokens outside the vocabulary: {unknown[:5]}")
    try:
        return tokenizer.decode(TokSequence(tokens=tokens))
    except Exception as exc:  # miditok/symusic errors on malformed sequences
        raise ConversionError(f"cannot decode REMI to MIDI: {exc}") from exc


def remi_to_midi_bytes(text: str) -> bytes:
    """Decode REMI text to the bytes of a standard MIDI file, one track per program (ConversionError for
    text that is not REMI or does not decode)."""
    score = _remi_to_score(text)
    try:
        return bytes(score.dumps_midi())
    except Exception as exc:  # symusic errors on a score it cannot write
        raise ConversionError(f"cannot write the decoded REMI as MIDI: {exc}") from exc


def remi_to_midi(text: str, path: str | os.PathLike[str]) -> None:
    """Decode REMI text (as :func:`midi_to_remi` writes it) to a MIDI file at ``path``, one track per
    program (``Program`` tokens; the program is set on the track)."""
    score = _remi_to_score(text)
    try:
        score.dump_midi(os.fspath(path))
    except Exception as exc:  # symusic: unwritable path
        raise ConversionError(f"cannot write MIDI {os.fspath(path)}: {exc}") from exc


# --- ABC -> MIDI with programs and bars ---------------------------------------------------------------

def _directives(program: int) -> str:
    return f"%%MIDI program {program}\n%%MIDI bassprog {BASS_PROGRAM}\n%%MIDI chordprog {CHORD_PROGRAM}"


def _with_programs(tune: Tune) -> tuple[str, Fraction, Fraction | None]:
    """The tune's ABC with our ``%%MIDI`` program lines and its quoted text that is not a chord made an
    annotation (``_CHORD_SYMBOL_RE``), its pickup and the meter of its first bar (whole notes; pickup 0
    without one). ConversionError for more voices than VOICE_PROGRAMS."""
    events = tune.events()
    voices = events_by_voice(events)
    if len(voices) > len(VOICE_PROGRAMS):
        raise ConversionError(f"more voices than REMI programs: {len(voices)} voices, VOICE_PROGRAMS has "
                              f"{len(VOICE_PROGRAMS)} (soprano, alto, tenor, bass); drop the extra voices")
    programs = dict(zip(voices, VOICE_PROGRAMS, strict=False)) if len(voices) > 1 else dict.fromkeys(voices, MELODY_PROGRAM)
    # After K: (the default voice), and right after the first switch to each voice: a program applies
    # to the channel of the voice it is written in.
    inserts = [(0, _directives(programs[next(iter(voices))]) + "\n")]
    seen: set[str] = set()
    for event in events:
        if event.kind == ev.CHORD_SYMBOL and not _CHORD_SYMBOL_RE.fullmatch(event.text):
            inserts.append((event.start + 1, "^"))
        elif event.kind in (ev.VOICE, ev.FIELD) and event.field and event.field[0] == "V":
            voice = (event.field[1].split() or ["1"])[0]
            if voice in seen or voice not in programs:
                continue
            seen.add(voice)
            # A V: line's text stops before its newline; an inline [V:x] continues the line after it.
            tail = "" if event.kind == ev.VOICE else "\n"
            inserts.append((event.start + len(event.text), f"\n{_directives(programs[voice])}{tail}"))
    body, pieces, done = tune.body, [], 0
    for at, text in sorted(inserts, key=lambda insert: insert[0]):
        pieces += [body[done:at], text]
        done = at
    pieces.append(body[done:])
    header = "\n".join(f"{key}:{value}" for key, value in tune.fields)
    # The bars of the first voice: a pickup is a first bar shorter than the meter (counted_bars skips it).
    bars = split_bars(next(iter(voices.values())), tune.unit_length, tune.meter)
    music = [bar for bar in bars if bar.has_notes]
    counted = counted_bars(bars)
    pickup = music[0].duration if music and (not counted or counted[0] is not music[0]) else Fraction(0)
    return f"{header}\n{''.join(pieces)}", pickup, music[0].meter if music else None


def _align(score: Any, pickup: Fraction, meter: Fraction | None) -> Any:
    """Undo abc2midi's one-tick late notes and put the pickup at the end of a first bar (in place)."""
    from symusic import Note

    tpq = score.ticks_per_quarter
    gap = (meter - pickup) * 4 * tpq if pickup and meter and pickup < meter else Fraction(0)
    if gap.denominator != 1:  # a pickup of a fraction of a tick: cannot be aligned, leave it
        logger.debug("pickup of %s whole notes is not a whole number of ticks at %d a quarter", pickup, tpq)
        gap = Fraction(0)
    shift = int(gap)
    for track in score.tracks:
        notes = track.notes.numpy()
        if len(notes["time"]) and notes["time"].min() < 1:
            raise ConversionError("abc2midi wrote a note at tick 0; expected every note one tick late")
        notes["time"] += shift - 1
        notes["duration"] += 1  # the note-off was on time
        track.notes = Note.from_numpy(**notes)
    for tempo in score.tempos:
        if tempo.time > 0:  # tempo changes come a tick late too; the first one is at tick 0
            tempo.time += shift - 1
    for signature in score.time_signatures:
        if signature.time > 0:  # time signature changes come on time
            signature.time += shift
    return score


def _abc_score(abc: str):  # noqa: ANN202 -- symusic.Score
    """ABC -> abc2midi -> the Score REMI encodes: programs per track, bars aligned, drums dropped."""
    try:
        tune = parse_tune(_PROGRAM_LINE_RE.sub("", abc))
        text, pickup, meter = _with_programs(tune)
    except AbcParseError as exc:  # the bars of the tune are needed to place the pickup
        raise ConversionError(f"cannot read the tune's bars: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="abcgen-remi-") as tmp:
        midi_path = Path(tmp) / "tune.mid"
        abc_to_midi(text, midi_path)
        score = _load_score(midi_path)
    return _align(_pitched_tracks(score), pickup, meter)


def abc_to_remi(abc: str) -> str:
    """ABC tune -> MIDI (abc2midi) -> REMI text, a program per track and ABC bars on REMI bars (module
    docstring). ConversionError when abc2midi cannot convert the tune, the tune has no notes or more voices
    than VOICE_PROGRAMS."""
    return _score_to_remi(_abc_score(abc))


# --- round trip -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundTrip:
    """ABC -> MIDI -> REMI -> MIDI for one tune: whether every note came back exactly, and why not."""

    exact: bool
    reason: str  # "" when exact, else one of the REASON_* kinds
    notes: int  # notes of the MIDI that REMI encodes (every track, repeats played out)
    tokens: int
    programs: tuple[int, ...]  # the tracks' programs, sorted
    remi: str
    difference: str = ""  # the first note that differs, for a reader hunting a bug


def _ticks_per_beat(tpq: int, denominator: int) -> Fraction:
    return Fraction(4 * tpq, denominator)


def quantisation_loss(score: Any) -> str:
    """Why REMI cannot hold ``score``'s notes exactly (a ``REASON_*`` kind), or "" when every note and
    time signature fits: the time signatures and their changes, pitches, then onsets and durations on the
    grid of the time signature in force, then same-pitch overlaps in a program (MIDI cannot keep them)."""
    tokenizer = get_remi_tokenizer()
    tpq = score.ticks_per_quarter
    signatures: list[tuple[int, int, int]] = []
    for s in score.time_signatures:  # a repeated signature changes nothing (miditok drops it too)
        if not signatures or signatures[-1][1:] != (s.numerator, s.denominator):
            signatures.append((s.time, s.numerator, s.denominator))
    signatures = signatures or [(0, 4, 4)]
    if any((num, den) not in tokenizer.time_signatures for _, num, den in signatures):
        return REASON_TIME_SIGNATURE
    for (start, num, den), (time, *_) in zip(signatures, signatures[1:], strict=False):
        if (time - start) % (_ticks_per_beat(tpq, den) * num) != 0:
            return REASON_TIME_SIGNATURE_CHANGE
    if signatures[0][0] != 0:
        signatures.insert(0, (0, 4, 4))
    starts = [time for time, _, _ in signatures]
    lowest, highest = REMI_CONFIG["pitch_range"]  # type: ignore[misc]
    notes = [(n.time, n.duration, n.pitch, track.program) for track in score.tracks for n in track.notes]
    if any(not lowest <= pitch < highest for _, _, pitch, _ in notes):
        return REASON_PITCH
    reasons = set()
    for time, duration, _, _ in notes:
        index = next(i for i in range(len(starts) - 1, -1, -1) if starts[i] <= time)
        beat = _ticks_per_beat(tpq, signatures[index][2])
        beats = Fraction(duration) / beat
        if beats > _MAX_DURATION_BEATS:
            reasons.add(REASON_LONG)
        elif (time - starts[index]) * POSITIONS_PER_BEAT % beat != 0:
            reasons.add(REASON_ONSET)
        elif beats <= 0 or (beats * (POSITIONS_PER_BEAT if beats <= _FINE_DURATION_BEATS
                                     else _LONG_POSITIONS_PER_BEAT)).denominator != 1:
            reasons.add(REASON_DURATION)
    for reason in (REASON_LONG, REASON_ONSET, REASON_DURATION):
        if reason in reasons:
            return reason
    ends: dict[tuple[int, int], int] = {}
    for time, duration, pitch, program in sorted(notes, key=lambda n: (n[0], n[1])):
        if ends.get((program, pitch), -1) > time:
            return REASON_OVERLAP
        ends[(program, pitch)] = max(ends.get((program, pitch), -1), time + duration)
    return ""


def _note_set(score: Any, ticks: int) -> list[tuple[int, int, int, int, int]]:
    """(program, onset, duration, pitch, velocity bin) of every note, times in 1/``ticks`` of a quarter."""
    scale = Fraction(ticks, score.ticks_per_quarter)
    return sorted((track.program, int(n.time * scale), int(n.duration * scale), n.pitch, _VELOCITY_BINS[n.velocity])
                  for track in score.tracks for n in track.notes)


def _signatures(score: Any, ticks: int) -> list[tuple[int, int, int]]:
    """The time signatures (onset in 1/``ticks`` of a quarter, numerator, denominator), repeats dropped."""
    scale = Fraction(ticks, score.ticks_per_quarter)
    kept: list[tuple[int, int, int]] = []
    for s in score.time_signatures:
        if not kept or kept[-1][1:] != (s.numerator, s.denominator):
            kept.append((int(s.time * scale), s.numerator, s.denominator))
    return kept


def _first_difference(before: Any, after: Any) -> str:
    """"" when ``after`` holds exactly ``before``'s notes and time signatures, else the first difference."""
    ticks = math.lcm(before.ticks_per_quarter, after.ticks_per_quarter)
    old, new = _note_set(before, ticks), _note_set(after, ticks)
    if old != new:
        gone, came = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        return (f"{len(old)} notes before, {len(new)} after; first lost (program, onset, duration, pitch, "
                f"velocity at {ticks} a quarter): {gone[:1]}, first new: {came[:1]}")
    old_signatures, new_signatures = _signatures(before, ticks), _signatures(after, ticks)
    if old_signatures != new_signatures:
        return f"time signatures {old_signatures[:3]} came back as {new_signatures[:3]}"
    return ""


def remi_round_trip(abc: str) -> RoundTrip:
    """ABC -> MIDI -> REMI -> MIDI (through MIDI bytes, as a file would go), every note compared.

    Exact for every tune whose notes fit REMI's grid and ranges; otherwise the reason is the first
    ``REASON_*`` found on the notes. ConversionError as :func:`abc_to_remi`.
    """
    from symusic import Score

    score = _abc_score(abc)
    remi = _score_to_remi(score)
    back = Score.from_midi(_remi_to_score(remi).dumps_midi())
    difference = _first_difference(score, back)
    reason = (quantisation_loss(score) or REASON_UNEXPLAINED) if difference else ""
    return RoundTrip(exact=not difference, reason=reason, notes=sum(len(t.notes) for t in score.tracks),
                     tokens=remi.count(" ") + 1, programs=tuple(sorted({t.program for t in score.tracks})),
                     remi=remi, difference=difference)
