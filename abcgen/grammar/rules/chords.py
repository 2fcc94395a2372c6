"""Chords: ``[ceg]`` -- two or three notes (no rests) of one written length, counted once.

``[`` may stand where a note starts (after a slur or a chord symbol: ``"C"[ceg]``), never inside a
tuplet, after ``>``, between tied notes or after grace notes (even with a chord symbol between: abc2midi
cuts them off on a short chord) and decorations; the first note inside is
counted by the bar-length rule like a single note, the others must have its length and count nothing
(``State.chord``, ``chord_dur``); ``]`` closes the chord after its second or third note. The chord's
length is written on its notes (``[c2e2g2]``), not after ``]``: a bare length token is a partial unit.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import INF, SLUR_LEVEL, SYMBOL_LEVEL, State
from abcgen.grammar.vocabulary import CHORD_CLOSE, CHORD_OPEN, NOTE, Unit

MAX_CHORD_NOTES = 3


class ChordRule(Rule):
    name = "chords"
    classes = frozenset({CHORD_OPEN, CHORD_CLOSE, NOTE})
    needs = frozenset({CHORD_OPEN, CHORD_CLOSE})

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        notes = {g.dur_steps[u.dur] for u in g.units if u.cls == NOTE and not u.rest}
        self.first = g.timing.starting_with(notes)  # the chord's first note is not a rest
        self.fill, self.sp = g.fill, g.timing.sp

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if c == NOTE:
            if not s.chord:
                return PASS
            if s.chord == 1:
                ns.chord, ns.chord_dur = 2, unit.dur
                return PASS
            if unit.dur != s.chord_dur or s.chord > MAX_CHORD_NOTES:
                return REFUSE
            ns.chord = s.chord + 1
            return PASS
        if c == CHORD_OPEN:
            if s.prefix not in (0, SLUR_LEVEL, SYMBOL_LEVEL) or s.scaled or s.tie is not None or s.host:
                return REFUSE
            if not s.room or self.first[s.room] >= INF:
                return REFUSE
            ns.chord, ns.prefix = 1, 0
            return OFFER
        if s.chord < 3:  # ']' after two notes at least
            return REFUSE
        ns.chord, ns.chord_dur = 0, -1
        return OFFER

    def finish_cost(self, s: State) -> int:
        if not s.chord:
            return 0
        if s.chord == 1:  # a first note (not a rest), a second one and ']'
            return self.first[s.room] - self.fill[s.room] + 2
        # the space after ']' at a beat group is due now (the bar-length rule counted the first note)
        return (2 if s.chord == 2 else 1) + self.sp[s.room]

    def key(self, s: State) -> Hashable:
        return s.chord, s.chord_dur, s.prefix, bool(s.scaled) or s.tie is not None or s.host
