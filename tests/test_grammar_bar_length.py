"""The bar-length rule on its own: notes that fit and leave a fillable remainder, bar lines only at a full
bar (or opening the body), the pickup bar, and its share of the fewest tokens to finish."""

from __future__ import annotations

from grammar_helpers import F, ask, constraint

from abcgen.grammar import OFFER, PASS, REFUSE, Grammar, VocabularyError
from abcgen.grammar.rules import fill_table
from abcgen.grammar.state import INF


def steps(g: Grammar, units: F | int) -> int:
    """``units`` of L: in grid steps."""
    return int(F(units) / g.step)


def test_notes_fill_the_bar_exactly() -> None:
    g = constraint().grammar  # 4/4 at L:1/8: 8 units a bar
    s = g.start_state()
    assert s.room == steps(g, 8) == g.bar_steps and not s.in_pickup
    verdict, ns = ask(g, "bar_length", s, "A2")
    assert verdict == OFFER and ns.room == steps(g, 6) and s.room == steps(g, 8)  # s itself is untouched
    s.room = steps(g, 2)
    assert ask(g, "bar_length", s, "d3")[0] == REFUSE  # too long for what is left
    assert ask(g, "bar_length", s, "e/")[0] == OFFER


def test_bar_lines_only_at_a_full_bar() -> None:
    g = constraint().grammar
    s = g.start_state()
    s.last, s.room = "note", steps(g, 3)
    assert ask(g, "bar_length", s, "|")[0] == REFUSE  # a short bar
    s.room = 0
    verdict, ns = ask(g, "bar_length", s, "|")
    assert verdict == OFFER and ns.bars_done == 1 and ns.room == g.bar_steps
    assert ask(g, "bar_length", s, ":|")[0] == PASS  # other bar lines are the structure rule's to offer
    start = g.start_state()
    assert ask(g, "bar_length", start, "|:")[0] == PASS  # an opening bar line before the first note
    start.last = "bar"
    assert ask(g, "bar_length", start, "|:")[0] == REFUSE  # no empty bar


def test_pickup_bar_is_not_counted() -> None:
    g = constraint(meter=F(3, 4), pickup=F(1, 8), num_bars=2).grammar
    s = g.start_state()
    assert s.in_pickup and s.room == steps(g, 1)
    assert ask(g, "bar_length", s, "A2")[0] == REFUSE
    assert ask(g, "bar_length", s, "A")[0] == OFFER
    s.room, s.last = 0, "note"
    verdict, ns = ask(g, "bar_length", s, "|")
    assert verdict == OFFER and not ns.in_pickup and ns.bars_done == 0 and ns.room == steps(g, 6)


def test_fill_table_knows_unfillable_remainders() -> None:
    # lengths of 2 and 3 grid steps: 1 cannot be made, 4 = 2 + 2, 5 = 2 + 3, 6 = 3 + 3
    assert fill_table([2, 3], 6) == [0, INF, 1, 1, 2, 2, 2]
    assert fill_table([4], 6)[6] == INF


def test_finish_cost_counts_the_bars_still_to_come() -> None:
    g = constraint(num_bars=4).grammar
    rule = next(r for r in g.rules if r.name == "bar_length")
    s = g.start_state()
    assert rule.finish_cost(s) == 4 * 2  # this bar (one A8 and its bar line) and three more
    s.room = steps(g, 7)  # one unit written: 7 units = A6 + A (2 notes) and a bar line, then three bars
    assert g.fill[s.room] == 2 and rule.finish_cost(s) == 2 + 1 + 3 * 2
    free = constraint(num_bars=None, pickup=F(1, 8)).grammar
    rule = next(r for r in free.rules if r.name == "bar_length")
    assert rule.finish_cost(free.start_state()) == 2 + 2  # the pickup, then at least one full bar


def test_a_meter_the_notes_cannot_fill_is_refused() -> None:
    try:
        constraint(meter=F(1, 64))
    except VocabularyError as exc:
        assert "no single-token notes that add up to a bar of M=1/64" in str(exc)
    else:
        raise AssertionError("expected a VocabularyError")
