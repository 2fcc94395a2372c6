"""The cadence rule: the last note of the tune (and, with ``cadence_sections``, of each form section) is
the tonic of the ``K:`` key and mode -- or another degree --, forced by the mask or favoured by a logit
bonus; without ``num_bars`` the tune only ends after a bar ending on it."""

from __future__ import annotations

import random

import pytest
from grammar_helpers import F, allowed_texts, constraint, ids, random_walk

from abcgen.errors import ConfigError
from abcgen.grammar.rules.cadence import cadence_pitch
from abcgen.notation.lexer import lex_body

RULES = ["repeats", "layout", "budget", "cadence"]


def last_note(body: str) -> str:
    notes = [e for e in lex_body(body, F(1, 8), F(1)) if e.kind == "note"]
    return notes[-1].pitch.letter


def test_cadence_pitches() -> None:
    assert cadence_pitch("D", 1) == ("D", frozenset({"", "="}))
    assert cadence_pitch("Bb", 1) == ("B", frozenset({"", "_"}))
    assert cadence_pitch("F#m", 1) == ("F", frozenset({"", "^"}))
    assert cadence_pitch("Ador", 1)[0] == "A" and cadence_pitch("G", 5) == ("D", frozenset({"", "="}))


def test_the_last_bar_ends_on_the_tonic() -> None:
    c = constraint(rules=RULES, num_bars=1, key="G")
    allowed = allowed_texts(c)
    assert {"G8", "g8"} <= allowed and not {"A8", "z8", "^G8", "_g2"} & allowed
    c.feed(ids("A6"))
    assert allowed_texts(c) & {"G2", "g2", "A2", "=G2", "B2"} == {"G2", "g2", "=G2"}
    c = constraint(rules=[*RULES, "tuplets", "broken", "ties", "chords"], num_bars=2, key="G")
    c.feed(ids("A8|"))
    assert not {"(3", "["} & allowed_texts(c)  # the cadence bar is written in plain notes
    rng = random.Random(0)
    for key in ("D", "Ador", "Bb", "Em"):
        for _ in range(10):
            c = constraint(rules=RULES, num_bars=3, key=key, max_new_tokens=60)
            body = "".join(c.vocab.texts[i] for i in random_walk(c, rng)[:-1])
            assert last_note(body) == key[0].upper(), (key, body)


def test_sections_and_free_length() -> None:
    c = constraint(rules=RULES, num_bars=4, form="AABB", key="D", cadence_sections=True)
    c.feed(ids("|:A8|"))
    assert allowed_texts(c) & {"D8", "A8"} == {"D8"}  # bar 2 ends section A
    free = constraint(rules=RULES, num_bars=None, key="D")
    free.feed(ids("A8"))
    assert "|]" not in allowed_texts(free) and "|" in allowed_texts(free)
    free.feed(ids("|d8"))
    assert "|]" in allowed_texts(free)
    assert free.min_tokens_to_finish() == 2


def test_weighted_mode_is_a_bonus() -> None:
    c = constraint(rules=RULES, num_bars=1, key="G", cadence="weighted", cadence_weight=3.0)
    assert "A8" in allowed_texts(c)
    bonus = c.bonus()
    tok_ids = {text: ids(text)[0] for text in ("G8", "A8", "G2")}
    assert bonus[tok_ids["G8"]] == 3.0 and bonus[tok_ids["A8"]] == 0 and bonus[tok_ids["G2"]] == 0
    for bad in ({"cadence": "soft"}, {"cadence_degree": 9}, {"cadence_weight": -1}):
        with pytest.raises(ConfigError):
            constraint(rules=RULES, **bad)
