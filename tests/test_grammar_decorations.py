"""The decoration rule: the tokenizer's decorations that abc2midi plays cleanly, the last prefix before a
host note of at least one unit; ``H`` (abc2midi lengthens the note), ``J``, ``O``, ``S`` never; no roll or
staccato after grace notes, no letter decoration at a line start, none on scaled notes."""

from __future__ import annotations

from grammar_helpers import allowed_texts, constraint, idiom_tokenizer, ids

from abcgen.grammar.rules.decorations import SAFE_DECORATIONS
from abcgen.notation.remi import abc2midi_check

RULES = ["repeats", "layout", "budget", "decorations", "grace", "broken"]


def test_safe_decorations_before_a_note() -> None:
    tok = idiom_tokenizer()
    c = constraint(rules=RULES, tokenizer=tok)
    c.feed(ids("A2", tok))
    c.feed(ids(" ", tok))
    allowed = allowed_texts(c)
    assert {"~", ".", "T", "u", "v", "!trill!"} <= allowed and not {"H", "J", "O", "S", "!fermata!"} & allowed
    c.feed(ids("~", tok))
    allowed = allowed_texts(c)
    assert {"A", "B2"} <= allowed and not {"z2", "A/", "~", ".", " ", "|", "{"} & allowed
    c.feed(ids("B2", tok))
    assert ">" not in allowed_texts(c)  # a decorated note starts no broken pair
    for text in SAFE_DECORATIONS:
        assert abc2midi_check(f"X:1\nM:4/4\nL:1/8\nK:D\nA2 {text}B2 c4|\n{text}A2 B2 c4|\n") == [], text


def test_where_decorations_may_not_come() -> None:
    c = constraint(rules=RULES)
    assert {"T", "u", "v", "~"} <= allowed_texts(c)  # a letter at a line start too (abc2midi reads 'uA2')
    c.feed(ids("{g}"))
    assert not {"~", "."} & allowed_texts(c) and "T" in allowed_texts(c)
    tok = idiom_tokenizer()
    c = constraint(rules=[*RULES, "chord_symbols"], tokenizer=tok)
    c.feed(ids('{g}"D"', tok))
    assert "~" not in allowed_texts(c) and "T" in allowed_texts(c)  # abc2midi: '{g}"D"~A' is an error
    c = constraint(rules=RULES)
    c.feed(ids("A>"))
    assert not {"~", ".", "T"} & allowed_texts(c)
