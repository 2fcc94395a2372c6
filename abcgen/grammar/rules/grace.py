"""Grace notes: ``{g}A``, ``{ag}A`` -- one to three notes (no rests, at most one ``L:`` unit each) that
take no time, before a *host* note of the bar of at least one ``L:`` unit (abc2midi takes the grace
notes' time from that note and cuts them off, with a warning, before a shorter one; ``State.host``,
checked and counted by the order rule).

``{`` is a prefix (``State.prefix``): a note must follow the group, so it is only offered where a note
still fits (``room`` left) and never inside a tuplet, after ``>`` or between tied notes (abc2midi's
tuplet and tie bookkeeping skip them, but a reader does not). The notes inside count nothing (the
bar-length rule reads ``State.grace``).
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import GRACE_LEVEL, INF, State
from abcgen.grammar.vocabulary import GRACE_CLOSE, GRACE_OPEN, NOTE, Unit

MAX_GRACE_NOTES = 3


class GraceRule(Rule):
    name = "grace"
    classes = frozenset({GRACE_OPEN, GRACE_CLOSE, NOTE})
    needs = frozenset({GRACE_OPEN, GRACE_CLOSE})

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.host = next(r for r in g.rules if r.name == "order").host

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if c == NOTE:
            if not s.grace:
                return PASS
            if s.grace > MAX_GRACE_NOTES:
                return REFUSE
            ns.grace = s.grace + 1
            return PASS
        if c == GRACE_OPEN:
            if s.prefix >= GRACE_LEVEL or s.scaled or s.tie is not None or self.host[s.room] >= INF:
                return REFUSE
            ns.grace, ns.prefix, ns.host = 1, GRACE_LEVEL, True
            return OFFER
        if s.grace < 2:  # '}' after at least one note
            return REFUSE
        ns.grace = 0
        return OFFER

    def finish_cost(self, s: State) -> int:
        # a note and '}' (or just '}'); the host note after it is the order rule's
        return 0 if not s.grace else 2 if s.grace == 1 else 1

    def key(self, s: State) -> Hashable:
        return s.grace, s.host, s.prefix >= GRACE_LEVEL, bool(s.scaled) or s.tie is not None
