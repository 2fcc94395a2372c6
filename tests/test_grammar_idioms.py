"""Which idioms a corpus uses (``idioms_in_corpus``, read with our lexer) and how that set switches the idiom
rules: on for the constructs the training corpus has, off for the others and for those the tokenizer
has no tokens for; the order rule keeps what stands before a note in the order abc2midi reads."""

from __future__ import annotations

from grammar_helpers import allowed_texts, constraint, idiom_tokenizer, ids

from abcgen.grammar import DEFAULT_RULES, IDIOMS, MIN_IDIOM_SHARE, idioms_from_shares, idioms_in_corpus
from abcgen.grammar.idioms import STRUCTURES, tune_idioms
from abcgen.notation.tune import normalise_abc


def test_idioms_of_one_tune() -> None:
    body = 'X:1\nM:4/4\nL:1/8\nK:D\n"D"A>B (3cdc {g}A2-A2 ~B2 (AB) [ce]2 "4"d|\n'
    assert tune_idioms(body) == set(IDIOMS)
    assert tune_idioms("X:1\nM:4/4\nL:1/8\nK:D\nABcd \"4\"e4|\n") == set()  # a fingering is not a chord


def test_shares_over_real_tunes(real_tunes) -> None:  # noqa: ANN001
    tunes = []
    for text in real_tunes[:150]:  # O'Neill's
        try:
            tunes.append(normalise_abc(text))
        except Exception:  # noqa: BLE001 -- the corpus builder drops these too
            continue
    shares = idioms_in_corpus([*tunes, "X:1\nK:D\nA %% not lexable \\"])
    assert set(shares) == {*IDIOMS, *STRUCTURES} and all(0 <= v <= 1 for v in shares.values())
    assert idioms_from_shares({**shares, "endings": 1.0}) <= set(IDIOMS)  # a structure is not an idiom rule
    assert shares["broken"] > 0.1 and shares["tuplets"] > 0.1 and shares["grace"] > 0.05
    on = idioms_from_shares(shares)
    assert on == {name for name, share in shares.items() if share >= MIN_IDIOM_SHARE}
    c = constraint(rules=None, idioms=shares, tokenizer=idiom_tokenizer())
    assert [name for name in c.rules if name in IDIOMS] == [name for name in IDIOMS if name in on]


def test_an_idiom_left_out_is_masked() -> None:
    all_on = constraint(rules=DEFAULT_RULES, tokenizer=idiom_tokenizer())
    assert {"(3", "{", "~", "(", "[", '"D"'} <= allowed_texts(all_on)
    some = constraint(rules=DEFAULT_RULES, idioms={"tuplets"}, tokenizer=idiom_tokenizer())
    allowed = allowed_texts(some)
    assert "(3" in allowed and not {"{", "~", "(", "[", '"D"'} & allowed
    some.feed(ids("A2", idiom_tokenizer()))
    assert not {">", "-"} & allowed_texts(some)


def test_the_order_before_a_note() -> None:
    tok = idiom_tokenizer()
    c = constraint(rules=DEFAULT_RULES, tokenizer=tok)
    c.feed(ids('(', tok))
    assert {"(3", "{", '"D"', "~", "A"} <= allowed_texts(c)
    c.feed(ids('{g}"D"', tok))
    allowed = allowed_texts(c)
    assert "T" in allowed and not {"(3", "{", '"D"', "(", " ", "|"} & allowed
    c.feed(ids("T", tok))
    assert not {"T", "~", '"D"', "["} & allowed_texts(c)
