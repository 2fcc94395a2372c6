"""The grace-note rule: ``{`` one to three notes (no rests, at most one unit) ``}``, taking no time, before a
host note of at least one unit (abc2midi: "Grace sequence exceeds host note" otherwise); never inside a
tuplet or at a full bar."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, constraint, ids

from abcgen.notation.remi import abc2midi_check

RULES = ["repeats", "layout", "budget", "grace", "tuplets"]


def test_grace_notes_take_no_time() -> None:
    c = constraint(rules=RULES)
    room = c.state.room
    c.feed(ids("{"))
    allowed = allowed_texts(c)
    assert {"g", "a", "g/"} <= allowed and not {"z", "g2", "}", "|", " ", "{"} & allowed
    c.feed(ids("ag"))
    assert c.state.room == room and "}" in allowed_texts(c)
    c.feed(ids("f"))
    assert allowed_texts(c) & {"e", "}"} == {"}"}  # at most three
    c.feed(ids("}"))
    allowed = allowed_texts(c)
    assert {"A", "A2", "B4"} <= allowed and not {"z2", "A/", " ", "|", "{"} & allowed  # a host of >= 1 unit
    c.feed(ids("A2"))
    assert c.state.room == room - int(2 / c.grammar.step)


def test_where_grace_notes_may_come() -> None:
    c = constraint(rules=RULES)
    c.feed(ids("A8"))
    assert "{" not in allowed_texts(c)  # the bar is full
    c = constraint(rules=RULES)
    c.feed(ids("(3"))
    assert "{" not in allowed_texts(c)
    c = constraint(rules=RULES, meter=F(1, 4), unit_length=F(1, 8))
    c.feed(ids("A3/2"))
    assert "{" not in allowed_texts(c)  # half a unit left: no host fits
    for body in ("{ag}A2 c6|", "{g}A c7|", "{a/g/}B c6 z|"):
        assert abc2midi_check(f"X:1\nM:4/4\nL:1/8\nK:D\n{body}\n") == [], body
