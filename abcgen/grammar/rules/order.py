"""The order of what stands before a note, and the inside of grace groups and chords (on with any idiom).

A note may be preceded, in this order, by an opening slur ``(``, a tuplet ``(3`` (or the ``>`` of a
broken pair), grace notes ``{g}``, a chord symbol ``"Am"`` and a decoration ``~`` -- the order of ABC 2.1
(4.20), which abc2midi reads: ``~{g}A`` and ``~"Am"A`` are errors there. Such a *prefix* (``State.prefix``,
its level) must be followed by a note, a rest, a chord or a prefix of a higher level (each idiom rule
checks the level of its own units); nothing else -- no space, bar line, tie or newline -- may follow it.
Inside ``{...}`` only notes (no rests, at most one ``L:`` unit long) and the closing ``}`` may come,
inside ``[...]`` only notes and ``]``. This rule also records the last note: ``prev`` (its length index,
when a tie or broken rhythm may follow it -- a plain note, not a rest, not in a tuplet, a grace group or
a chord, without grace notes or a decoration, right before) and ``prev_pitch``. After grace notes or a decoration the note (``State.host``)
is a note, not a rest, of at least one ``L:`` unit: abc2midi fits grace notes and ornaments into it and
warns ("Grace sequence exceeds host note") when it is shorter.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import PASS, REFUSE, Rule
from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import (
    BAR,
    CHORD_CLOSE,
    CHORD_OPEN,
    CHORD_SYMBOL,
    DECORATION,
    GRACE_CLOSE,
    GRACE_OPEN,
    IDIOM_CLASSES,
    NEWLINE,
    NOTE,
    SLUR_OPEN,
    SPACE,
    TUPLET,
    Unit,
)

PREFIX_CLASSES = frozenset({TUPLET, GRACE_OPEN, DECORATION, SLUR_OPEN, CHORD_SYMBOL, CHORD_OPEN})


class OrderRule(Rule):
    name = "order"
    classes = frozenset({NOTE, SPACE, NEWLINE, BAR}) | IDIOM_CLASSES

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.grace_ok = [d <= 1 or d == min(g.vocab.durations) for d in g.vocab.durations]
        self.long = [d >= 1 for d in g.vocab.durations]
        hosts = {g.dur_steps[u.dur] for u in g.units if u.cls == NOTE and not u.rest and self.long[u.dur]}
        self.host = g.timing.starting_with(hosts)  # host[r]: fill r steps, the first note a host
        self.fill = g.fill

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if c != NOTE:
            ns.prev = -1
            if c not in (SPACE, NEWLINE, BAR):
                ns.can_end = False  # EOS may follow a closing ':|', not an idiom token written after it
        if s.grace:
            if c == NOTE:
                return PASS if not unit.rest and self.grace_ok[unit.dur] else REFUSE
            return PASS if c == GRACE_CLOSE else REFUSE
        if s.chord:
            if c == NOTE:
                return REFUSE if unit.rest else PASS
            return PASS if c == CHORD_CLOSE else REFUSE
        if c == NOTE:
            if s.host:  # after grace notes or a decoration: a note of at least one unit
                if unit.rest or not self.long[unit.dur]:
                    return REFUSE
                ns.host = False
            ns.prefix = 0
            # a note with grace notes or a decoration starts no tie or broken pair (abc2midi loses the note
            # under '.', and '<' would shorten it below its grace notes)
            plain = not s.scaled and not unit.rest and not s.host
            ns.prev = unit.dur if plain else -1
            ns.prev_pitch = unit.pitch if plain else None
            return PASS
        if s.prefix:
            return PASS if c in PREFIX_CLASSES else REFUSE
        return PASS

    def finish_cost(self, s: State) -> int:
        return self.host[s.room] - self.fill[s.room] if s.host else 0

    def key(self, s: State) -> Hashable:
        return s.grace > 0, s.chord > 0, s.prefix > 0, s.host
