"""Section structure of a tune: repeats, endings, form (``AABB``) and truncation.

Sections end at repeat signs, double bars and final bars. A repeated section is written twice in the
form; sections whose bars are identical get the same letter. A ``P:`` header (``P:AABB``) wins when it
is a plain letter sequence.
"""

from __future__ import annotations

import re
from fractions import Fraction

from abcgen.notation import events as ev
from abcgen.notation.bars import Bar
from abcgen.notation.events import Event

_FORM_RE = re.compile(r"^[A-Z](?:[A-Z0-9.() ]*)$")

# Kinds of repeat problems (``RepeatProblem.kind``), so callers branch on the kind, not on the message.
REPEAT_REOPENED, REPEAT_UNCLOSED, ENDING_ORDER = "reopened", "unclosed", "ending_order"


class RepeatProblem(str):
    """One problem found by ``repeat_problems``: its message (it is a ``str``) and its ``kind``."""

    kind: str

    def __new__(cls, message: str, kind: str = "") -> RepeatProblem:  # default: unpickling passes the text only
        problem = super().__new__(cls, message)
        problem.kind = kind
        return problem


def repeat_problems(events: list[Event]) -> list[str]:
    """Unbalanced repeats and endings out of order, each as 'bar N: what' (a ``RepeatProblem``, whose
    ``kind`` says which).

    ``:|`` without an open ``|:`` repeats from the start of the tune or from the last double bar
    (legal ABC); ``|:`` opened twice without a close, a repeat left open at the end, and endings out of
    order (``|2`` before ``|1``, ``|1`` twice) are problems."""
    problems: list[str] = []
    open_at: int | None = None
    last_ending = 0
    bar_no = 1

    def ending_number(text: str) -> int:
        digits = re.search(r"\d+", text)
        return int(digits.group(0)) if digits else 0

    for event in events:
        if event.kind not in (ev.BAR, ev.ENDING):
            continue
        text = event.text
        if event.kind == ev.BAR:
            bar_no += 1
            core = re.sub(r"\[?\d.*$", "", text)
            closes = core.startswith(":") or core in ("::",)
            opens = core.endswith(":") or core == "::"
            if closes:
                open_at = None
            if opens:
                if open_at is not None and not closes:
                    problems.append(RepeatProblem(f"bar {bar_no}: '|:' opens a repeat while the one from bar {open_at} is "
                                                  "still open", REPEAT_REOPENED))
                open_at = bar_no
                last_ending = 0
            elif core in ("||", "|]", "[|") and not any(c.isdigit() for c in text):
                last_ending = 0
        number = ending_number(text) if (event.kind == ev.ENDING or re.search(r"\d", text)) else 0
        if number:
            if number != last_ending + 1:
                problems.append(RepeatProblem(f"bar {bar_no}: ending {number} follows ending {last_ending or 'none'}",
                                              ENDING_ORDER))
            last_ending = number
    if open_at is not None:
        problems.append(RepeatProblem(f"bar {open_at}: '|:' opens a repeat that is never closed", REPEAT_UNCLOSED))
    return problems


def is_truncated(events: list[Event], bars: list[Bar]) -> bool:
    """True when the body seems cut off inside a bar: it has no final bar line, and its last bar is short
    by a fraction of a beat (not a whole number of the meter's beats) without completing the pickup.

    Collections such as Essen end tunes on a phrase without writing the final bar line; their last bar is
    short by whole beats and is accepted. Text cut at a length limit stops at an arbitrary note."""
    music = [b for b in bars if b.has_notes]
    if not music:
        return True
    last_kind = next((e.kind for e in reversed(events) if e.kind not in (ev.SPACE, ev.NEWLINE, ev.OTHER)), None)
    if last_kind in (ev.BAR, ev.FIELD, ev.VOICE):
        return False
    last, first = music[-1], music[0]
    if last.meter is None or last.duration >= last.meter:
        return False
    if len(music) >= 2 and first.duration + last.duration == last.meter:
        return False
    # The meter is a reduced fraction (6/8 is stored as 3/4), so the beat is a quarter unless the meter
    # itself is in eighths or smaller (3/8, 9/8, 5/8).
    beat = Fraction(1, last.meter.denominator) if last.meter.denominator >= 8 else Fraction(1, 4)
    return (last.duration / beat).denominator != 1


def derive_form(events: list[Event], part_field: str | None = None) -> str:
    """The tune's form as letters, e.g. ``AABB``. Empty when the tune has one unrepeated section."""
    if part_field and _FORM_RE.match(part_field.strip()):
        letters = re.sub(r"[^A-Z]", "", part_field)
        if len(letters) > 1:
            return letters
    sections: list[tuple[str, bool]] = []  # (bar content signature, repeated)
    current: list[str] = []
    bar: list[str] = []
    repeated = False
    saw_ending = False

    def flush(close_repeat: bool) -> None:
        nonlocal current, repeated, saw_ending
        if current:
            sections.append(("|".join(current), close_repeat or repeated or saw_ending))
        current, repeated, saw_ending = [], False, False

    for event in events:
        if event.kind == ev.BAR:
            if bar:
                current.append("".join(bar))
                bar = []
            text = event.text
            core = re.sub(r"\[?\d.*$", "", text)
            if re.search(r"\d", text):
                if text.lstrip(":|[").startswith("1"):
                    saw_ending = True
                # the 2nd ending closes the section after it
                continue
            closes = core.startswith(":")
            opens = core.endswith(":")
            if closes or core in ("||", "|]", "[|") or core == "::":
                flush(closes)
            if opens:
                flush(False)
                repeated = True
        elif event.kind == ev.ENDING:
            saw_ending = True
        elif event.kind == ev.FIELD and event.field and event.field[0] == "P":
            if bar:
                current.append("".join(bar))
                bar = []
            flush(False)
        elif event.kind in ev.TIMED_KINDS:
            bar.append(event.text)
    if bar:
        current.append("".join(bar))
    flush(False)
    if len(sections) <= 1 and not (sections and sections[0][1]):
        return ""
    letters: dict[str, str] = {}
    form = []
    for content, rep in sections:
        letter = letters.setdefault(content, chr(ord("A") + min(len(letters), 25)))
        form.append(letter * (2 if rep else 1))
    return "".join(form)
