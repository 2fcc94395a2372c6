"""The meter's beats and the fill tables every rule counts lengths with.

**Beats and beams** (``meter_parts``, ``beat_length``, ``beam_length``). A ``Fraction`` meter cannot tell
6/8 from 3/4 (both 3/4 of a whole note), so the written meter (``AbcConstraint(meter="6/8")``) says
which: compound meters (6/8, 9/8, 12/8: a numerator divisible by 3 and above 3) beat in dotted notes of
three ``1/d``; simple ones in ``1/d`` (4/4 and 3/4 in quarters, 2/2 and 3/2 in halves). Chord symbols
go on beats. Notes are beamed in groups of a beat, except 4/4 (and C), whose eighth-note runs are
beamed by half bar as folk tunes write them (``dBAF ABdf``), and 3/8 (one group a bar). A meter given
as a ``Fraction`` is read as the simple meter with the smallest denominator of 4 or more (3/4 -> 3/4,
1 -> 4/4; 9/8 -> 9/8): pass the written meter for 6/8 and 12/8.

**Fill tables** (``Timing``). ``fill[r]`` is the fewest tokens that fill the last ``r`` grid steps of a
bar with single-token notes, counting, when notes are beamed, the space forced after a note that ends on
a group boundary inside the bar (``sp``). ``scaled(num, den, k)`` is the same when the next ``k`` notes,
all of one written length, count ``num/den`` of it (a tuplet, the note after ``>``): no space is forced
inside such a run, only after its last note. ``INF``: cannot be filled.
"""

from __future__ import annotations

import re
from fractions import Fraction

from abcgen.grammar.state import INF


def meter_parts(meter: Fraction, meter_text: str | None) -> tuple[int, int]:
    """(numerator, denominator) of the written meter; ``C`` is 4/4, ``C|`` 2/2."""
    if meter_text:
        text = meter_text.strip()
        if text == "C":
            return 4, 4
        if text == "C|":
            return 2, 2
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m and Fraction(int(m.group(1)), int(m.group(2))) == meter:
            return int(m.group(1)), int(m.group(2))
    n, d = meter.numerator, meter.denominator
    while d < 4 and not (d == 2 and n % 2):  # 1 -> 4/4, 1/2 -> 2/4; 3/2 stays 3/2
        n, d = n * 2, d * 2
    return n, d


def is_compound(n: int, d: int) -> bool:
    return n % 3 == 0 and n > 3


def beat_length(n: int, d: int) -> Fraction:
    """One beat in whole notes: a dotted ``3/d`` in compound meters, else ``1/d``."""
    return Fraction(3, d) if is_compound(n, d) else Fraction(1, d)


def beam_length(n: int, d: int) -> Fraction:
    """One beamed group in whole notes (see the module docstring)."""
    if (n, d) == (4, 4):
        return Fraction(1, 2)
    if (n, d) == (3, 8):
        return Fraction(3, 8)
    return beat_length(n, d)


class Timing:
    """The fill tables of one grammar: ``dur_steps`` (grid steps of each note length, ``INF`` when longer
    than a bar), ``bar_steps``, ``group_steps`` (a beamed group; 0: no forced spaces)."""

    def __init__(self, dur_steps: list[int], bar_steps: int, group_steps: int) -> None:
        self.bar_steps = bar_steps
        self.steps = sorted({s for s in dur_steps if s <= bar_steps})
        # sp[x]: a space is forced after a note that leaves x steps of the bar (it ends on a boundary)
        self.sp = [1 if group_steps and 0 < x < bar_steps and (bar_steps - x) % group_steps == 0 else 0
                   for x in range(bar_steps + 1)]
        self.fill = self._plain()
        self._scaled: dict[tuple[int, int, int], list[int]] = {}

    def _plain(self) -> list[int]:
        fill = [0] + [INF] * self.bar_steps
        sp, steps = self.sp, self.steps
        for r in range(1, self.bar_steps + 1):
            best = INF
            for s in steps:
                if s > r:
                    break
                cost = fill[r - s] + 1 + sp[r - s]
                if cost < best:
                    best = cost
            fill[r] = best
        return fill

    def run(self, steps: int, num: int, den: int, k: int, r: int) -> int:
        """The fewest tokens that fill ``r`` steps when the next ``k`` notes have ``steps`` written steps each
        and count ``num/den`` of them (tuplet notes, a broken pair: abc2midi wants them equal)."""
        eff, rest = divmod(steps * num, den)
        left = r - k * eff
        if rest or eff <= 0 or left < 0 or self.fill[left] >= INF:
            return INF
        return k + self.sp[left] + self.fill[left]

    def scaled(self, num: int, den: int, k: int) -> list[int]:
        """The fill table when the next ``k`` notes, all of one length, count ``num/den`` of it (``k=0``:
        ``fill``)."""
        if k <= 0:
            return self.fill
        key = (num, den, k)
        table = self._scaled.get(key)
        if table is None:
            table = self._scaled[key] = [min([self.run(s, num, den, k, r) for s in self.steps], default=INF)
                                         for r in range(self.bar_steps + 1)]
        return table

    def starting_with(self, allowed: set[int]) -> list[int]:
        """``fill`` where the first note has one of the ``allowed`` lengths (a chord's, a grace note's host)."""
        fill, sp = self.fill, self.sp
        return [min([fill[r - d] + 1 + sp[r - d] for d in allowed if d <= r and fill[r - d] < INF], default=INF)
                for r in range(self.bar_steps + 1)]

    def ending_with(self, allowed: set[int]) -> list[int]:
        """``fill`` where the last note of the bar has one of the ``allowed`` lengths (cadences)."""
        end = [INF] * (self.bar_steps + 1)
        sp = self.sp
        for r in range(1, self.bar_steps + 1):
            best = 1 if r in allowed else INF
            for s in self.steps:
                if s >= r:
                    break
                cost = end[r - s] + 1 + sp[r - s]
                if cost < best:
                    best = cost
            end[r] = best
        return end


__all__ = ["Timing", "beam_length", "beat_length", "is_compound", "meter_parts"]
