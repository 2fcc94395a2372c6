"""Slurs: ``(AB c)``, balanced within a section.

``(`` is the first prefix of a note (``(3``, grace notes, chord symbols and decorations follow it);
``)`` comes after a note (or the space after it; not between tied notes). One slur at a time; an open slur may cross a
plain ``|`` only, so it is closed before any repeat sign, section bar line, ending or the final bar
line -- and so at the end of the tune. The closing ``)`` is counted among the tokens still needed.

A slur joins notes: ``(c)`` around a single note is legal ABC but draws a slur to nowhere, and the training
corpus writes it in 0.3 % of its slurs (39 of 13,663 in the quickstart's train split) where the quickstart
model wrote it in 38 % (40 of 106 in 48 tunes). So the rule counts the notes under an open slur
(``State.slur``: 0 none, 1 open, 2 with one note, 3 with more; a chord is one note, grace notes and rests
none) and weighs a ``)`` after fewer than two notes by ``-SHORT_SLUR_PENALTY`` logits. Weighed, not masked: a
slur opened on the last note before a repeat sign must still close there, and a mask would leave no token.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import SLUR_LEVEL, State
from abcgen.grammar.vocabulary import BAR, CHORD_CLOSE, NOTE, SLUR_CLOSE, SLUR_OPEN, Unit

SHORT_SLUR_PENALTY = 8.0  # logits off a ')' closing a slur over one note: its odds fall ~3000-fold
_OPEN, _TWO_NOTES = 1, 3  # State.slur values: just opened; two or more notes under it


class SlurRule(Rule):
    name = "slurs"
    classes = frozenset({SLUR_OPEN, SLUR_CLOSE, BAR, NOTE, CHORD_CLOSE})
    needs = frozenset({SLUR_OPEN, SLUR_CLOSE})

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if c in (NOTE, CHORD_CLOSE):  # count the notes under an open slur (a chord's notes as one)
            if s.slur and not s.grace and (c == CHORD_CLOSE or not (s.chord or unit.rest)):
                ns.slur = min(s.slur + 1, _TWO_NOTES)
            return PASS
        if c == BAR:
            return REFUSE if s.slur and unit.kind != "|" else PASS
        if c == SLUR_OPEN:
            if s.slur or s.prefix >= SLUR_LEVEL or s.tie is not None or not s.room:
                return REFUSE
            ns.slur, ns.prefix = _OPEN, SLUR_LEVEL
            return OFFER
        if not s.slur or s.last not in ("note", "space") or s.tie is not None or s.prefix:
            return REFUSE
        ns.slur = 0
        return OFFER

    def finish_cost(self, s: State) -> int:
        return 1 if s.slur else 0

    def weight(self, s: State, unit: Unit) -> float:
        """``-SHORT_SLUR_PENALTY`` for a ``)`` (alone or in a two-unit token) after fewer than two notes."""
        notes = s.slur
        for part in unit.parts or (unit,):
            if part.cls == SLUR_CLOSE:
                return -SHORT_SLUR_PENALTY if 0 < notes < _TWO_NOTES else 0.0
            if part.cls == NOTE and notes and not part.rest:
                notes = min(notes + 1, _TWO_NOTES)
        return 0.0

    def key(self, s: State) -> Hashable:
        return s.slur, s.last in ("note", "space"), s.tie is not None, s.prefix
