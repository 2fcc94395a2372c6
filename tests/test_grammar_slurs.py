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


def _close_bonus(c) -> float:  # noqa: ANN001
    bonus = c.bonus()
    return 0.0 if bonus is None else float(bonus[c.vocab.texts.index(")")])


def test_a_slur_over_one_note_is_weighed_down_not_masked() -> None:
    from abcgen.grammar.rules.slurs import SHORT_SLUR_PENALTY

    c = constraint(rules=RULES, num_bars=2)
    c.feed(ids("(A"))
    assert ")" in allowed_texts(c) and _close_bonus(c) == -SHORT_SLUR_PENALTY  # (A) joins nothing
    c.feed(ids("B"))
    assert _close_bonus(c) == 0.0  # (AB): a slur
    c = constraint(rules=RULES, num_bars=2)
    c.feed(ids("(c8|B"))  # a slur may cross a plain bar line: the note after it is the second
    assert _close_bonus(c) == 0.0
    c = constraint(rules=RULES, num_bars=1)
    c.feed(ids("A4B2(c2"))  # the last note before the final bar line: ")" stays the only way on
    assert allowed_texts(c) & {")", "|]"} == {")"} and _close_bonus(c) == -SHORT_SLUR_PENALTY


def test_a_chord_is_one_note_and_grace_notes_none_under_a_slur() -> None:
    from grammar_helpers import idiom_tokenizer

    from abcgen.grammar import DEFAULT_RULES

    tok = idiom_tokenizer()
    c = constraint(tokenizer=tok, rules=DEFAULT_RULES, meter="6/8", num_bars=2)
    c.feed(ids("({g}A", tok))
    assert _close_bonus(c) < 0  # the grace note is not a second note
    c.feed(ids("[DF]", tok))
    assert _close_bonus(c) == 0.0  # A and a chord: two notes
