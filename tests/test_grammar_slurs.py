"""The slur rule: ``(`` opens one slur before a note, ``)`` closes it after a note; an open slur crosses
only a plain ``|`` -- closed before repeats, section bar lines and the tune's end, and counted in the
tokens still needed."""

from __future__ import annotations

from grammar_helpers import allowed_texts, constraint, ids

RULES = ["repeats", "layout", "budget", "slurs"]


def test_a_slur_is_balanced_within_a_section() -> None:
    c = constraint(rules=RULES, num_bars=2)
    before = c.min_tokens_to_finish()
    c.feed(ids("("))
    assert not {")", "(", " ", "|"} & allowed_texts(c)
    c.feed(ids("A4"))
    assert c.min_tokens_to_finish() == before + 1  # B4, then the closing ")" before the bar line
    assert ")" in allowed_texts(c)
    c.feed(ids("B4"))
    bars = allowed_texts(c) & {"|", "||", "|:", "::", ":|", "|]"}
    assert bars == {"|"} and ")" in allowed_texts(c)  # only a plain bar line while it is open
    c.feed(ids("|c8"))
    assert allowed_texts(c) & {"|]", ")"} == {")"}  # closed before the final bar line
    c.feed(ids(")|]"))
    assert c.state.closed


def test_one_slur_at_a_time() -> None:
    c = constraint(rules=RULES)
    c.feed(ids("(A"))
    assert "(" not in allowed_texts(c)
    c.feed(ids(")"))
    assert ")" not in allowed_texts(c) and "(" in allowed_texts(c)
