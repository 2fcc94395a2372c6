"""Ties: ``A2-A2``, only between equal pitches, within a bar.

abc2midi ties a note only to the next note of the same letter, octave and accidental in effect ("Could
not find note to be tied" otherwise, and it refuses ``^A-=A`` even where both sound alike), so ``-``
comes right after a plain note (not a rest, not in a tuplet or broken pair) and the next note must be
the same letter and octave written with no accidental (it inherits the first one's within the bar) or
with the first one's own accidental -- and, to keep the bar accounting simple, of the same written
length, fitting in the same bar (a tie never crosses a bar line). Nothing but a space may stand between
the two notes. Reads pitches (``pitched``).
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.rules.order import PREFIX_CLASSES
from abcgen.grammar.state import INF, State
from abcgen.grammar.vocabulary import BAR, NOTE, TIE, Unit


class TieRule(Rule):
    name = "ties"
    classes = frozenset({TIE, NOTE, BAR}) | PREFIX_CLASSES
    needs = frozenset({TIE})
    pitched = True

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.dur_steps, self.fill, self.sp = g.dur_steps, g.fill, g.timing.sp

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c, tie = unit.cls, s.tie
        if c == TIE:
            if s.prev < 0 or s.prefix or tie is not None or s.prev_pitch is None:
                return REFUSE
            d = self.dur_steps[s.prev]
            if d > s.room or self.fill[s.room - d] >= INF:
                return REFUSE
            ns.tie = (*s.prev_pitch, s.prev)
            return OFFER
        if tie is None:
            return PASS
        if c != NOTE:
            return REFUSE  # nothing but a space between the tied notes
        pitch = unit.pitch
        if unit.dur != tie[3] or pitch is None or pitch[:2] != tie[:2] or pitch[2] not in ("", tie[2]):
            return REFUSE
        ns.tie, ns.prev, ns.prev_pitch = None, -1, None
        return PASS

    def finish_cost(self, s: State) -> int:
        if s.tie is None:
            return 0
        rest = s.room - self.dur_steps[s.tie[3]]  # the tied note has the first one's length
        return 1 + self.sp[rest] + self.fill[rest] - self.fill[s.room]

    def key(self, s: State) -> Hashable:
        return s.tie, s.prev, s.prev_pitch is None, s.prefix > 0
