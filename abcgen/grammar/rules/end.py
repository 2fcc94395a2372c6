"""The end of the tune: the final bar line, and when EOS may come.

With ``num_bars`` the bar line after the last full bar closes the tune (``closed``: only EOS may follow);
this rule offers ``|]`` there, the structure rule (repeats, form, template) says which bar lines are
allowed. Without ``num_bars`` the tune may end after any full bar with ``|]``, or with EOS right after
a ``:|`` (``can_end``); the bar line ending a pickup never ends the tune.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import BAR, EOS, NOTE, Unit


class EndRule(Rule):
    name = "end"
    classes = frozenset({NOTE, BAR, EOS})

    def step(self, s: State, ns: State, unit: Unit) -> int:
        if unit.cls == EOS:
            if not s.can_end:
                return REFUSE
            ns.finished = True
            return OFFER
        ns.can_end = False
        if unit.cls == NOTE or s.room or s.in_pickup:  # a note, an opening bar line, the pickup's bar line
            return PASS
        num_bars = self.g.num_bars
        if num_bars is None:
            if unit.kind == "|]":
                ns.closed = True
                return OFFER
            if unit.kind == ":|":  # the tune may end after a repeat closes
                ns.can_end = True
            return PASS
        if s.bars_done + 1 == num_bars:
            ns.closed = True
            return OFFER if unit.kind == "|]" else PASS
        return PASS

    def key(self, s: State) -> Hashable:
        return s.can_end, not s.room and not s.in_pickup and s.bars_done + 1 == self.g.num_bars
