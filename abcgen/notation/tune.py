"""Tunes: split a collection, read the header, normalise the text.

A collection file holds tunes that each start with an ``X:`` line and end at a blank line. A tune is a
header (field lines up to and including the first ``K:``) and a body (the music). ``normalise_tune``
gives the canonical text abcgen trains on:

* header fields in a fixed order with ``K:`` last, ``X:1``, no space after the colon, an explicit ``L:``
  (the ABC default made explicit), ``K:`` spelt canonically (``K:G Mixolydian`` -> ``K:Gmix``);
* only the fields that describe the music are kept (X T C O R P Q M L V K): notes, sources,
  transcriber e-mails and history (N B D F G H S Z A I W) are dropped -- the corpus keeps its labels;
* the body without comments, ``%%`` directives, lyrics (``w:``/``W:``), informational field lines or
  stray prose; line continuations (``\\``) joined; trailing spaces and empty lines removed;
* a bar line added at the end of a body line that closes a complete bar but has no bar line (Essen's
  convention: each line is a phrase ending on a bar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from abcgen.errors import AbcParseError
from abcgen.notation import events as ev
from abcgen.notation.keys import Key, format_key, parse_key
from abcgen.notation.lexer import default_unit_length, is_compound_meter, lex_body, parse_fraction

_FIELD_LINE_RE = re.compile(r"^([A-Za-z]):\s?(.*)$")
_X_LINE_RE = re.compile(r"^X:", re.MULTILINE)
HEADER_ORDER = "XTCORPQMLVK"
# A body line followed by another that does not end with a bar line: the only case where a bar line may
# be missing at a line end (checked before the slower scan of _close_bars_at_line_ends).
_FOREIGN_LETTER_RE = re.compile(r"[IKNQUVWYhijklmnopqrstw]")
_LINE_WITHOUT_BAR_RE = re.compile(r"[^|\]:\s]\n")
# Field lines allowed inside a body: they change the music from that point on.
BODY_FIELDS = frozenset("KMLPVQ")


@dataclass(frozen=True, slots=True)
class TuneText:
    """One tune's raw text inside a collection: ``index`` is 0-based in the file, ``line`` 1-based."""

    text: str
    index: int
    line: int

    @property
    def x(self) -> str | None:
        """The value of the tune's ``X:`` line, if any."""
        m = re.match(r"\s*X:\s*(\S*)", self.text)
        return m.group(1) if m else None


@dataclass
class Tune:
    """A parsed tune: header ``fields`` in written order and the ``body`` text after ``K:``."""

    fields: list[tuple[str, str]]
    body: str
    name: str | None = None  # "X:<n> <title>" for messages
    dropped: list[str] = field(default_factory=list)  # what normalisation removed, for reports
    # Lexed body, cached: normalisation already lexes it, and lexing dominates the data pipeline's time.
    _events: list[ev.Event] | None = field(default=None, repr=False, compare=False)

    def get(self, letter: str, default: str | None = None) -> str | None:
        for key, value in self.fields:
            if key == letter:
                return value
        return default

    def get_all(self, letter: str) -> list[str]:
        return [value for key, value in self.fields if key == letter]

    @property
    def title(self) -> str:
        return self.get("T") or ""

    @property
    def meter(self) -> Fraction | None:
        """The header meter as a fraction of a whole note (``C`` = 1, ``6/8`` = 3/4); None = free."""
        value = self.get("M")
        if value is None:
            return Fraction(4, 4)
        meter = parse_fraction(value)
        if meter is None and value.split("%")[0].strip().lower() not in ("", "none"):
            # An unreadable meter must not pass as free meter (which would switch the bar check off).
            raise AbcParseError(f"cannot read meter M:{value}: expected e.g. 'M:6/8', 'M:C', 'M:C|' or 'M:none'",
                                tune=self.name)
        return meter

    @property
    def unit_length(self) -> Fraction:
        value = self.get("L")
        parsed = parse_fraction(value) if value else None
        return parsed or default_unit_length(self.meter)

    @property
    def key(self) -> Key:
        return parse_key(self.get("K") or "", tune=self.name)

    def events(self) -> list[ev.Event]:
        """The body lexed with the header's ``L:`` and ``M:`` (cached; do not mutate the list)."""
        if self._events is None:
            self._events = lex_body(self.body, self.unit_length, self.meter, tune=self.name,
                                    compound=is_compound_meter(self.get("M")))
        return self._events

    def to_abc(self) -> str:
        header = "\n".join(f"{key}:{value}" for key, value in self.fields)
        body = self.body.rstrip("\n")
        return f"{header}\n{body}\n" if body else f"{header}\n"


