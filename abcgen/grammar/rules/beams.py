"""Beams and lines: the constraint writes the spaces and line breaks, the model does not choose them.

Replaces ``layout`` when on. A space is written exactly where a note group of the meter ends inside a
bar (``abcgen.grammar.timing``: after each dotted quarter in 6/8 and 9/8, each half bar in 4/4, each
quarter in 2/4 and 3/4): after the note (or the closing ``]`` of a chord, the last note of a tuplet, the
second note of a broken pair) that ends on the boundary, the next thing to start a note -- a note, a
prefix, a chord -- must be preceded by a space (``need_space``); a tie, a closing slur or ``>`` may
still attach to the note first (a ``>`` moves the note's end, so the space waits for the pair's end).
Elsewhere a space is only allowed next to a bar line -- after one, or in a full bar before it (``| (AB``,
``d2 |``): it draws nothing, and real tunes write it (a BPE tokenizer merges it into the next token, `` (``).
No other space is allowed. A line break follows the bar line of every fourth full bar (not the final
one): forced with ``num_bars``, allowed (the model's choice) without. As in ``layout``, no line starts
with a lone letter note that fills the bar (``A`` before ``:|`` would read as the field ``A:``), and bars
of one ``L:`` unit get no line breaks.
"""

from __future__ import annotations

from collections.abc import Hashable
from fractions import Fraction

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.rules.order import PREFIX_CLASSES
from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import (
    BAR,
    BROKEN,
    CHORD_CLOSE,
    IDIOM_CLASSES,
    NEWLINE,
    NOTE,
    SPACE,
    Unit,
)

BARS_PER_LINE = 4
_LINE_START = ("start", "newline")


class BeamRule(Rule):
    name = "beams"
    classes = frozenset({NOTE, SPACE, NEWLINE, BAR}) | IDIOM_CLASSES

    @classmethod
    def grid_lengths(cls, g) -> list[Fraction]:  # noqa: ANN001 -- Grammar (import cycle)
        return [g.beam]

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.sp, self.dur_steps = g.timing.sp, g.dur_steps
        self.newlines = g.bar_steps * g.step > 1
        num_bars = g.num_bars or 0
        # forced[b]: line breaks still due after the bar lines of full bars b, b + 1, ... (not the final one)
        self.forced = [sum(1 for k in range(b, num_bars) if k % BARS_PER_LINE == 0 and k > 0) if self.newlines else 0
                       for b in range(num_bars + 2)]

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if s.need_newline == 2:
            if c != NEWLINE:
                return REFUSE
            ns.need_newline = 0
            return OFFER
        if c == SPACE:
            if not s.need_space and not self._beside_bar(s):
                return REFUSE
            ns.need_space = False
            return OFFER
        if c == NEWLINE:
            if not s.need_newline:
                return REFUSE
            ns.need_newline = 0
            return OFFER
        ns.need_newline = 0
        if self._before_bar(s) and c != BAR:  # a space written before the bar line: the bar line comes next
            return REFUSE
        if c == BAR:
            if not s.room and not ns.closed and not s.in_pickup and self.newlines \
                    and ns.bars_done % BARS_PER_LINE == 0:
                ns.need_newline = 2 if self.g.num_bars is not None else 1
            return PASS
        if c == BROKEN:  # the pair goes on: the space waits for its end
            ns.need_space = False
            return PASS
        starts = (c == NOTE and not s.grace and not s.chord) or c in PREFIX_CLASSES
        if starts and s.need_space:
            return REFUSE
        if c == NOTE:
            if s.grace or s.chord:
                return PASS
            if unit.lone and s.last in _LINE_START and not s.in_pickup and self.dur_steps[unit.dur] == s.room:
                return REFUSE
            ns.need_space = not ns.scaled and bool(self.sp[ns.room])  # (a chord's space comes at ']')
        elif c == CHORD_CLOSE:
            ns.need_space = bool(self.sp[s.room])
        return PASS

    @staticmethod
    def _beside_bar(s: State) -> bool:
        """After a bar line (not at a line start), or in a full bar before its bar line -- when nothing but the
        bar line may come there (no slur to close, no tie to write)."""
        return (s.last == "bar" and not s.pending) or (s.last == "note" and not s.room and not s.in_pickup
                                                       and not s.grace and not s.chord and not s.scaled
                                                       and not s.slur and s.tie is None)

    @staticmethod
    def _before_bar(s: State) -> bool:
        """A space just written in a full bar: nothing but its bar line may follow (not ``d2 )``)."""
        return s.last == "space" and not s.room and not s.in_pickup

    def finish_cost(self, s: State) -> int:
        cost = int(s.need_space) + (1 if s.need_newline == 2 else 0)
        if self.g.num_bars is None:
            return cost
        first = 1 if s.in_pickup else s.bars_done + 1  # the first full bar whose bar line is still to come
        return cost + self.forced[min(first, len(self.forced) - 1)]

    def key(self, s: State) -> Hashable:
        return (s.need_space, s.need_newline, s.last in _LINE_START, s.grace > 0 or s.chord > 0, self._beside_bar(s),
                self._before_bar(s))
