"""Broken rhythm: ``A>B`` (the first note dotted, the second halved), ``A<B``, ``A>>B``, ``A<<B``.

``>`` comes right after a plain note (not a rest, not in a tuplet, not the second note of a pair) and
is followed by a note of the *same written length* (abc2midi refuses a pair of unequal notes: "Cannot
apply broken rhythm"), so the pair keeps its total length exactly: ``a>b`` counts 3/2 and 1/2 of the
written length (``>>`` 7/4 and 1/4). The first note's extra (or, for ``<``, its shortening) is taken
from the bar at ``>``; the second note is scaled through ``State.scale``. The pair never crosses a bar
line, and ``>`` is only offered when the second note fits and leaves a fillable remainder.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, REFUSE, Rule
from abcgen.grammar.state import INF, TUPLET_LEVEL, State
from abcgen.grammar.vocabulary import BROKEN, Unit


class BrokenRule(Rule):
    name = "broken"
    classes = frozenset({BROKEN})
    needs = frozenset({BROKEN})

    @classmethod
    def grid_factor(cls, g) -> int:  # noqa: ANN001 -- Grammar (import cycle)
        return math.lcm(1, *(f.denominator for u in g.vocab.units if u.cls == BROKEN for f in u.value))

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.dur_steps, self.fill = g.dur_steps, g.fill

    def step(self, s: State, ns: State, unit: Unit) -> int:
        if s.prev < 0 or s.prefix or s.tie is not None:
            return REFUSE
        first, second = unit.value
        d = self.dur_steps[s.prev]
        room = s.room - int(d * (first - 1))  # the first note's extra (negative for '<') is taken now
        eff = int(d * second)
        if not 0 <= eff <= room or self.fill[room - eff] >= INF:
            return REFUSE
        ns.room, ns.scale, ns.scaled = room, (second.numerator, second.denominator), 1
        ns.run_dur, ns.prefix = s.prev, TUPLET_LEVEL  # the second note has the first one's length
        return OFFER

    def key(self, s: State) -> Hashable:
        return s.prev, s.prefix > 0, s.tie is not None