def split_tunes(text: str) -> list[TuneText]:
    """Split a collection into tunes. A tune starts at an ``X:`` line and runs to the next blank line
    (or the next ``X:``). A file without ``X:`` lines but with a ``K:`` line is one tune."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    starts = [m.start() for m in _X_LINE_RE.finditer(text)]
    if not starts:
        return [TuneText(text.strip("\n") + "\n", 0, 1)] if re.search(r"^K:", text, re.MULTILINE) else []
    tunes = []
    line, counted_to = 1, 0  # line numbers counted incrementally: a count from 0 per tune is quadratic
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        chunk = text[start:end]
        blank = re.search(r"\n[ \t]*\n", chunk)
        if blank:
            chunk = chunk[: blank.start() + 1]
        line += text.count("\n", counted_to, start)
        counted_to = start
        tunes.append(TuneText(chunk.rstrip() + "\n", i, line))
    return tunes


def parse_tune(text: str, *, name: str | None = None) -> Tune:
    """Split a tune's text into header fields and body. Raises ``AbcParseError`` without ``K:``.

    ``+:`` continuation lines extend the previous field; comment lines and ``%%`` directives in the
    header are skipped (and listed in ``Tune.dropped``)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fields: list[tuple[str, str]] = []
    dropped: list[str] = []
    body_start = None
    in_directive = False  # a header comment or %% directive continued with "\\" onto the next line
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("%") or (in_directive and not _FIELD_LINE_RE.match(stripped)):
            dropped.append(stripped)
            in_directive = stripped.endswith("\\")
            continue
        in_directive = False
        m = _FIELD_LINE_RE.match(stripped)
        if stripped.startswith("+:") and fields:
            key, value = fields[-1]
            fields[-1] = (key, f"{value} {stripped[2:].strip()}")
            continue
        if not m:
            # Music before K: -- the header never ended.
            break
        letter, value = m.group(1), m.group(2).split("%")[0].strip() if m.group(1) != "T" else m.group(2).strip()
        fields.append((letter, value))
        if letter == "K":
            body_start = i + 1
            break
    if name is None:
        x = next((v for k, v in fields if k == "X"), None)
        title = next((v for k, v in fields if k == "T"), "")
        name = f"X:{x} {title}".strip() if x is not None else (title or None)
    if body_start is None:
        raise AbcParseError("the header has no K: field (K: must end the header)", tune=name, line=len(lines))
    body = "\n".join(lines[body_start:])
    return Tune(fields=fields, body=body, name=name, dropped=dropped)


def _strip_comment(line: str) -> str:
    """Remove a ``%`` comment, ignoring ``%`` inside quoted text and escaped ``\\%``."""
    if "%" not in line:
        return line
    in_quote = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_quote = not in_quote
        elif ch == "%" and not in_quote and (i == 0 or line[i - 1] != "\\"):
            return line[:i]
    return line


def _looks_like_prose(line: str) -> bool:
    """A body line of words rather than music (e.g. 'Repeat the second part'): its letters outside
    quotes include ones that are not note, rest or decoration letters."""
    if not _FOREIGN_LETTER_RE.search(line):
        return False  # fast path: every letter on the line can be music
    outside = re.sub(r'"[^"]*"|![^!]*!', "", line)
    letters = re.findall(r"[A-Za-z]", outside)
    foreign = [c for c in letters if c not in "ABCDEFGabcdefgzxyZXHLMOPSTuvJR"]
    return len(foreign) >= 2 and len(re.findall(r"[A-Za-z]{4,}", outside)) >= 1


_CONTINUATION_RE = re.compile(r"\\[ \t]*$")


def join_continuations(body: str, dropped: list[str] | None = None) -> str:
    """Join music lines continued with ``\\``: ``"abc|\\\ndef|"`` is the one line ``"abc|def|"``.

    ABC 2.1 allows field lines and comment lines between continued lines (the music goes on after them).
    A body field (``K:``, ``M:``, ``L:``, ``P:``, ``Q:``, ``V:``) between them is kept where it stands, as the
    inline field ``[K:G]`` (it applies from that point on, exactly as the line did); any other field or a
    comment line there is dropped (added to ``dropped``). Joining them into the music as text would read
    ``K:G`` as notes. A comment line never continues (its ``\\`` is part of the comment)."""
    body = body.replace("\r\n", "\n")
    if "\\" not in body:
        return body
    out: list[str] = []
    continued: list[str] | None = None  # pieces of the music line being continued
    for raw in body.split("\n"):
        stripped = raw.strip()
        field = _FIELD_LINE_RE.match(stripped)
        if continued is not None and (stripped.startswith("%") or field):
            if field and field.group(1) in BODY_FIELDS:
                continued.append(f"[{field.group(1)}:{_strip_comment(field.group(2)).strip()}]")
            elif dropped is not None:
                dropped.append(stripped)
            continue
        if stripped.startswith("%") or field:
            out.append(raw)
            continue
        music = _strip_comment(raw)
        if m := _CONTINUATION_RE.search(music):
            continued = [*(continued or []), music[: m.start()]]
            continue
        out.append("".join(continued or []) + raw)
        continued = None
    if continued is not None:  # the body ends on a continuation: it continues into nothing
        out.append("".join(continued))
    return "\n".join(out)


