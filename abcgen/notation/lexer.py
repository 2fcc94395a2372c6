"""Lex an ABC tune body into musical events with exact durations.

The lexer is a single left-to-right scan with one regular expression per construct; it is lossless
(``"".join(e.text for e in lex_body(body)) == body``) and strict: a character that is not ABC music
raises ``AbcParseError`` with its line and column, because a lenient lexer would let broken tunes into
training data. Durations are ``Fraction`` values in units of the ``L:`` in force at the event.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

from abcgen.errors import AbcParseError
from abcgen.notation import events as ev
from abcgen.notation.events import Event, Pitch

_ACCIDENTAL = r"(?:\^\^|\^|__|_|=)?"
_DURATION = r"(?:\d+)?(?:/+\d*)?"
_NOTE_RE = re.compile(rf"({_ACCIDENTAL})([A-Ga-g])([',]*)({_DURATION})")
_REST_RE = re.compile(rf"([zx])({_DURATION})")
_MULTI_REST_RE = re.compile(r"([ZX])(\d*)")
# Bar lines: [| , :*|+ followed by ] or : , :: ; optionally glued to an ending number (|1 :|2 |[2).
_BAR_RE = re.compile(r"(?:\[\||:*\|[\]|]*:*|:{2,})(?:\[?\d+(?:[,-]\d+)*)?")
_ENDING_RE = re.compile(r"\[\d+(?:[,-]\d+)*")
_FIELD_RE = re.compile(r"\[([A-Za-z]):([^\]\n]*)\]")
_TUPLET_RE = re.compile(r"\((\d+)(?::(\d*))?(?::(\d*))?")
_LINE_FIELD_RE = re.compile(r"([A-Za-z]):[^\n]*")
_DECORATION_CHARS = frozenset("~.HLMOPSTuvJR")
_NOTE_STARTS = frozenset("^_=ABCDEFGabcdefg")
# Characters that cannot start a field line ("X:"): a line starting with them is music.
_NOTE_PREFIXES = frozenset("^_=|[({!\"~. \t")
_OCTAVE_UP = "'"


@functools.lru_cache(maxsize=4096)
def parse_duration(text: str) -> Fraction:
    """``""`` -> 1, ``"2"`` -> 2, ``"/"`` -> 1/2, ``"//"`` -> 1/4, ``"3/2"`` -> 3/2, ``"3/"`` -> 3/2."""
    if not text:
        return Fraction(1)
    num_text, _, rest = text.partition("/")
    numerator = int(num_text) if num_text else 1
    if "/" not in text:
        return Fraction(numerator)
    slashes = 1 + len(rest) - len(rest.lstrip("/"))
    den_text = rest.lstrip("/")
    denominator = int(den_text) if den_text else 2**slashes
    if denominator == 0:
        raise ValueError(f"zero denominator in duration {text!r}")
    return Fraction(numerator, denominator)


def parse_fraction(value: str) -> Fraction | None:
    """Read an ``L:``/``M:`` value such as ``1/8``, ``6/8``, ``C``, ``C|``, ``(2+3)/8``; None for free meter."""
    text = value.split("%")[0].strip()
    if text == "C":
        return Fraction(4, 4)
    if text == "C|":
        return Fraction(2, 2)
    if not text or text.lower() == "none":
        return None
    match = re.fullmatch(r"\(?([\d+ ]+)\)?\s*/\s*(\d+)", text)
    if not match:
        return None
    numerator = sum(int(p) for p in match.group(1).replace(" ", "").split("+") if p)
    denominator = int(match.group(2))
    return Fraction(numerator, denominator) if denominator else None


def default_unit_length(meter: Fraction | None) -> Fraction:
    """ABC 2.1: L: defaults to 1/16 when the meter is below 3/4, else 1/8 (free meter: 1/8)."""
    return Fraction(1, 16) if meter is not None and meter < Fraction(3, 4) else Fraction(1, 8)


@functools.lru_cache(maxsize=4096)
def _pitch(accidental: str, letter: str, octave_marks: str) -> Pitch:
    octave = (1 if letter.islower() else 0) + octave_marks.count(_OCTAVE_UP) - octave_marks.count(",")
    return Pitch(letter=letter.upper(), accidental=accidental, octave=octave)


def is_compound_meter(text: str | None) -> bool:
    """6/8, 9/8, 12/8, 9/4 ...: a numerator divisible by 3 and above 3. Read from the *written* meter:
    the ``Fraction`` of ``6/8`` is ``3/4``, which is simple."""
    m = re.match(r"\s*(\d+)\s*/", text or "")
    return bool(m) and int(m.group(1)) % 3 == 0 and int(m.group(1)) > 3


def _tuplet_q(p: int, compound: bool) -> int:
    """Default ``q`` of ``(p``: 3 notes in the time of 2, 2 in 3, 4 in 3; 5/7/9 depend on compound meter."""
    if p in (2, 4, 8):
        return 3
    if p in (3, 6):
        return 2
    return 3 if compound else 2


# Leftovers that make a grace group or a chord "not notes" once notes and the allowed marks are removed.
_GRACE_LEFTOVER_RE = re.compile(rf"{_NOTE_RE.pattern}|[\s\-()<>]|\[|\]|!\w+!|~")
_CHORD_LEFTOVER_RE = re.compile(rf"{_NOTE_RE.pattern}|[\s\-.~()]|!\w+!|\"[^\"]*\"")
_DURATION_RE = re.compile(_DURATION)


class _Cursor:
    """The state of one ``lex_body`` scan, shared by the per-construct methods below.

    Each ``lex_*`` method reads the construct starting at ``pos`` (whose first character selected it in
    ``_DISPATCH``), appends its event(s) to ``out`` and returns the position after it. ``line`` and
    ``line_start`` (offset of the current line's first character) are kept up to date by ``lex_body``,
    which handles notes, spaces and newlines itself because they are most of the text."""

    __slots__ = ("body", "out", "line", "line_start", "unit_length", "meter", "compound", "tune",
                 "tuplet_left", "tuplet_ratio", "pending_broken", "bar_index")

    def __init__(self, body: str, unit_length: Fraction, meter: Fraction | None, tune: str | None,
                 compound: bool) -> None:
        self.body = body
        self.out: list[Event] = []
        self.line = 1
        self.line_start = 0
        self.unit_length = unit_length
        self.meter = meter
        self.compound = compound
        self.tune = tune
        # Tuplet state: durations of the next ``tuplet_left`` timed events are multiplied by tuplet_ratio.
        self.tuplet_left = 0
        self.tuplet_ratio = Fraction(1)
        # Broken rhythm: factor to apply to the next timed event.
        self.pending_broken: Fraction | None = None
        self.bar_index = 1

    # -- shared plumbing --------------------------------------------------------------------------------

    def fail(self, message: str, at: int) -> AbcParseError:
        return AbcParseError(message, tune=self.tune, bar=self.bar_index, line=self.line,
                             column=at - self.line_start + 1)

    def emit(self, kind: str, pos: int, end: int, **kw: object) -> int:
        self.out.append(Event(kind, self.body[pos:end], pos, self.line, pos - self.line_start + 1,
                              **kw))  # type: ignore[arg-type]
        return end

    def timed(self, kind: str, pos: int, end: int, written: Fraction, **kw: object) -> int:
        """Emit a note, rest or chord, applying a pending broken rhythm and the tuplet in force."""
        duration = written
        if self.pending_broken is not None:
            duration *= self.pending_broken
            self.pending_broken = None
        if self.tuplet_left:
            duration *= self.tuplet_ratio
            self.tuplet_left -= 1
        return self.emit(kind, pos, end, duration=duration, written_duration=written, **kw)

    def last_timed_index(self, cross_bars: bool = False) -> int | None:
        """The previous note/rest/chord; a tie may reach back over a bar line, broken rhythm may not."""
        out = self.out
        for i in range(len(out) - 1, -1, -1):
            if out[i].kind in ev.TIMED_KINDS:
                return i
            if out[i].kind == ev.BAR and not cross_bars:
                return None
        return None

    # -- fields: body field lines "M:6/8" and inline fields "[L:1/16]" -----------------------------------

    def set_field(self, letter: str, value: str, pos: int, written: str) -> None:
        """Apply an ``L:`` or ``M:`` change; ``written`` is how the field looks in an error message."""
        if letter not in "LM":
            return
        parsed = parse_fraction(value)
        if letter == "L" and parsed:
            self.unit_length = parsed
        elif letter == "M":
            if parsed is None and value.strip().lower() not in ("", "none"):
                raise self.fail(f"cannot read meter {written}", pos)
            self.meter = parsed
            self.compound = is_compound_meter(value)

    def lex_field_line(self, pos: int, m: re.Match[str]) -> int:
        letter = m.group(1)
        value = m.group(0)[2:]
        self.set_field(letter, value, pos, f"M:{value.strip()}")
        return self.emit(ev.VOICE if letter == "V" else ev.FIELD, pos, m.end(), field=(letter, value.strip()))

    def lex_inline_field(self, pos: int, m: re.Match[str]) -> int:
        letter, value = m.group(1), m.group(2)
        self.set_field(letter, value, pos, f"[M:{value.strip()}]")
        return self.emit(ev.FIELD, pos, m.end(), field=(letter, value.strip()))

    # -- layout: comments, continuations, overlays, spacers ----------------------------------------------

    def lex_comment(self, pos: int) -> int:
        end = self.body.find("\n", pos)
        return self.emit(ev.OTHER, pos, len(self.body) if end < 0 else end)

    def lex_continuation(self, pos: int) -> int:
        return self.emit(ev.CONTINUATION, pos, pos + 1)

    def lex_overlay(self, pos: int) -> int:
        return self.emit(ev.OVERLAY, pos, pos + 1)

    def lex_layout(self, pos: int) -> int:
        # y = spacer, ` = beam-joining space, $ = score line break: layout only.
        return self.emit(ev.OTHER, pos, pos + 1)

    # -- decorations, annotations and chord symbols ------------------------------------------------------

    def lex_quoted(self, pos: int) -> int:
        body = self.body
        end = body.find('"', pos + 1)
        if end < 0 or "\n" in body[pos:end]:
            raise self.fail("unterminated quoted chord symbol or annotation", pos)
        content = body[pos + 1 : end]
        kind = ev.ANNOTATION if content[:1] in ("^", "_", "<", ">", "@") else ev.CHORD_SYMBOL
        return self.emit(kind, pos, end + 1)

    def lex_long_decoration(self, pos: int) -> int:
        body = self.body
        ch = body[pos]
        end = body.find(ch, pos + 1)
        if end < 0 or "\n" in body[pos:end]:
            raise self.fail(f"unterminated decoration {ch}...{ch}", pos)
        return self.emit(ev.DECORATION, pos, end + 1)

    def lex_decoration(self, pos: int) -> int:
        return self.emit(ev.DECORATION, pos, pos + 1)

    # -- grace groups, chords and everything else that starts with "[" -----------------------------------

    def lex_grace(self, pos: int) -> int:
        body = self.body
        end = body.find("}", pos + 1)
        if end < 0:
            raise self.fail("unterminated grace notes '{'", pos)
        inner = body[pos + 1 : end].lstrip("/")
        # Grace notes take no time, but their content must still be notes.
        if _GRACE_LEFTOVER_RE.sub("", inner):
            raise self.fail(f"grace notes {{{inner}}} contain text that is not notes", pos)
        return self.emit(ev.GRACE, pos, end + 1)

    def lex_bracket(self, pos: int) -> int:
        """``[`` opens an inline field ``[K:D]``, a bar line ``[|``, an ending ``[2`` or a chord ``[CEG]``."""
        body = self.body
        if m := _FIELD_RE.match(body, pos):
            return self.lex_inline_field(pos, m)
        if body.startswith("[|", pos):
            m = _BAR_RE.match(body, pos)
            end = self.emit(ev.BAR, pos, m.end() if m else pos + 2)
            self.bar_index += 1
            return end
        if m := _ENDING_RE.match(body, pos):
            return self.emit(ev.ENDING, pos, m.end())
        return self.lex_chord(pos)

    def lex_chord(self, pos: int) -> int:
        body = self.body
        end = body.find("]", pos + 1)
        if end < 0:
            raise self.fail("unclosed chord '['", pos)
        inner = body[pos + 1 : end]
        pitches = []
        first_duration: Fraction | None = None
        for m_n in _NOTE_RE.finditer(inner):
            pitches.append(_pitch(m_n.group(1), m_n.group(2), m_n.group(3)))
            if first_duration is None:
                first_duration = parse_duration(m_n.group(4))
        if not pitches or _CHORD_LEFTOVER_RE.sub("", inner):
            raise self.fail(f"chord [{inner}] must contain only notes", pos)
        m_d = _DURATION_RE.match(body, end + 1)
        dur_text = m_d.group(0) if m_d else ""
        written = (first_duration or Fraction(1)) * parse_duration(dur_text)
        return self.timed(ev.CHORD, pos, end + 1 + len(dur_text), written, notes=tuple(pitches))

    # -- bar lines, repeats and endings glued to them ----------------------------------------------------

    def lex_bar(self, pos: int) -> int:
        m = _BAR_RE.match(self.body, pos)
        if not m or m.end() == pos:
            raise self.fail(f"stray {self.body[pos]!r}", pos)
        if self.pending_broken is not None:
            raise self.fail("broken rhythm ('>' or '<') must be followed by a note in the same bar", pos)
        end = self.emit(ev.BAR, pos, m.end())
        self.bar_index += 1
        return end

    # -- rests -------------------------------------------------------------------------------------------

    def lex_rest(self, pos: int) -> int:
        m = _REST_RE.match(self.body, pos)
        assert m is not None  # z and x always start a rest
        return self.timed(ev.REST, pos, m.end(), parse_duration(m.group(2)))

    def lex_multi_rest(self, pos: int) -> int:
        m = _MULTI_REST_RE.match(self.body, pos)
        assert m is not None  # Z and X always start a multi-bar rest
        count = int(m.group(2)) if m.group(2) else 1
        bar_units = (self.meter or Fraction(1)) / self.unit_length
        return self.emit(ev.REST, pos, m.end(), duration=bar_units * count, written_duration=bar_units * count)

    # -- tuplets, slurs, ties and broken rhythm ----------------------------------------------------------

    def lex_paren(self, pos: int) -> int:
        """``(3`` starts a tuplet; any other ``(`` opens a slur."""
        m = _TUPLET_RE.match(self.body, pos)
        if not m:
            return self.emit(ev.SLUR_OPEN, pos, pos + 1)
        p = int(m.group(1))
        if p < 2:
            raise self.fail(f"tuplet ({p} needs at least 2 notes", pos)
        q = int(m.group(2)) if m.group(2) else _tuplet_q(p, self.compound)
        r = int(m.group(3)) if m.group(3) else p
        self.tuplet_left, self.tuplet_ratio = r, Fraction(q, p)
        return self.emit(ev.TUPLET, pos, m.end(), tuplet=(p, q, r))

    def lex_slur_close(self, pos: int) -> int:
        return self.emit(ev.SLUR_CLOSE, pos, pos + 1)

    def lex_tie(self, pos: int) -> int:
        idx = self.last_timed_index(cross_bars=True)
        if idx is not None:
            self.out[idx].tied = True
        return self.emit(ev.TIE, pos, pos + 1)

    def lex_broken(self, pos: int) -> int:
        body = self.body
        ch = body[pos]
        end = pos
        while end < len(body) and body[end] == ch:
            end += 1
        run = end - pos
        idx = self.last_timed_index()
        if idx is None:
            raise self.fail(f"broken rhythm {body[pos:end]!r} without a note before it", pos)
        # a>b: a gets 3/2 and b 1/2; a>>b: 7/4 and 1/4; a>>>b: 15/8 and 1/8; '<' mirrors it.
        short = Fraction(1, 2**run)
        long = 2 - short
        first, second = (long, short) if ch == ">" else (short, long)
        prev = self.out[idx]
        prev.duration = prev.duration * first  # type: ignore[operator]
        self.pending_broken = second
        return self.emit(ev.BROKEN, pos, end)


# The construct each first character starts (notes, spaces, newlines and field lines are read by lex_body).
_DISPATCH = {
    "%": _Cursor.lex_comment,
    "\\": _Cursor.lex_continuation,
    '"': _Cursor.lex_quoted,
    "!": _Cursor.lex_long_decoration,
    "+": _Cursor.lex_long_decoration,
    "{": _Cursor.lex_grace,
    "[": _Cursor.lex_bracket,
    "|": _Cursor.lex_bar,
    ":": _Cursor.lex_bar,
    "(": _Cursor.lex_paren,
    ")": _Cursor.lex_slur_close,
    "-": _Cursor.lex_tie,
    "<": _Cursor.lex_broken,
    ">": _Cursor.lex_broken,
    "z": _Cursor.lex_rest,
    "x": _Cursor.lex_rest,
    "Z": _Cursor.lex_multi_rest,
    "X": _Cursor.lex_multi_rest,
    **dict.fromkeys(_DECORATION_CHARS, _Cursor.lex_decoration),
    "&": _Cursor.lex_overlay,
    **dict.fromkeys("y`$*", _Cursor.lex_layout),
}


def lex_body(
    body: str,
    unit_length: Fraction = Fraction(1, 8),
    meter: Fraction | None = Fraction(4, 4),
    *,
    tune: str | None = None,
    compound: bool = False,
) -> list[Event]:
    """Lex a tune body (the text after ``K:``) into events.

    ``unit_length`` and ``meter`` are the header's ``L:`` and ``M:``; inline ``[L:...]``/``[M:...]`` and
    body field lines change them from that point on. Multi-bar rests ``Z4`` get a duration of 4 bars
    in ``L:`` units. ``compound`` says whether the header meter is compound (6/8, 9/8: see
    ``is_compound_meter``), which sets the default of ``(5``, ``(7`` and ``(9`` tuplets. Raises
    ``AbcParseError`` (with line and column) on text that is not ABC music.
    """
    cursor = _Cursor(body, unit_length, meter, tune, compound)
    pos = 0
    line = 1
    line_start = 0
    n = len(body)
    append = cursor.out.append
    note_match = _NOTE_RE.match
    dispatch = _DISPATCH.get
    # Notes, spaces and newlines are most of the text: they are read here, with local variables, and the
    # rarer constructs by the cursor's methods (the dispatch is most of the cost).
    while pos < n:
        ch = body[pos]
        if pos == line_start and ch not in _NOTE_PREFIXES and (m := _LINE_FIELD_RE.match(body, pos)):
            pos = cursor.lex_field_line(pos, m)
            continue
        if ch in _NOTE_STARTS and (m := note_match(body, pos)):
            acc, letter, marks, dur_text = m.groups()
            written = parse_duration(dur_text)
            end = m.end()
            if cursor.pending_broken is None and not cursor.tuplet_left:
                # Fast path (most notes): no rhythm modifier pending.
                append(Event(ev.NOTE, body[pos:end], pos, line, pos - line_start + 1, written, written,
                             _pitch(acc, letter, marks)))
                pos = end
            else:
                pos = cursor.timed(ev.NOTE, pos, end, written, pitch=_pitch(acc, letter, marks))
            continue
        if ch == " " or ch == "\t" or ch == "\r":
            end = pos + 1
            while end < n and body[end] in " \t\r":
                end += 1
            append(Event(ev.SPACE, body[pos:end], pos, line, pos - line_start + 1))
            pos = end
            continue
        if ch == "\n":
            append(Event(ev.NEWLINE, "\n", pos, line, pos - line_start + 1))
            pos += 1
            line += 1
            line_start = pos
            cursor.line, cursor.line_start = line, line_start
            continue
        handler = dispatch(ch)
        if handler is None:
            raise cursor.fail(f"unexpected character {ch!r}", pos)
        pos = handler(cursor, pos)
    if cursor.pending_broken is not None:
        raise cursor.fail("broken rhythm at the end of the body without a note after it", pos)
    return cursor.out


def unit_lengths(events: list[Event], unit_length: Fraction) -> list[Fraction]:
    """The ``L:`` in force at each event (inline ``[L:]`` and body ``L:`` lines change it)."""
    result = []
    current = unit_length
    for event in events:
        if event.kind in (ev.FIELD,) and event.field and event.field[0] == "L":
            current = parse_fraction(event.field[1]) or current
        result.append(current)
    return result
