"""Bars and their durations, checked against the meter with the tolerance real music needs.

A naive check (every bar == ``M:``) flags about 6 % of the bars of real folk tunes, almost all of them
correct music. The rules below tolerate exactly what ABC writers do on purpose:

* a **pickup** (anacrusis): the first bar may be shorter than the meter;
* the **last bar** may be shorter (it usually completes the pickup);
* a bar **split in two** anywhere: two neighbouring short bars that add up to one bar (chorales split
  bars at fermatas);
* a bar **split across a section boundary**: a short bar that ends at, or starts after, a repeat sign,
  a double bar, an ending (``|1``, ``[2``) or a ``P:`` part change -- the repeat's pickup and the
  "short bar before a section end";
* empty bars (``|: ... :||:``) and multi-bar rests (``Z4``: an exact number of bars).

A bar *longer* than the meter is always a problem, as is a short bar anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from abcgen.errors import BarDurationError
from abcgen.notation import events as ev
from abcgen.notation.events import Event
from abcgen.notation.lexer import parse_fraction

# Bar lines that end a section: a short bar next to one of these is a split bar, not an error.
_SECTION_MARKS = (":", "||", "]", "[|")


@dataclass(slots=True)  # not frozen: creating bars is a hot path of the data pipeline
class Bar:
    """One bar: its events' total duration in whole notes, the meter in force, and where it is."""

    index: int  # 1-based among the bars of the body
    duration: Fraction  # whole notes (a 6/8 bar is 3/4)
    meter: Fraction | None  # whole notes; None = free meter
    opening: str  # text of the bar line before it ("" at the start of the body)
    closing: str  # text of the bar line after it ("" if the body ends without one)
    line: int
    column: int
    ending: str = ""  # "1", "2", ... when the bar starts a first/second ending
    has_notes: bool = True
    multi_rest: bool = False
    section_start: bool = False  # a P: part change or a repeat start precedes it


@dataclass(frozen=True, slots=True)
class BarProblem:
    bar: int
    line: int
    column: int
    expected: Fraction
    actual: Fraction
    reason: str

    def __str__(self) -> str:
        return f"bar {self.bar} (line {self.line}, column {self.column}): {self.reason}"