def normalise_body(
    body: str, unit_length: Fraction, meter: Fraction | None, *, name: str | None = None, compound: bool = False
) -> tuple[str, list[str], list[ev.Event]]:
    """The canonical body text, the list of what was dropped (for reports) and the lexed body.
    Raises ``AbcParseError`` when the body is not ABC music."""
    dropped: list[str] = []
    body = join_continuations(body, dropped)
    kept: list[str] = []
    for raw in body.split("\n"):
        line = raw if raw.startswith("%%") else _strip_comment(raw)
        line = line.rstrip()
        if raw.lstrip().startswith("%"):
            if raw.strip():
                dropped.append(raw.strip())
            continue
        if not line.strip():
            continue
        m = _FIELD_LINE_RE.match(line)
        if m and not line.startswith("|"):
            letter = m.group(1)
            if letter in BODY_FIELDS:
                kept.append(f"{letter}:{m.group(2).strip()}")
            else:
                dropped.append(line)
            continue
        if _looks_like_prose(line):
            try:
                lex_body(line, unit_length, meter)
            except AbcParseError:
                dropped.append(line)
                continue
        kept.append(line.strip())
    text = "\n".join(kept)
    events = lex_body(text, unit_length, meter, tune=name, compound=compound)
    inserts = _missing_line_end_bars(text, events, unit_length, meter)
    if not inserts:
        return text, dropped, events
    # Insert the bar lines into the text and the events together (no second lex): a "|" goes before
    # each chosen newline, and every later event moves right by the bars inserted before it.
    pieces: list[str] = []
    previous = 0
    for offset in inserts:
        pieces += [text[previous:offset], "|"]
        previous = offset
    closed = "".join(pieces) + text[previous:]
    insert_at = set(inserts)
    shifted: list[ev.Event] = []
    shift = 0
    for event in events:
        if event.start in insert_at and event.kind == ev.NEWLINE:
            shifted.append(ev.Event(ev.BAR, "|", event.start + shift, event.line, event.column))
            shift += 1
            event.column += 1
        event.start += shift
        shifted.append(event)
    return closed, dropped, shifted


def _missing_line_end_bars(body: str, events: list[ev.Event], unit_length: Fraction, meter: Fraction | None) -> list[int]:
    """Offsets of the newlines that end a line completing a full bar without a bar line (Essen's
    convention); a ``|`` belongs before each."""
    if meter is None or not body or not _LINE_WITHOUT_BAR_RE.search(body):
        return []
    inserts: list[int] = []
    # Running bar length in L: units (int part + Fraction part: see bars.split_bars for why).
    whole, frac = 0, 0  # frac becomes a Fraction only when a fractional duration arrives
    current_l, current_m = unit_length, meter
    in_overlay = False
    for event in events:
        kind = event.kind
        duration = event.duration
        if duration is not None:
            if duration.denominator == 1:
                whole += duration.numerator
            else:
                frac += duration
        elif kind == ev.BAR:
            whole, frac, in_overlay = 0, 0, False
        elif kind == ev.FIELD and event.field:
            letter, value = event.field
            if letter == "L" and (new_l := parse_fraction(value)):
                frac, whole = (frac + whole) * current_l / new_l, 0
                current_l = new_l
            elif letter == "M":
                current_m = parse_fraction(value)
        elif kind == ev.OVERLAY:
            in_overlay = True  # overlays: do not guess
        elif kind == ev.NEWLINE and current_m and not in_overlay and (frac + whole) * current_l == current_m:
            inserts.append(event.start)
            whole = frac = 0
    return inserts


def normalise_tune(tune: Tune | str, *, name: str | None = None) -> Tune:
    """The canonical form of a tune (see the module docstring). Raises ``AbcParseError`` if the header
    has no ``K:``, the key is unreadable, or the body is not ABC music."""
    if isinstance(tune, str):
        tune = parse_tune(tune, name=name)
    key = tune.key  # raises on an unreadable key
    meter, unit_length = tune.meter, tune.unit_length
    body, dropped, events = normalise_body(tune.body, unit_length, meter, name=tune.name,
                                           compound=is_compound_meter(tune.get("M")))
    fields: list[tuple[str, str]] = [("X", "1")]
    for letter in HEADER_ORDER[1:-1]:
        if letter == "L":
            fields.append(("L", _format_fraction(unit_length)))
            continue
        for value in tune.get_all(letter):
            if value or letter == "T":
                fields.append((letter, value))
    fields.append(("K", format_key(key) if key.tonic else (tune.get("K") or "none")))
    dropped += [f"{k}:{v}" for k, v in tune.fields if k not in HEADER_ORDER]
    normalised = Tune(fields=fields, body=body, name=tune.name, dropped=tune.dropped + dropped)
    if normalised.unit_length == unit_length and normalised.meter == meter:
        normalised._events = events
    return normalised


def normalise_abc(text: str, *, name: str | None = None) -> str:
    """``normalise_tune(text).to_abc()``."""
    return normalise_tune(text, name=name).to_abc()


def _format_fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"
