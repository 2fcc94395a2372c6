"""Slurs: ``(AB c)``, balanced within a section.

``(`` is the first prefix of a note (``(3``, grace notes, chord symbols and decorations follow it);
``)`` comes after a note (or the space after it; not between tied notes). One slur at a time; an open slur may cross a
plain ``|`` only, so it is closed before any repeat sign, section bar line, ending or the final bar
line -- and so at the end of the tune. The closing ``)`` is counted among the tokens still needed.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import SLUR_LEVEL, State
from abcgen.grammar.vocabulary import BAR, SLUR_CLOSE, SLUR_OPEN, Unit


class SlurRule(Rule):
    name = "slurs"
    classes = frozenset({SLUR_OPEN, SLUR_CLOSE, BAR})
    needs = frozenset({SLUR_OPEN, SLUR_CLOSE})

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if c == BAR:
            return REFUSE if s.slur and unit.kind != "|" else PASS
        if c == SLUR_OPEN:
            if s.slur or s.prefix >= SLUR_LEVEL or s.tie is not None or not s.room:
                return REFUSE
            ns.slur, ns.prefix = True, SLUR_LEVEL
            return OFFER
        if not s.slur or s.last not in ("note", "space") or s.tie is not None or s.prefix:
            return REFUSE
        ns.slur = False
        return OFFER

    def finish_cost(self, s: State) -> int:
        return 1 if s.slur else 0

    def key(self, s: State) -> Hashable:
        return s.slur, s.last in ("note", "space"), s.tie is not None, s.prefix
