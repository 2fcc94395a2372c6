"""The repeats rule on its own (free mode): opening, closing and reopening repeats, first and second
endings with room for them, the last bar, a melody prompt that left a repeat open."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, ask, constraint, ids

from abcgen.grammar import OFFER, PASS, REFUSE
from abcgen.grammar.state import E1, E2, R0, R1, RC


def _ask(g, s, text):  # noqa: ANN001, ANN202
    return ask(g, "repeats", s, text)


def full_bar(g, bars_done: int = 0, repeat: str = R0):  # noqa: ANN001, ANN201
    s = g.start_state()
    s.room, s.last, s.bars_done, s.repeat = 0, "note", bars_done, repeat
    return s


def test_a_repeat_may_open_the_body_but_not_a_pickup() -> None:
    g = constraint().grammar
    verdict, ns = _ask(g, g.start_state(), "|:")
    assert verdict == OFFER and ns.repeat == R1
    assert _ask(g, g.start_state(), "||")[0] == REFUSE
    pickup = constraint(pickup=F(1, 8)).grammar
    assert _ask(pickup, pickup.start_state(), "|:")[0] == REFUSE
    s = pickup.start_state()
    s.room, s.last = 0, "note"  # the pickup's bar line: '|' or '|:'
    verdict, ns = _ask(pickup, s, "|:")
    assert verdict == OFFER and ns.repeat == R1 and _ask(pickup, s, "|")[1].repeat == R0
    assert _ask(pickup, s, "::")[0] == REFUSE


ALL = ("|", "||", "|:", "::", ":|", "|1", ":|2", "|]")


def test_bar_lines_by_repeat_state() -> None:
    g = constraint(num_bars=12).grammar

    def allowed(bars_done: int, repeat: str) -> set[str]:
        return {t for t in ALL if _ask(g, full_bar(g, bars_done, repeat), t)[0] != REFUSE}

    # after bar 4 (a phrase end), no '|:' yet: ':|' repeats from the start ('::' needs a '|:'); '|]' passes
    # here, the end rule offers it only at the last bar
    assert allowed(3, R0) == {"|", "||", "|:", ":|", "|]"}
    assert allowed(2, R0) == {"|", "|1", "|]"}  # after bar 3: a first ending may start (bar 4 ends the phrase)
    assert allowed(0, R0) == allowed(1, R0) == {"|", "|]"}  # mid-phrase: no part ends, no repeat opens
    assert allowed(3, RC) == {"|", "||", "|:", ":|", "|]"}  # after a ':|': abc2midi wants a '|:' before '|1', '::'
    assert allowed(2, RC) == {"|", "|]"}
    assert _ask(g, full_bar(g, 3, R0), ":|")[1].repeat == RC
    pickup = constraint(num_bars=8, pickup=F(1, 8)).grammar  # with a pickup: only explicit repeats
    after_pickup = full_bar(pickup, 3, R0)
    after_pickup.in_pickup = False
    assert {t for t in ("|", "::", ":|", "|1") if _ask(pickup, after_pickup, t)[0] != REFUSE} == {"|"}
    assert allowed(3, R1) == {"|", "::", ":|"} and allowed(2, R1) == {"|", "|1"}
    assert _ask(g, full_bar(g, 3, R1), ":|")[1].repeat == RC and _ask(g, full_bar(g, 2, R1), "|1")[1].repeat == E1
    first = full_bar(g, 0, E1)
    assert _ask(g, first, ":|2")[1].repeat == E2 and _ask(g, first, ":|")[0] == REFUSE


def test_endings_need_room_and_the_last_bar_closes() -> None:
    g = constraint(num_bars=4).grammar
    assert _ask(g, full_bar(g, 2, R1), "|1")[0] == REFUSE  # bar 3 of 4: no room for two ending bars
    assert _ask(g, full_bar(g, 2, E1), "|")[0] == REFUSE  # the first ending must close before the end
    last_open, last_closed = full_bar(g, 3, R1), full_bar(g, 3, E2)
    assert [_ask(g, last_open, t)[0] for t in ("|", "|]", ":|")] == [REFUSE, REFUSE, OFFER]
    assert [_ask(g, last_closed, t)[0] for t in ("|", "|]", ":|")] == [REFUSE, PASS, REFUSE]


def test_first_ending_costs_a_bar_without_num_bars() -> None:
    g = constraint(num_bars=None).grammar
    rule = next(r for r in g.rules if r.name == "repeats")
    assert rule.finish_cost(full_bar(g, 0, E1)) == g.full_cost + 1
    assert rule.finish_cost(full_bar(g, 3, R1)) == 0  # bar 4 ends a phrase: the repeat may close there
    assert rule.finish_cost(full_bar(g, 0, R1)) == 3 * (g.full_cost + 1)  # bars 2-4 first


def test_open_repeat_from_a_melody_prompt_must_be_closed() -> None:
    c = constraint(num_bars=1, open_repeat=True)
    assert c.state.repeat == R1 and "|:" not in allowed_texts(c)
    c.feed(ids("A8"))
    assert allowed_texts(c) & {"|", "|]", ":|", "||", "::"} == {":|"}
