"""What verovio's ABC importer (verovio 6.4) misreads, and the engraving input that avoids it.

verovio's ABC importer (``ioabc.cpp``) reads a tune character by character; a bar line exists for it only
where it meets a ``|``. Measured on hand-written form tunes and on O'Neill's, Ryan's, Aird's and the Essen
collections (``tests/test_render_measures.py``), it misreads:

1. ``::`` -- no ``|``, so no bar line at all: the bars on either side are engraved as one measure of twice
   the length, and both repeat signs are lost. Every ``form=AABB`` tune (``|: A :: B :|``) lost a bar.
2. ``:|:`` -- read as ``:|`` (the ``:`` after the ``|`` is skipped): the repeat start is lost.
3. ``||:`` -- read as ``||`` (the ``:`` after the double bar is skipped): the repeat start is lost.
4. ``[|`` -- the ``[`` is skipped: a single bar line. ``||]`` -- drawn as ``||``, not as a final bar.
5. A last bar with no bar line after it is never engraved (the importer adds a measure only at a ``|``):
   every Essen tune lost its last bar.
6. The line break after the last music line adds an empty system (a strip of blank page) at the end.
7. First and second endings (``|1``, ``:|2``, ``[1``) are skipped: no ending brackets are drawn, so the
   music reads as if both endings were played each time.
8. A key change in the body draws no new key signature: a ``K:`` line is ignored, and ``[K:...]`` draws a
   stray clef instead (an extra, empty measure when it stands between two bar lines).

(Read right: ``|:``, ``:|``, ``:||:``, ``||``, ``|]``, a pickup bar, ``\\`` continuations -- joined into
one line by the normaliser --, and every ``K:`` key signature within seven sharps or flats; a theoretical
key beyond that, ``K:Dbm``, aborts verovio.)

:func:`engraving_input` works around all of them: the bar lines of 1-4 are respelled (:func:`verovio_bar`)
into what verovio reads as the ABC means (``:||:``, ``|:``, ``||``, ``|]``), a ``|`` closes a last bar
that has none (5), a ``\\`` ends the last music line (no system break after it: 6), and the key changes are
taken out of the ABC; the endings (7) and key signatures (8), which that importer cannot read in any
spelling, are then put into the MEI verovio made of the ABC, around the measures they belong to
(``abcgen/render/_verovio_child.py``). Only the engraving input changes: the ABC a user gets is as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from abcgen.errors import AbcParseError
from abcgen.notation import events as ev
from abcgen.notation.bars import Bar, split_bars
from abcgen.notation.keys import parse_key
from abcgen.notation.tune import Tune

# One bar-line token as our lexer emits it: optional "[", the repeat-end colons, the bar itself, the
# repeat-start colons, then an ending number glued to it ("|1", ":|[2").
_BAR_PARTS_RE = re.compile(r"(?P<left>:*)(?P<bar>\[?[|\]]*)(?P<right>:*)(?P<ending>\[?\d[\d,-]*)?")
# A field line in a body ("P:B", "K:G"): verovio reads it as a field, so a "\" there would be read as text.
_FIELD_LINE_RE = re.compile(r"^[A-Za-z]:")
_MEASURE_RE = re.compile(r'<g\b[^>]*\bclass="measure\b')


@dataclass(frozen=True)
class EngravingInput:
    """What verovio is given for a one-voice tune: the ``abc`` its ABC importer reads, the number of
    ``measures`` it must engrave (the bars with music, a pickup included) and the MEI ``inserts``
    (``(measure, "before" | "after", text)``, measures 0-based) to add once it has read them."""

    abc: str
    measures: int
    inserts: list[tuple[int, str, str]] = field(default_factory=list)


def verovio_bar(text: str) -> str:
    """The spelling of bar line ``text`` that verovio's ABC importer draws as ``text`` means: a repeat end
    and start together as ``:||:``, a repeat start as ``|:``, a repeat end as ``:|``, a final bar as
    ``|]``, a double bar (``||``, ``[|``, ``|||``) as ``||``; an ending number stays glued to it."""
    m = _BAR_PARTS_RE.fullmatch(text)
    if m is None:  # not a bar line our lexer writes: leave it
        return text
    ends, starts, bar = bool(m["left"]), bool(m["right"]), m["bar"]
    if not bar and ends:  # "::" (and ":::"): a repeat end and a repeat start
        starts = True
    if ends and starts:
        spelled = ":||:"
    elif starts:
        spelled = "|:"
    elif ends:
        spelled = ":|"
    elif "]" in bar:
        spelled = "|]"
    elif bar.count("|") > 1 or bar.startswith("["):
        spelled = "||"
    else:
        spelled = "|"
    return spelled + (m["ending"] or "")


def engraving_input(tune: Tune, title: str | None = None) -> EngravingInput:
    """The input verovio engraves ``tune`` (normalised, one voice) from as written (see the module
    docstring); ``title`` is drawn as the title when the tune has no ``T:``."""
    bars = split_bars(tune.events(), tune.unit_length, tune.meter)
    music = [b for b in bars if b.has_notes]
    inserts = [insert for insert in _ending_inserts(music) + _key_inserts(tune) if insert[0] < len(music)]
    return EngravingInput(abc=_verovio_abc(tune, title), measures=len(music), inserts=inserts)


def _verovio_abc(tune: Tune, title: str | None) -> str:
    """The tune's text with bar lines respelled, key changes taken out, a ``|`` after a last bar that has
    none and a ``\\`` at the end of the last music line."""
    body = tune.body
    pieces: list[str] = []
    done = 0  # offset in body up to which pieces holds the text
    last_note: int | None = None  # offset of the last note, rest or chord after the last bar line
    for event in tune.events():
        replace: str | None = None
        if event.kind == ev.BAR:
            replace, last_note = verovio_bar(event.text), None
        elif event.field and event.field[0] == "K":  # the MEI gets the key signature (_key_inserts)
            replace = "" if event.text.startswith("[") else "%" + event.text  # a line becomes a comment
        elif event.kind in ev.TIMED_KINDS:
            last_note = event.start
        if replace is not None:
            pieces += [body[done:event.start], replace]
            done = event.start + len(event.text)
    if last_note is not None:  # close the last bar at the end of its line (after any slur or tie there)
        line_end = body.find("\n", last_note)
        line_end = len(body) if line_end < 0 else line_end
        pieces += [body[done:line_end].rstrip(), "|"]
        done = line_end
    pieces.append(body[done:])
    lines = "".join(pieces).rstrip().split("\n")
    music = [i for i, line in enumerate(lines) if line.strip() and not _FIELD_LINE_RE.match(line)
             and not line.startswith("%")]
    if music:
        lines[music[-1]] = lines[music[-1]].rstrip() + "\\"
    fields = list(tune.fields)
    if title and not tune.title:
        fields.insert(1, ("T", title))  # after X:, which starts the tune for verovio
    header = "\n".join(f"{key}:{value}" for key, value in fields)
    return header + "\n" + "\n".join(lines) + "\n"


def _ending_inserts(music: list[Bar]) -> list[tuple[int, str, str]]:
    """An MEI ``<ending>`` around each first/second ending: from the bar after ``|1`` (``[1``) to the first
    bar followed by a bar line other than ``|`` (``:|2``, ``||``, ``|]``, ``|:``, ...), or the last bar."""
    inserts: list[tuple[int, str, str]] = []
    open_at: int | None = None
    for index, bar in enumerate(music):
        if bar.ending and open_at is None:
            number = re.match(r"\d+", bar.ending)
            label = bar.ending.replace(",", ", ")
            inserts.append((index, "before", f'<ending n="{number.group(0) if number else 1}" label="{label}">'))
            open_at = index
        # the bar line after it: its own closing, or the next music bar's opening (after an empty bar)
        after = {bar.closing, music[index + 1].opening} if index + 1 < len(music) else {"|]"}
        if open_at is not None and any(verovio_bar(text) != "|" for text in after):
            inserts.append((index, "after", "</ending>"))
            open_at = None
    return inserts


def _key_inserts(tune: Tune) -> list[tuple[int, str, str]]:
    """An MEI ``<scoreDef keysig>`` before the measure of each key change in the body (the measure holding
    the first note after it)."""
    inserts: list[tuple[int, str, str]] = []
    measures = 0  # measures with music closed so far
    has_notes = False
    for event in tune.events():
        if event.kind == ev.BAR:
            measures += has_notes
            has_notes = False
        elif event.kind in ev.TIMED_KINDS and event.duration is not None:
            has_notes = True
        elif event.field and event.field[0] == "K":
            try:
                sharps = parse_key(event.field[1], tune=tune.name).sharps
            except AbcParseError:
                continue  # verovio draws no key change; the checks report the key
            sig = "0" if sharps == 0 else f"{abs(sharps)}{'s' if sharps > 0 else 'f'}"
            inserts.append((measures + has_notes, "before", f'<scoreDef keysig="{sig}" />'))
    return inserts


def engraved_measures(svg: str) -> int:
    """The number of measures verovio engraved in ``svg`` (its ``<g class="measure">`` groups; a measure of
    several voices is one group)."""
    return len(_MEASURE_RE.findall(svg))
