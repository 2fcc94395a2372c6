"""Spaces and line breaks, and the one note a line may not start with.

A newline is offered only right after a bar line (not the final one: the tune is closed then), and only
when a bar is longer than one ``L:`` unit; a space not at the start of the body, after a newline or
after another space. A line never starts with a lone letter note that fills the bar (``A`` then a bar line
beginning with ``:`` would read as the header field ``A:``). Switched off, the body has no whitespace.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import NEWLINE, NOTE, SPACE, Unit

_LINE_START = ("start", "newline")
_NO_SPACE_AFTER = ("start", "space", "newline")


class LayoutRule(Rule):
    name = "layout"
    classes = frozenset({NOTE, SPACE, NEWLINE})

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.newlines = g.bar_steps * g.step > 1
        self.dur_steps = g.dur_steps

    def step(self, s: State, ns: State, unit: Unit) -> int:
        if unit.cls == NOTE:
            if unit.lone and s.last in _LINE_START and not s.in_pickup and self.dur_steps[unit.dur] == s.room:
                return REFUSE
            return PASS
        if unit.cls == SPACE:
            return OFFER if s.last not in _NO_SPACE_AFTER else REFUSE
        return OFFER if s.last == "bar" and self.newlines else REFUSE

    def key(self, s: State) -> Hashable:
        return s.last
