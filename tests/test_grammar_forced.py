"""The form and template rules on their own: the forced bar line at each section end / each bar of the
template, the second token of a two-token bar line, their share of the fewest tokens to finish, and
the typed errors of bad forms and templates."""

from __future__ import annotations

import random
import re

import pytest
from grammar_helpers import (
    F,
    allowed_texts,
    ask,
    constraint,
    idiom_tokenizer,
    ids,
    music_tokenizer,
    random_walk,
)

from abcgen.errors import ConfigError
from abcgen.generation.sampling import check_sample
from abcgen.grammar import (
    OFFER,
    REFUSE,
    BarTemplateError,
    FormError,
    UnclosedRepeatError,
    bar_template,
    music_vocabulary,
    parse_form,
    split_bar_line,
)
from abcgen.grammar.rules import DEFAULT_RULES
from abcgen.grammar.rules.forced import played_bars, written_bars
from abcgen.notation.abc2midi import abc2midi_check


def at_bar_end(g, bars_done: int):  # noqa: ANN001, ANN201
    s = g.start_state()
    s.room, s.last, s.bars_done, s.pending = 0, "note", bars_done, ()
    return s


def test_form_sections() -> None:
    assert [(s.end_bar, s.repeated) for s in parse_form("AABB", 16)] == [(8, True), (16, True)]
    assert [s.end_bar for s in parse_form("ABC", 8)] == [3, 6, 8]  # earlier sections take the extra bar
    g = constraint(num_bars=4, form="AABB").grammar
    assert g.start_state().pending == (frozenset({"|:"}),)  # the first section opens a repeat
    assert ask(g, "form", at_bar_end(g, 0), "|")[0] == OFFER
    assert ask(g, "form", at_bar_end(g, 0), "||")[0] == REFUSE  # inside a section only '|'
    assert ask(g, "form", at_bar_end(g, 1), "|")[0] == REFUSE  # the section boundary is forced
    assert ask(g, "form", at_bar_end(g, 1), "::")[0] == OFFER
    assert ask(g, "form", at_bar_end(g, 3), ":||")[0] == OFFER  # ':||' counts as ':|'


def test_form_without_double_colon_writes_two_tokens(tmp_path) -> None:  # noqa: ANN001
    from tiny_models import tiny_base_tokenizer

    from abcgen.grammar import LEGACY_RULES, AbcConstraint
    from abcgen.tokenization.extend import build_music_tokenizer

    tok = build_music_tokenizer(tiny_base_tokenizer(tmp_path), ["A8", "|", "|:", ":|", "|]"])
    c = AbcConstraint(tok, meter=F(1), unit_length=F(1, 8), key="C", num_bars=2, max_new_tokens=20, form="AABB",
                      rules=LEGACY_RULES)
    rule = next(r for r in c.grammar.rules if r.name == "form")
    assert rule.boundaries[1] == (frozenset({":|"}), frozenset({"|:"}))
    # |: A8 :| |: A8 :| EOS -- the forced '|:' counted from the start
    assert c.min_tokens_to_finish() == 7
    c.feed(tok("|:A8:|", add_special_tokens=False)["input_ids"])
    assert c.state.pending == (frozenset({"|:"}),) and c.min_tokens_to_finish() == 4


def test_template_forces_voice_one_bar_lines() -> None:
    tok = music_tokenizer()
    template = bar_template(tok, ids("|:A8|B4 B4::\nc8|d8:|") + [tok.eos_token_id])
    assert template == ["|:", "|", "::", "|", ":|"]
    assert split_bar_line(music_vocabulary(tok), ":||:") == (":|", "|:")
    g = constraint(num_bars=None, bar_lines=template).grammar
    assert g.num_bars == 4 and g.start_state().pending == (frozenset({"|:"}),)
    assert ask(g, "template", at_bar_end(g, 1), "::")[0] == OFFER
    assert ask(g, "template", at_bar_end(g, 1), "|")[0] == REFUSE
    rule = next(r for r in g.rules if r.name == "template")
    assert rule.finish_cost(g.start_state()) == 0
    pickup = constraint(meter=F(3, 4), pickup=F(1, 8), num_bars=None, bar_lines=["", ":||:", "|", "|]"]).grammar
    rule = next(r for r in pickup.rules if r.name == "template")
    assert rule.finish_cost(pickup.start_state()) == 1  # the pickup's ':||:' is two tokens


def test_template_settings_flow_through_the_constraint() -> None:
    c = constraint(num_bars=None, bar_lines=["", "|", "|]"])
    c.advance(ids("A8")[0])
    assert allowed_texts(c) & {"|", "||", "|]", ":|"} == {"|"}


@pytest.mark.parametrize(("kw", "error", "message"), [
    ({"form": "ab", "num_bars": 4}, FormError, "give section letters"),
    ({"form": "AAAB", "num_bars": 8}, FormError, "more than twice"),
    ({"form": "ABCDE", "num_bars": 4}, FormError, "5 written sections"),
    ({"form": "AB", "num_bars": None}, FormError, "needs a number of bars"),
    ({"bar_lines": ["|:", "|", "|]"]}, UnclosedRepeatError, "never closed"),
    ({"bar_lines": ["", "|x", "|]"]}, BarTemplateError, r"bar_lines\[1\]='\|x'"),
    ({"bar_lines": ["", "|", "|]"], "form": "AB"}, BarTemplateError, "cannot be combined with form"),
])
def test_bad_forms_and_templates_raise_typed_errors(kw, error, message) -> None:  # noqa: ANN001
    with pytest.raises(error, match=message) as caught:
        constraint(**kw)
    assert isinstance(caught.value, ConfigError)


def test_played_and_written_bars() -> None:
    """The pipeline's ``bars`` with a form are played bars, as players count them."""
    assert written_bars("AABB", 32) == 16 and played_bars("AABB", 16) == 32  # a reel: two 8-bar parts, twice
    assert written_bars("ABAC", 32) == 32 and written_bars("AAB", 24) == 16 and played_bars("AAB", 16) == 24
    assert played_bars("AABB", 17) is None
    with pytest.raises(FormError, match="cannot be split"):
        written_bars("AABB", 30)


def test_first_and_second_endings_in_a_form() -> None:
    """``endings=True``: each repeated section ends |1 <bar> :|2 <bar>; written bars count both endings."""
    assert written_bars("AABB", 32, endings=True) == 18 and played_bars("AABB", 18, endings=True) == 32
    assert [(s.end_bar, s.endings) for s in parse_form("AABB", 18, endings=True)] == [(9, True), (18, True)]
    assert [(s.end_bar, s.endings) for s in parse_form("AAB", 17, endings=True)] == [(9, True), (17, False)]
    tok = idiom_tokenizer()
    rng = random.Random(2)
    for form, bars in (("AABB", 10), ("AAB", 7), ("ABB", 7)):
        c = constraint(tokenizer=tok, rules=DEFAULT_RULES, form=form, num_bars=bars, endings=True,
                       max_new_tokens=400, cadence="weighted")
        body = "".join(c.vocab.texts[i] for i in random_walk(c, rng)[:-1])
        marks = re.findall(r"\|\[?1|:\|\[?2|::|:\||\|:|\|\]|\|\|", body)
        assert marks.count("|1") + marks.count("|[1") == form.count(form[0] * 2) + form.count(form[-1] * 2) \
            - (1 if form[0] == form[-1] else 0) or form == "ABB", (form, body)
        abc = f"X:1\nM:4/4\nL:1/8\nK:D\n{body}\n"
        assert check_sample(abc, num_bars=bars).valid and abc2midi_check(abc) == [], abc
