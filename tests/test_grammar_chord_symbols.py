"""The chord-symbol rule: single-token quoted chord names only (not fingerings or words), placed on the
beats of the written meter (dotted quarters in 6/8, quarters in 4/4 and 3/4), off for a tokenizer
without chord names."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, constraint, idiom_tokenizer, ids

from abcgen.grammar.vocabulary import CHORD_NAME_RE

RULES = ["repeats", "layout", "budget", "chord_symbols"]
CHORDS = {'"Am"', '"D"', '"G"', '"Em"', '"D7"', '"C"', '"A/C#"', '"Bm"'}


def test_chord_names() -> None:
    for name in ("Am", "D7", "G/B", "F#m7", "Bbmaj7", "Esus4", "C#dim"):
        assert CHORD_NAME_RE.fullmatch(name), name
    for text in ("4", "D.C.", "tr", "SEGUE", "~", "p", "H"):
        assert not CHORD_NAME_RE.fullmatch(text), text
    assert "chord_symbols" not in constraint(rules=RULES).rules  # the shipped spec has no chord names


def test_on_beats_of_the_written_meter() -> None:
    tok = idiom_tokenizer()
    jig = constraint(rules=RULES, tokenizer=tok, meter="6/8", unit_length=F(1, 8))
    assert allowed_texts(jig) >= CHORDS and '"4"' not in allowed_texts(jig)
    jig.feed(ids('"D"', tok))
    assert not CHORDS & allowed_texts(jig)  # one symbol per note
    jig.feed(ids("A", tok))
    assert not CHORDS & allowed_texts(jig)  # the second eighth is not a beat in 6/8
    jig.feed(ids("BA", tok))
    assert allowed_texts(jig) >= CHORDS  # the second dotted quarter
    waltz = constraint(rules=RULES, tokenizer=tok, meter="3/4", unit_length=F(1, 8))
    waltz.feed(ids("AB", tok))
    assert allowed_texts(waltz) >= CHORDS  # the second quarter of 3/4
    waltz.feed(ids("A", tok))
    assert not CHORDS & allowed_texts(waltz)
