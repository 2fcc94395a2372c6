"""Recurrence: phrases and returning sections replay earlier bars (``abcgen.grammar.recurrence``)."""

from __future__ import annotations

import random
import re
from fractions import Fraction as F

from grammar_helpers import constraint, idiom_tokenizer, random_walk

from abcgen.grammar.recurrence import recurrence_plan
from abcgen.grammar.rules import DEFAULT_RULES
from abcgen.notation.checks import abc2midi_check, check_tune
from abcgen.notation.tune import parse_tune


def test_plans() -> None:
    assert recurrence_plan(16, None) == {5: 1, 6: 2, 13: 9, 14: 10}  # two 8-bar parts, each answering itself
    assert recurrence_plan(6, None) == {}  # no 8-bar part
    # ABAC, 32 bars: A answers itself; the second A replays the first but for its last two bars
    assert recurrence_plan(32, "ABAC") == {5: 1, 6: 2, 13: 9, 14: 10, **{16 + i: i for i in range(1, 7)}, 29: 25,
                                           30: 26}
    assert recurrence_plan(32, "ABAC", variation=False)[24] == 8
    assert recurrence_plan(16, "AABB") == {5: 1, 6: 2, 13: 9, 14: 10}  # 'AA' is written once, between repeats
    assert len(recurrence_plan(None, None)) > 20  # free mode: every 8-bar part


def _bars(text: str) -> list[str]:
    """The bars of a body as written, spaces and line breaks dropped."""
    return [b for b in (re.sub(r"\s", "", x) for x in re.split(r"\|\]|:\|\d?|\|:|::|\|\d|\|\||\|", text)) if b]


def test_walks_replay_the_planned_bars_and_stay_valid() -> None:
    tok = idiom_tokenizer()
    rng = random.Random(5)
    replayed = planned = 0
    for index in range(12):
        form = (None, "ABAC", "AABB")[index % 3]
        meter, unit = (("6/8", F(1, 8)), ("4/4", F(1, 8)), ("3/4", F(1, 8)))[index % 3]
        c = constraint(tokenizer=tok, rules=DEFAULT_RULES, meter=meter, unit_length=unit, num_bars=16 if form else 8,
                       form=form, max_new_tokens=600, cadence="weighted", recurrence=True)
        body = "".join(c.vocab.texts[i] for i in random_walk(c, rng)[:-1])
        abc = f"X:1\nM:{meter}\nL:1/8\nK:D\n{body}\n"
        assert check_tune(parse_tune(abc)).ok and abc2midi_check(abc) == [], abc
        bars = _bars(body)
        for bar, source in c.plan.items():
            if bar <= len(bars):
                planned += 1
                replayed += bars[bar - 1] == bars[source - 1]
    # a replay is dropped only where the grammar refuses a token of it (a tie or slur across the bar line)
    assert planned > 25 and replayed / planned > 0.6, (replayed, planned)


def test_off_by_default_and_for_later_voices() -> None:
    assert constraint(num_bars=8).plan == {}
