"""Chord symbols: ``"Am"A2`` -- the tokenizer's single-token quoted chord names (``CHORD_NAME_RE``:
``"G"``, ``"Em"``, ``"D7"``, ``"A/C#"``; quoted fingerings and words such as ``"4"`` or ``"D.C."`` are
not chords and stay masked), placed on beats only.

The beat comes from the written meter (``abcgen.grammar.timing``: dotted quarters in 6/8, quarters in
4/4 and 3/4, halves in 2/2): a chord symbol is offered only where the next note starts on a beat,
counted from the bar line (a pickup bar ends on the bar line, so its beats are those of a bar's end).
It stands after grace notes and before a decoration (``{g}"Am"~A``), before a note or a chord. In
meters abc2midi has no accompaniment pattern for (3/2, 9/4, ...: "no default gchord string for this
meter") no chord symbol is written.
"""

from __future__ import annotations

from collections.abc import Hashable
from fractions import Fraction

from abcgen.grammar.rules.base import OFFER, REFUSE, Rule
from abcgen.grammar.state import SYMBOL_LEVEL, State
from abcgen.grammar.vocabulary import CHORD_SYMBOL, Unit

# Written meters abc2midi has a default accompaniment (gchord) pattern for.
GCHORD_METERS = frozenset({(2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (3, 8), (5, 8), (6, 8), (7, 8), (9, 8), (12, 8),
                           (2, 2)})


class ChordSymbolRule(Rule):
    name = "chord_symbols"
    classes = frozenset({CHORD_SYMBOL})
    needs = frozenset({CHORD_SYMBOL})

    @classmethod
    def grid_lengths(cls, g) -> list[Fraction]:  # noqa: ANN001 -- Grammar (import cycle)
        return [g.beat]

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        self.bar_steps, self.beat_steps = g.bar_steps, g.beat_steps
        self.enabled = g.meter_parts in GCHORD_METERS

    def on_beat(self, s: State) -> bool:
        return (self.bar_steps - s.room) % self.beat_steps == 0

    def step(self, s: State, ns: State, unit: Unit) -> int:
        if not self.enabled or s.prefix >= SYMBOL_LEVEL or s.tie is not None or not s.room or not self.on_beat(s):
            return REFUSE
        ns.prefix = SYMBOL_LEVEL
        return OFFER

    def key(self, s: State) -> Hashable:
        return s.prefix >= SYMBOL_LEVEL, s.tie is not None, bool(s.room) and self.on_beat(s)
