"""The broken-rhythm rule: ``>``/``<``/``>>`` right after a plain note, the second note of the same written
length, the pair's exact bar accounting (a>b = 3/2 + 1/2 of the written lengths), and no pair that does
not fit the bar."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, ask, constraint, ids

from abcgen.grammar import OFFER, REFUSE
from abcgen.notation.bars import check_bars
from abcgen.notation.lexer import lex_body

RULES = ["repeats", "layout", "budget", "broken"]


def steps(g, units) -> int:  # noqa: ANN001
    return int(F(units) / g.step)


def test_the_pair_keeps_its_total_length() -> None:
    c = constraint(rules=RULES)
    g = c.grammar
    c.feed(ids("A2"))
    assert {">", "<", ">>"} <= allowed_texts(c)
    c.feed(ids(">"))
    assert c.state.room == steps(g, 8 - 3)  # A2 counts 3 now
    allowed = allowed_texts(c)
    assert {"B2", "c2", "^c2", "z2"} <= allowed and not {"B", "B4", "B3", ">", " ", "|"} & allowed
    c.feed(ids("B2"))
    assert c.state.room == steps(g, 4) and c.state.scaled == 0  # B2 counted 1: the pair is 4 = 2 + 2
    c.feed(ids("c2<"))
    assert c.state.room == steps(g, 3)  # c2 counts 1 after '<'
    c.feed(ids("d2"))
    assert c.state.room == 0
    c.feed(ids("|e2>>f2g4|]"))
    events = lex_body("A2>B2c2<d2|e2>>f2g4|]", F(1, 8), F(1))
    assert check_bars(events, F(1, 8), F(1)).problems == []


def test_where_broken_rhythm_may_come() -> None:
    g = constraint(rules=RULES).grammar
    s = g.start_state()
    assert ask(g, "broken", s, ">")[0] == REFUSE  # no note before it
    _, after_a = ask(g, "order", s, "A2")
    after_a.room = steps(g, 6)
    assert ask(g, "broken", after_a, ">")[0] == OFFER
    _, after_rest = ask(g, "order", s, "z2")
    after_rest.room = steps(g, 6)
    assert ask(g, "broken", after_rest, ">")[0] == REFUSE  # a rest starts no pair
    after_a.room = steps(g, 1)
    assert ask(g, "broken", after_a, ">")[0] == REFUSE  # the pair would not fit the bar
    c = constraint(rules=RULES)
    c.feed(ids("A>B"))
    assert ">" not in allowed_texts(c)  # no chained pairs (abc2midi: "Notes not equal durations")
    c = constraint(rules=["repeats", "layout", "budget", "broken", "decorations"])
    c.feed(ids("A>"))
    assert "~" not in allowed_texts(c) and "." not in allowed_texts(c)  # abc2midi refuses A>.B
