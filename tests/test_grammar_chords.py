"""The chord rule: ``[`` two or three notes of one written length ``]``, no rests, counted once in the bar."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, constraint, ids

from abcgen.notation.bars import check_bars
from abcgen.notation.lexer import lex_body

RULES = ["repeats", "layout", "budget", "chords"]


def test_a_chord_counts_once() -> None:
    c = constraint(rules=RULES)
    room = c.state.room
    c.feed(ids("["))
    assert not {"z2", "]", " ", "|", "["} & allowed_texts(c)
    c.feed(ids("c2"))
    assert c.state.room == room - int(2 / c.grammar.step)
    allowed = allowed_texts(c)
    assert {"e2", "G2"} <= allowed and not {"e", "e4", "]", "z2"} & allowed  # the same length, two notes at least
    c.feed(ids("e2g2"))
    assert allowed_texts(c) & {"a2", "]"} == {"]"}  # three notes at most
    c.feed(ids("]"))
    assert c.state.room == room - int(2 / c.grammar.step) and c.state.chord == 0
    c.feed(ids("A6|"))
    assert c.bars_done == 1
    assert check_bars(lex_body("[c2e2g2]A6|", F(1, 8), F(1)), F(1, 8), F(1)).problems == []


def test_no_chord_where_it_would_not_fit() -> None:
    c = constraint(rules=RULES)
    c.feed(ids("A8"))
    assert "[" not in allowed_texts(c)
