"""Recurrence: which bars of a tune repeat an earlier bar, note for note (``AbcConstraint(recurrence=True)``).

Folk tunes are built from phrases that come back: bars 1-2 of a part return as bars 5-6 with a different
ending (about a quarter of all bars of O'Neill's tunes repeat an earlier bar; ``shared/reference/
folk-idiom.md``), and a section letter that returns (the second ``A`` of ``ABAC``) is the same music. A
small model left alone writes almost none of it (0.2 % of its bars), so the constraint replays the tokens
of the earlier bar: ``recurrence_plan`` says, per full bar (1-based, a pickup not counted), which earlier
bar it repeats:

* in each part of 8 bars or more (a ``form`` section, or consecutive 8-bar parts without a form), bars 5
  and 6 repeat bars 1 and 2 (the answering phrase opens like the first; bars 7-8 make a new cadence);
* a section whose letter came before, not right before it (``ABAC``: the second ``A``), repeats that
  section bar for bar, except its last two bars (``variation``, the default: the same opening with a new
  cadence) or all of it (``variation=False``). ``AABB`` needs no copy: ``AA`` is written once between
  repeat signs.

The replay is a preference the grammar may overrule: a replayed token is only forced while the grammar
allows it (a tie or an open slur at the end of the earlier bar may make it illegal here); at the first
refused token the rest of that bar is written freely.
"""

from __future__ import annotations

from abcgen.grammar.rules.forced import form_runs, parse_form

PART = 8  # bars of a part without a form (a dance tune's strain)
ANSWER = {5: 1, 6: 2}  # bar of a part -> the bar of the same part it repeats
CADENCE_BARS = 2  # bars at the end of a returning section written anew (variation)
FREE_BARS = 256  # bars planned without num_bars (free mode)


def recurrence_plan(num_bars: int | None, form: str | None, *, variation: bool = True,
                    endings: bool = False) -> dict[int, int]:
    """``{bar: earlier bar it repeats}`` over full bars numbered from 1 (see the module docstring)."""
    if form and num_bars:
        sections = parse_form(form, num_bars, endings)
        spans, start = [], 0
        for (letter, _), section in zip(form_runs(form), sections, strict=True):
            spans.append((letter, start, section.end_bar - start))
            start = section.end_bar
    else:
        total = num_bars or FREE_BARS
        spans = [("A", start, min(PART, total - start)) for start in range(0, total, PART)]
        spans = [(f"P{i}", s, n) for i, (_, s, n) in enumerate(spans)]  # parts of a free tune are distinct
    plan: dict[int, int] = {}
    first: dict[str, tuple[int, int]] = {}
    previous = None
    for letter, start, length in spans:
        source = first.get(letter)
        if source is not None and letter != previous:
            copied = min(length, source[1]) - (CADENCE_BARS if variation else 0)
            for i in range(1, copied + 1):
                plan[start + i] = source[0] + i
        else:
            first.setdefault(letter, (start, length))
            if length >= PART:
                plan.update({start + bar: start + earlier for bar, earlier in ANSWER.items()})
        previous = letter
    return plan


__all__ = ["recurrence_plan"]
