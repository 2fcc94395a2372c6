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
    out: list[Event] = []
    pos = 0
    line = 1
    line_start = 0
    n = len(body)
    # Tuplet state: durations of the next ``tuplet_left`` timed events are multiplied by tuplet_ratio.
    tuplet_left = 0
    tuplet_ratio = Fraction(1)
    # Broken rhythm: factor to apply to the next timed event.
    pending_broken: Fraction | None = None
    bar_index = 1

    def fail(message: str, at: int) -> AbcParseError:
        return AbcParseError(message, tune=tune, bar=bar_index, line=line, column=at - line_start + 1)

    def emit(kind: str, end: int, **kw: object) -> None:
        nonlocal pos
        out.append(Event(kind, body[pos:end], pos, line, pos - line_start + 1, **kw))  # type: ignore[arg-type]
        pos = end

    def timed(kind: str, end: int, written: Fraction, **kw: object) -> None:
        nonlocal tuplet_left, pending_broken
        duration = written
        if pending_broken is not None:
            duration *= pending_broken
            pending_broken = None
        if tuplet_left:
            duration *= tuplet_ratio
            tuplet_left -= 1
        emit(kind, end, duration=duration, written_duration=written, **kw)

    def last_timed_index(cross_bars: bool = False) -> int | None:
        """The previous note/rest/chord; a tie may reach back over a bar line, broken rhythm may not."""
        for i in range(len(out) - 1, -1, -1):
            if out[i].kind in ev.TIMED_KINDS:
                return i
            if out[i].kind == ev.BAR and not cross_bars:
                return None
        return None

    note_match = _NOTE_RE.match
    append = out.append
    while pos < n:
        ch = body[pos]
        # Most frequent first: notes, then spaces and bar lines (the dispatch order is most of the cost).
        if pos == line_start and ch not in _NOTE_PREFIXES and (m := _LINE_FIELD_RE.match(body, pos)):
            letter = m.group(1)
            value = m.group(0)[2:]
            if letter in "LM":
                parsed = parse_fraction(value)
                if letter == "L" and parsed:
                    unit_length = parsed
                elif letter == "M":
                    if parsed is None and value.strip().lower() not in ("", "none"):
                        raise fail(f"cannot read meter M:{value.strip()}", pos)
                    meter = parsed
                    compound = is_compound_meter(value)
            emit(ev.VOICE if letter == "V" else ev.FIELD, m.end(), field=(letter, value.strip()))
            continue
        if ch in _NOTE_STARTS and (m := note_match(body, pos)):
            acc, letter, marks, dur_text = m.groups()
            written = parse_duration(dur_text)
            if pending_broken is None and not tuplet_left:
                # Fast path (most notes): no rhythm modifier pending.
                end = m.end()
                append(Event(ev.NOTE, body[pos:end], pos, line, pos - line_start + 1, written, written,
                             _pitch(acc, letter, marks)))
                pos = end
            else:
                timed(ev.NOTE, m.end(), written, pitch=_pitch(acc, letter, marks))
            continue
        if ch == " " or ch == "\t" or ch == "\r":
            end = pos + 1
            while end < n and body[end] in " \t\r":
                end += 1
            append(Event(ev.SPACE, body[pos:end], pos, line, pos - line_start + 1))
            pos = end
            continue
        if ch == "\n":
            emit(ev.NEWLINE, pos + 1)
            line += 1
            line_start = pos
            continue
        if ch == "%":
            end = body.find("\n", pos)
            emit(ev.OTHER, n if end < 0 else end)
            continue
        if ch == "\\":
            emit(ev.CONTINUATION, pos + 1)
            continue
        if ch == '"':
            end = body.find('"', pos + 1)
            if end < 0 or "\n" in body[pos:end]:
                raise fail("unterminated quoted chord symbol or annotation", pos)
            content = body[pos + 1 : end]
            kind = ev.ANNOTATION if content[:1] in ("^", "_", "<", ">", "@") else ev.CHORD_SYMBOL
            emit(kind, end + 1)
            continue
        if ch in "!+":
            end = body.find(ch, pos + 1)
            if end < 0 or "\n" in body[pos:end]:
                raise fail(f"unterminated decoration {ch}...{ch}", pos)
            emit(ev.DECORATION, end + 1)
            continue
        if ch == "{":
            end = body.find("}", pos + 1)
            if end < 0:
                raise fail("unterminated grace notes '{'", pos)
            inner = body[pos + 1 : end].lstrip("/")
            # Grace notes take no time, but their content must still be notes.
            if re.sub(rf"{_NOTE_RE.pattern}|[\s\-()<>]|\[|\]|!\w+!|~", "", inner):
                raise fail(f"grace notes {{{inner}}} contain text that is not notes", pos)
            emit(ev.GRACE, end + 1)
            continue
        if ch == "[":
            if m := _FIELD_RE.match(body, pos):
                letter, value = m.group(1), m.group(2)
                if letter == "L" and (parsed := parse_fraction(value)):
                    unit_length = parsed
                elif letter == "M":
                    meter = parse_fraction(value)
                    if meter is None and value.strip().lower() not in ("", "none"):
                        raise fail(f"cannot read meter [M:{value.strip()}]", pos)
                    compound = is_compound_meter(value)
                emit(ev.FIELD, m.end(), field=(letter, value.strip()))
                continue
            if body.startswith("[|", pos):
                m = _BAR_RE.match(body, pos)
                emit(ev.BAR, m.end() if m else pos + 2)
                bar_index += 1
                continue
            if m := _ENDING_RE.match(body, pos):
                emit(ev.ENDING, m.end())
                continue
            end = body.find("]", pos + 1)
            if end < 0:
                raise fail("unclosed chord '['", pos)
            inner = body[pos + 1 : end]
            pitches = []
            first_duration: Fraction | None = None
            for m_n in _NOTE_RE.finditer(inner):
                pitches.append(_pitch(m_n.group(1), m_n.group(2), m_n.group(3)))
                if first_duration is None:
                    first_duration = parse_duration(m_n.group(4))
            leftover = re.sub(rf"{_NOTE_RE.pattern}|[\s\-.~()]|!\w+!|\"[^\"]*\"", "", inner)
            if not pitches or leftover:
                raise fail(f"chord [{inner}] must contain only notes", pos)
            m_d = re.compile(_DURATION).match(body, end + 1)
            dur_text = m_d.group(0) if m_d else ""
            written = (first_duration or Fraction(1)) * parse_duration(dur_text)
            timed(ev.CHORD, end + 1 + len(dur_text), written, notes=tuple(pitches))
            continue
        if ch in "|:":
            m = _BAR_RE.match(body, pos)
            if not m or m.end() == pos:
                raise fail(f"stray {ch!r}", pos)
            if pending_broken is not None:
                raise fail("broken rhythm ('>' or '<') must be followed by a note in the same bar", pos)
            emit(ev.BAR, m.end())
            bar_index += 1
            continue
        if ch == "(":
            if m := _TUPLET_RE.match(body, pos):
                p = int(m.group(1))
                if p < 2:
                    raise fail(f"tuplet ({p} needs at least 2 notes", pos)
                q = int(m.group(2)) if m.group(2) else _tuplet_q(p, compound)
                r = int(m.group(3)) if m.group(3) else p
                tuplet_left, tuplet_ratio = r, Fraction(q, p)
                emit(ev.TUPLET, m.end(), tuplet=(p, q, r))
            else:
                emit(ev.SLUR_OPEN, pos + 1)
            continue
        if ch == ")":
            emit(ev.SLUR_CLOSE, pos + 1)
            continue
        if ch == "-":
            idx = last_timed_index(cross_bars=True)
            if idx is not None:
                out[idx].tied = True
            emit(ev.TIE, pos + 1)
            continue
        if ch in "<>":
            end = pos
            while end < n and body[end] == ch:
                end += 1
            run = end - pos
            idx = last_timed_index()
            if idx is None:
                raise fail(f"broken rhythm {body[pos:end]!r} without a note before it", pos)
            # a>b: a gets 3/2 and b 1/2; a>>b: 7/4 and 1/4; a>>>b: 15/8 and 1/8; '<' mirrors it.
            short = Fraction(1, 2**run)
            long = 2 - short
            first, second = (long, short) if ch == ">" else (short, long)
            prev = out[idx]
            prev.duration = prev.duration * first  # type: ignore[operator]
            pending_broken = second
            emit(ev.BROKEN, end)
            continue
        if m := _REST_RE.match(body, pos):
            timed(ev.REST, m.end(), parse_duration(m.group(2)))
            continue
        if m := _MULTI_REST_RE.match(body, pos):
            count = int(m.group(2)) if m.group(2) else 1
            bar_units = (meter or Fraction(1)) / unit_length
            emit(ev.REST, m.end(), duration=bar_units * count, written_duration=bar_units * count)
            continue
        if ch in _DECORATION_CHARS:
            emit(ev.DECORATION, pos + 1)
            continue
        if ch == "&":
            emit(ev.OVERLAY, pos + 1)
            continue
        if ch in "y`$*":
            # y = spacer, ` = beam-joining space, $ = score line break: layout only.
            emit(ev.OTHER, pos + 1)
            continue
        raise fail(f"unexpected character {ch!r}", pos)
    if pending_broken is not None:
        raise fail("broken rhythm at the end of the body without a note after it", pos)
    return out


def unit_lengths(events: list[Event], unit_length: Fraction) -> list[Fraction]:
    """The ``L:`` in force at each event (inline ``[L:]`` and body ``L:`` lines change it)."""
    result = []
    current = unit_length
    for event in events:
        if event.kind in (ev.FIELD,) and event.field and event.field[0] == "L":
            current = parse_fraction(event.field[1]) or current
        result.append(current)
    return result
