"""The tie rule: ``-`` right after a plain note, then the same letter and octave with no accidental or the
first note's own one (abc2midi's "Could not find note to be tied" otherwise: ``^A-=A`` is refused),
the same written length, in the same bar; nothing but a space between."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, constraint, ids

from abcgen.notation.remi import abc2midi_check

RULES = ["repeats", "layout", "budget", "ties"]


def test_only_equal_pitches() -> None:
    c = constraint(rules=RULES)
    c.feed(ids("^A2"))
    assert "-" in allowed_texts(c)
    c.feed(ids("-"))
    allowed = allowed_texts(c)
    assert {"A2", "^A2"} <= allowed or "A2" in allowed
    assert not {"=A2", "_A2", "B2", "a2", "A", "A4", "z2", "|"} & allowed
    c.feed(ids("A2"))
    assert "-" in allowed_texts(c) or c.state.prev < 0  # a tied-to note starts no new tie
    assert c.state.tie is None


def test_no_tie_across_the_bar_or_after_rests() -> None:
    c = constraint(rules=RULES)
    c.feed(ids("A8"))
    assert "-" not in allowed_texts(c)  # the tied note would not fit the bar
    c = constraint(rules=RULES)
    c.feed(ids("z2"))
    assert "-" not in allowed_texts(c)
    c = constraint(rules=[*RULES, "grace", "decorations"])
    c.feed(ids("d2-"))
    assert not {"{", "~", "."} & allowed_texts(c)


def test_what_is_allowed_plays() -> None:
    for body in ("^A2-A2 c4|", "F2-F2 c4|", "d2- d2 e4|"):
        assert abc2midi_check(f"X:1\nM:4/4\nL:1/8\nK:D\n{body}\n") == [], body
    assert abc2midi_check("X:1\nM:4/4\nL:1/8\nK:D\n^A2-=A2 c4|\n")  # the one refused
    c = constraint(rules=RULES, meter=F(3, 4))
    c.feed(ids("^c2-"))
    assert {"c2", "^c2"} <= allowed_texts(c) and "=c2" not in allowed_texts(c)
