"""Bar length: every bar is exactly full (the pickup bar exactly ``pickup`` long).

A note is offered only when it fits the room left in the bar *and* that room can still be filled exactly
with the note lengths the vocabulary has (``Grammar.fill``, the fewest notes that make each remainder).
A bar line comes only when the bar is full -- so no bar is empty, short or long -- or, as an opening bar
line, before the first note (which other rules offer). This rule offers the plain ``|``.

The idiom rules change what a note counts through the state: the next ``scaled`` notes count
``scale`` = (num, den) times their written length (a tuplet ``(3``: 2/3; the note after ``>``: 1/2), all
have the written length of the first (``run_dur``; abc2midi warns about unequal tuplet notes and refuses
an unequal broken pair) and must leave a remainder the rest of the run can fill (``Timing.run``); grace notes count nothing, and
a chord counts its first note once. With beams, the fill tables count the spaces forced at beat groups.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.errors import VocabularyError
from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import INF, State
from abcgen.grammar.vocabulary import BAR, NOTE, Unit


def fill_table(dur_steps: list[int], size: int) -> list[int]:
    """``fill[k]``: the fewest single-token notes whose lengths add up to ``k`` grid steps (``INF``: none do)."""
    fill = [0] + [INF] * size
    steps = sorted({s for s in dur_steps if s <= size})
    for k in range(1, size + 1):
        best = INF
        for s in steps:
            if s > k:
                break
            if fill[k - s] + 1 < best:
                best = fill[k - s] + 1
        fill[k] = best
    return fill


class BarLengthRule(Rule):
    name = "bar_length"
    classes = frozenset({NOTE, BAR})

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        if g.fill[g.bar_steps] >= INF:
            raise VocabularyError(f"the tokenizer has no single-token notes that add up to a bar of M={g.meter} at "
                                  f"L={g.unit_length} (note lengths: {[str(d) for d in g.usable_durations]})")
        if g.pickup_steps and g.fill[g.pickup_steps] >= INF:
            raise VocabularyError(f"pickup={g.pickup} cannot be written with the tokenizer's single-token notes")
        self.fill, self.dur_steps, self.bar_steps = g.fill, g.dur_steps, g.bar_steps
        self.scaled, self.run = g.timing.scaled, g.timing.run
        self.bar_cost = g.full_cost + 1  # one longest-note fill and its bar line

    def start(self, s: State) -> None:
        s.in_pickup = bool(self.g.pickup_steps)
        s.room = self.g.pickup_steps or self.bar_steps

    def step(self, s: State, ns: State, unit: Unit) -> int:
        room = s.room
        if unit.cls == NOTE:
            if s.grace or s.chord >= 2:  # grace notes take no time; a chord counts its first note only
                return OFFER
            steps = self.dur_steps[unit.dur]
            if s.scaled:
                return self._scaled_note(s, ns, unit, steps)
            if steps > room or self.fill[room - steps] >= INF:
                return REFUSE
            ns.room = room - steps
            return OFFER
        if room:  # the bar is not full: only an opening bar line before the first note
            return PASS if s.last == "start" else REFUSE
        ns.room = self.bar_steps
        if s.in_pickup:
            ns.in_pickup = False
        else:
            ns.bars_done = s.bars_done + 1
        return OFFER if unit.kind == "|" else PASS

    def _scaled_note(self, s: State, ns: State, unit: Unit, steps: int) -> int:
        """A note of a scaled run (``State.scale``): the same written length as the run's first note, and
        the rest of the run must fit after it."""
        if steps >= INF or (s.run_dur >= 0 and unit.dur != s.run_dur):
            return REFUSE
        num, den = s.scale
        eff, rest = divmod(steps * num, den)
        left = s.scaled - 1
        if rest or eff <= 0 or eff > s.room or self.run(steps, num, den, left, s.room - eff) >= INF:
            return REFUSE
        ns.room, ns.scaled = s.room - eff, left
        if left:
            ns.run_dur = unit.dur
        else:
            ns.run_dur, ns.scale = -1, (1, 1)
        return OFFER

    def finish_cost(self, s: State) -> int:
        # fill this bar, its bar line, then one longest note and a bar line per bar still to come
        if not s.scaled:
            cost = self.fill[s.room] + 1
        elif s.run_dur >= 0:
            cost = self.run(self.dur_steps[s.run_dur], *s.scale, s.scaled, s.room) + 1
        else:
            cost = self.scaled(*s.scale, s.scaled)[s.room] + 1
        num_bars = self.g.num_bars
        if num_bars is None:
            return cost + (self.bar_cost if s.in_pickup else 0)
        done = s.bars_done + (0 if s.in_pickup else 1)  # bars complete after this bar line
        return cost + (num_bars - done) * self.bar_cost

    def key(self, s: State) -> Hashable:
        return s.room, s.in_pickup, s.scale, s.scaled, s.run_dur, s.grace > 0 or s.chord >= 2
