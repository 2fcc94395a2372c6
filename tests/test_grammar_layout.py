"""The layout rule on its own: where spaces and newlines may go, and no lone letter note at a line start
before a ``:``-bar line (``A:|`` would read as the header field ``A:``); switched off, no whitespace."""

from __future__ import annotations

import random

from grammar_helpers import F, allowed_texts, ask, constraint, ids, music_tokenizer, random_walk

from abcgen.grammar import OFFER, PASS, REFUSE


def test_spaces_and_newlines() -> None:
    g = constraint().grammar
    s = g.start_state()
    assert ask(g, "layout", s, " ")[0] == REFUSE and ask(g, "layout", s, "\n")[0] == REFUSE
    for last, space, newline in (("note", OFFER, REFUSE), ("bar", OFFER, OFFER), ("space", REFUSE, REFUSE),
                                 ("newline", REFUSE, REFUSE)):
        s.last = last
        assert (ask(g, "layout", s, " ")[0], ask(g, "layout", s, "\n")[0]) == (space, newline), last
    one_unit_bars = constraint(meter=F(1, 4), unit_length=F(1, 4)).grammar
    s = one_unit_bars.start_state()
    s.last = "bar"
    assert ask(one_unit_bars, "layout", s, "\n")[0] == REFUSE  # a bar of one L: unit: no line breaks


def test_no_field_like_note_at_a_line_start() -> None:
    g = constraint(meter=F(1, 4), unit_length=F(1, 4)).grammar  # a 1-unit bar: 'A' alone fills it
    s = g.start_state()
    assert ask(g, "layout", s, "A")[0] == REFUSE and ask(g, "layout", s, "=c")[0] == PASS
    s.last = "note"
    assert ask(g, "layout", s, "A")[0] == PASS
    c = constraint(meter=F(1, 4), unit_length=F(1, 4))
    assert "A" not in allowed_texts(c) and "z" not in allowed_texts(c) and "=c" in allowed_texts(c)


def test_switched_off_the_body_has_no_whitespace() -> None:
    rng = random.Random(3)
    tok = music_tokenizer()
    for _ in range(20):
        c = constraint(num_bars=4, max_new_tokens=200, rules=["repeats", "budget"])
        assert "layout" not in c.rules
        text = tok.decode(random_walk(c, rng))
        assert " " not in text and "\n" not in text
    with_layout = constraint(num_bars=2)
    with_layout.feed(ids("A8"))
    assert {" ", "\n"} & allowed_texts(with_layout) == {" "}