@dataclass
class BarReport:
    """The result of ``check_bars``: every bar and the problems found (empty = valid)."""

    bars: list[Bar]
    problems: list[BarProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def num_bars(self) -> int:
        """Bars with music, not counting a leading pickup."""
        return len(counted_bars(self.bars))


def counted_bars(bars: list[Bar]) -> list[Bar]:
    """The bars a tune's bar count counts, in order: bars with music, without a leading pickup (a first
    bar shorter than the meter). Bar ``n`` of a tune, as a user numbers it, is ``counted_bars(...)[n - 1]``;
    ``BarReport.num_bars``, the corpus's ``num_bars``, the generation pipeline and infilling all count
    with this function."""
    counted = [b for b in bars if b.has_notes]
    if counted and counted[0].meter and counted[0].duration < counted[0].meter:
        counted = counted[1:]
    return counted


class _BarLengths:
    """A bar's length in whole notes from its running count of ``L:`` units. Bar lengths repeat (most bars
    of a tune are full): whole-number lengths are cached per unit length."""

    __slots__ = ("cache", "unit")

    def __init__(self, unit_length: Fraction) -> None:
        self.cache: dict[int, Fraction] = {}
        self.unit = unit_length

    def whole_notes(self, whole_units: int, frac_units: Fraction | int, unit_length: Fraction) -> Fraction:
        if frac_units != 0:
            return (frac_units + whole_units) * unit_length
        if self.unit is not unit_length:
            self.cache, self.unit = {}, unit_length
        total = self.cache.get(whole_units)
        if total is None:
            total = self.cache[whole_units] = whole_units * unit_length
        return total


def split_bars(events: list[Event], unit_length: Fraction, meter: Fraction | None) -> list[Bar]:
    """Group events into bars. Durations are converted to whole notes with the ``L:`` in force, so an
    inline ``[L:1/16]`` halfway through is handled; ``[M:...]`` changes the meter of later bars.
    Only the first voice of an overlay (``&``) counts toward the bar."""
    bars: list[Bar] = []
    # The running bar length is kept in L: units as an int plus a Fraction remainder: most durations are
    # whole numbers of L, and Fraction arithmetic per event dominated the data pipeline's profile.
    whole_units = 0
    frac_units: Fraction | int = 0  # stays an int (cheap) until a fractional duration arrives
    has_notes = multi_rest = overlay = False
    opening = ""
    ending = ""
    section_start = False
    first: Event | None = None
    bar_meter = meter

    lengths = _BarLengths(unit_length)

    def close(closing: str, at: Event | None) -> None:
        nonlocal whole_units, frac_units, has_notes, multi_rest, overlay, first, ending, section_start
        anchor = first or at
        bars.append(Bar(index=len(bars) + 1, duration=lengths.whole_notes(whole_units, frac_units, unit_length),
                        meter=bar_meter, opening=opening, closing=closing, line=anchor.line if anchor else 1,
                        column=anchor.column if anchor else 1, ending=ending, has_notes=has_notes,
                        multi_rest=multi_rest, section_start=section_start))
        whole_units = frac_units = 0
        has_notes = multi_rest = overlay = section_start = False
        ending = ""
        first = None

    for event in events:
        kind = event.kind
        if kind == ev.BAR:
            close(event.text, event)
            opening = event.text
            digits = event.text.lstrip("[|:]").lstrip("[")
            ending = digits if digits[:1].isdigit() else ""
            bar_meter = meter
            continue
        if kind == ev.ENDING:
            ending = event.text.lstrip("[")
            continue
        if kind in (ev.FIELD, ev.VOICE) and event.field:
            letter, value = event.field
            if letter == "L" and (new_length := parse_fraction(value)) and new_length != unit_length:
                # Fold what the bar holds so far into the new unit before switching.
                frac_units = (frac_units + whole_units) * unit_length / new_length
                whole_units = 0
                unit_length = new_length
            elif letter == "M":
                meter = bar_meter = parse_fraction(value)
            elif letter == "P":
                section_start = True
            continue
        if kind == ev.OVERLAY:
            overlay = True
            continue
        duration = event.duration
        if duration is not None and not overlay:
            if first is None:
                first = event
            has_notes = True
            if duration.denominator == 1:
                whole_units += duration.numerator
            else:
                frac_units += duration
            if kind == ev.REST and event.text[:1] in "ZX":
                multi_rest = True
    if has_notes or not bars:
        close("", None)
    return bars


def _is_section_mark(text: str) -> bool:
    return any(mark in text for mark in _SECTION_MARKS) or any(c.isdigit() for c in text)


def check_bar_list(bars: list[Bar]) -> list[BarProblem]:
    """Apply the tolerance rules of the module docstring to a list of bars."""
    problems = []
    music = [b for b in bars if b.has_notes]
    if not music:
        return problems
    first_index, last_index = music[0].index, music[-1].index
    for position, bar in enumerate(music):
        meter = bar.meter
        if meter is None or bar.duration == meter:
            continue
        if bar.multi_rest and bar.duration % meter == 0:
            continue
        if bar.duration > meter:
            problems.append(BarProblem(bar.index, bar.line, bar.column, meter, bar.duration,
                                       f"{bar.duration} of a whole note is longer than the meter's {meter}"))
            continue
        tolerated = (
            bar.index == first_index
            or bar.index == last_index
            or _is_section_mark(bar.opening)
            or _is_section_mark(bar.closing)
            or bar.ending != ""
            or bar.section_start
            or _completes_neighbour(music, position)
        )
        if not tolerated:
            problems.append(BarProblem(bar.index, bar.line, bar.column, meter, bar.duration,
                                       f"{bar.duration} of a whole note is shorter than the meter's {meter} "
                                       "and not next to a pickup, repeat, ending or section end"))
    return problems


def _completes_neighbour(music: list[Bar], position: int) -> bool:
    """A bar split in two by a bar line (chorales split bars at fermatas; editors split them at line
    ends): this short bar and its neighbour add up to exactly one bar."""
    bar = music[position]
    for other in (position - 1, position + 1):
        if 0 <= other < len(music) and bar.meter and music[other].duration + bar.duration == bar.meter:
            return True
    return False


def bar_durations(events: list[Event], unit_length: Fraction, meter: Fraction | None = None) -> list[Fraction]:
    """Duration of each bar with music, in whole notes (the numbers the bar check compares to ``M:``)."""
    return [b.duration for b in split_bars(events, unit_length, meter) if b.has_notes]


def events_by_voice(events: list[Event]) -> dict[str, list[Event]]:
    """Group a body's events by voice (``V:`` body lines and inline ``[V:...]``); a single-voice body
    gives ``{"1": events}``. The voice id is the first word of the ``V:`` value."""
    voices: dict[str, list[Event]] = {}
    current = "1"
    for event in events:
        if event.field and event.field[0] == "V" and event.kind in (ev.VOICE, ev.FIELD):
            current = (event.field[1].split() or ["1"])[0]
            voices.setdefault(current, [])
            continue
        voices.setdefault(current, []).append(event)
    # A body that starts with "V:1" leaves an empty default voice behind only if nothing preceded it.
    kept = {k: v for k, v in voices.items() if v or len(voices) == 1}
    return kept or {"1": []}


def check_bars(events: list[Event], unit_length: Fraction, meter: Fraction | None) -> BarReport:
    """Check every bar of a lexed body against the meter (see the module docstring for what passes).

    Multi-voice bodies are checked voice by voice (each voice may start with its own pickup), and
    voices whose bar counts or bar lengths differ are reported as well."""
    voices = events_by_voice(events)
    if len(voices) == 1:
        bars = split_bars(next(iter(voices.values())), unit_length, meter)
        return BarReport(bars=bars, problems=check_bar_list(bars))
    all_bars: list[Bar] = []
    problems: list[BarProblem] = []
    per_voice: dict[str, list[Bar]] = {}
    for voice, voice_events in voices.items():
        bars = split_bars(voice_events, unit_length, meter)
        per_voice[voice] = [b for b in bars if b.has_notes or b.closing]
        problems += check_bar_list(bars)
        if not all_bars:
            all_bars = bars
    reference_voice, reference = next(iter(per_voice.items()))
    for voice, bars in per_voice.items():
        for a, b in zip(reference, bars, strict=False):
            if a.duration != b.duration:
                problems.append(BarProblem(b.index, b.line, b.column, a.duration, b.duration,
                                           f"voice {voice} bar {b.index} lasts {b.duration}, voice {reference_voice} {a.duration}"))
                break
    return BarReport(bars=all_bars, problems=problems)


def validate_bars(events: list[Event], unit_length: Fraction, meter: Fraction | None, *, tune: str | None = None) -> BarReport:
    """Like ``check_bars`` but raise ``BarDurationError`` naming the first bad bar."""
    report = check_bars(events, unit_length, meter)
    if report.problems:
        p = report.problems[0]
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise BarDurationError(p.reason + more, tune=tune, bar=p.bar, line=p.line, column=p.column)
    return report


