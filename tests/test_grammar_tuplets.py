"""The tuplet rule: ``(3`` scales the next three notes (all of one written length) by 2/3, exactly; a
tuplet never crosses a bar line; ``(p:q:r`` tokens are read with their q and r; off without tuplet
tokens."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, constraint, idiom_tokenizer, ids

from abcgen.grammar import REFUSE
from abcgen.grammar.rules.tuplets import tuplet_of

RULES = ["repeats", "layout", "budget", "tuplets"]


def test_triplets_count_two_thirds() -> None:
    c = constraint(rules=RULES, meter=F(2, 4), unit_length=F(1, 8))
    g = c.grammar
    assert "(3" in allowed_texts(c)
    c.feed(ids("(3"))
    assert not {"|", " ", "(3"} & allowed_texts(c)
    c.feed(ids("A"))
    allowed = allowed_texts(c)
    assert {"B", "c", "z"} <= allowed and not {"B2", "B/", "|"} & allowed  # the same written length
    c.feed(ids("Bc"))
    assert c.state.room * g.step == 2 and c.state.scaled == 0  # three eighths in the time of two
    c.feed(ids("d2|"))
    assert c.bars_done == 1


def test_a_tuplet_never_crosses_the_bar_line() -> None:
    c = constraint(rules=RULES, meter=F(2, 4), unit_length=F(1, 8))
    c.feed(ids("A3"))  # one eighth left: three notes in the time of two need at least 2/3 of a sixteenth each
    c.feed(ids("(3"))
    c.feed(ids("A/"))
    assert not {"B", "B2"} & allowed_texts(c) and "B/" in allowed_texts(c)
    c = constraint(rules=RULES, meter=F(2, 4), unit_length=F(1, 4))
    c.feed(ids("A"))
    g = c.grammar
    s = c.state.copy()
    s.room = 0
    assert next(r for r in g.rules if r.name == "tuplets").step(s, s.copy(), g.units[g.unit_of[ids("(3")[0]]]) \
        == REFUSE


def test_written_tuplets_and_defaults() -> None:
    assert tuplet_of((3, None, None), False) == (3, 2, 3)
    assert tuplet_of((2, None, None), True) == (2, 3, 2)
    assert tuplet_of((5, None, None), True) == (5, 3, 5) and tuplet_of((5, None, None), False) == (5, 2, 5)
    assert tuplet_of((3, 2, 3), False) == (3, 2, 3)
    tok = idiom_tokenizer()
    c = constraint(tokenizer=tok, rules=RULES, meter=F(3, 4), unit_length=F(1, 8))
    assert {"(3:2:3", "(2", "(4"} <= allowed_texts(c)
    c.feed(ids("(2", tok))  # two notes in the time of three
    c.feed(ids("AB", tok))
    assert c.state.room * c.grammar.step == 3


def test_off_when_switched_off() -> None:
    assert "(3" not in allowed_texts(constraint(rules=["repeats", "layout", "budget"]))
