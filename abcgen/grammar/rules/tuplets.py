"""Tuplets: ``(3ABc`` (three notes in the time of two) and ``(p:q:r`` where the tokenizer has it.

A tuplet token sets the next ``r`` notes (rests allowed) to count ``q/p`` of their written length
(``q`` and ``r`` as ABC defaults them when not written: ``(3`` is 3 in the time of 2, ``(2`` 2 in 3,
``(5``/``(7``/``(9`` depend on compound meter), exactly, on a grid fine enough; the tuplet must fit in
what is left of the bar and leave a remainder the rest can fill (``Timing.scaled``), so it never
crosses a bar line. No tuplet inside a tuplet, after a broken-rhythm ``>``, or with chords or grace
groups inside (those refuse themselves while notes are scaled). Bar accounting is the bar-length rule's.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, REFUSE, Rule
from abcgen.grammar.state import INF, TUPLET_LEVEL, State
from abcgen.grammar.vocabulary import TUPLET, Unit


def tuplet_of(value: tuple[int, int | None, int | None], compound: bool) -> tuple[int, int, int]:
    """(p, q, r) of a tuplet token's value, with ABC's defaults."""
    p, q, r = value
    if not q:  # as the lexer reads it: 3 in 2, 2 in 3, 4 in 3, 6 in 2; 5, 7, 9 in 3 (compound) or 2
        q = 3 if p in (2, 4, 8) else 2 if p in (3, 6) else 3 if compound else 2
    return p, q, r if r else p


class TupletRule(Rule):
    name = "tuplets"
    classes = frozenset({TUPLET})
    needs = frozenset({TUPLET})

    @classmethod
    def grid_factor(cls, g) -> int:  # noqa: ANN001 -- Grammar (import cycle)
        return math.lcm(1, *(u.value[0] for u in g.vocab.units if u.cls == TUPLET))

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.scaled = g.timing.scaled

    def step(self, s: State, ns: State, unit: Unit) -> int:
        if s.scaled or s.prefix >= TUPLET_LEVEL or s.tie is not None or not s.room:
            return REFUSE
        p, q, r = tuplet_of(unit.value, self.g.compound)
        if self.scaled(q, p, r)[s.room] >= INF:
            return REFUSE
        ns.scale, ns.scaled, ns.prefix = (q, p), r, TUPLET_LEVEL
        return OFFER

    def key(self, s: State) -> Hashable:
        return s.scaled > 0 or s.prefix >= TUPLET_LEVEL or s.tie is not None
