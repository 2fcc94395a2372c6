"""Decorations before a note: the tokenizer's single-token decorations that abc2midi plays without a
warning (``SAFE_DECORATIONS``: rolls ``~``, staccato ``.``, trills ``T``/``!trill!``, bowings ``u``/``v``,
mordents ``M``/``P``/``!mordent!``, ...). Left out: ``H`` and ``!fermata!`` (abc2midi lengthens the note,
so the bar overflows), ``J`` (reserved), ``O``/``S`` (coda and segno are navigation, not ornaments) and
``!...!`` names abc2midi ignores with a warning.

A decoration is the last prefix before its note (``{g}"Am"TA``), a note (not a rest) of at least one
``L:`` unit (abc2midi plays ``~`` as grace notes and cuts them off on a shorter note; ``State.host``).
A roll ``~`` or a staccato ``.`` may not follow grace notes, even with a chord symbol between (abc2midi: "Intervening note needed between
grace notes", and a staccato host too short for them). A letter decoration may start a line (``uA2``,
``TA2``: abc2midi plays them there as anywhere, checked note by note). One decoration per note, never between tied notes nor on a scaled
note (in a tuplet, after ``>``: abc2midi refuses ``A>.B``).
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, REFUSE, Rule
from abcgen.grammar.state import DECORATION_LEVEL, INF, State
from abcgen.grammar.vocabulary import DECORATION, Unit

SAFE_DECORATIONS = frozenset({"~", ".", "T", "u", "v", "M", "P", "L", "R", "!trill!", "!mordent!", "!accent!",
                              "!turn!"})


class DecorationRule(Rule):
    name = "decorations"
    classes = frozenset({DECORATION})
    needs = frozenset({DECORATION})

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.host = next(r for r in g.rules if r.name == "order").host

    def step(self, s: State, ns: State, unit: Unit) -> int:
        text = unit.text
        if text not in SAFE_DECORATIONS or s.prefix >= DECORATION_LEVEL or s.tie is not None or s.scaled:
            return REFUSE
        if text in "~." and s.host:  # s.host: grace notes before
            return REFUSE
        if self.host[s.room] >= INF:
            return REFUSE
        ns.prefix, ns.host = DECORATION_LEVEL, True
        return OFFER

    def key(self, s: State) -> Hashable:
        return s.prefix, s.tie is not None, bool(s.scaled), s.host
