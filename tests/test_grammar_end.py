"""The end rule on its own: the bar line after the last bar closes the tune, ``|]`` is offered there
(or anywhere without ``num_bars``), EOS comes after a closing ``:|`` without ``num_bars``."""

from __future__ import annotations

from grammar_helpers import F, allowed_texts, ask, constraint, eos_unit, ids, music_tokenizer

from abcgen.grammar import OFFER, PASS, REFUSE


def at_bar_end(g, bars_done: int):  # noqa: ANN001, ANN201
    s = g.start_state()
    s.room, s.last, s.bars_done = 0, "note", bars_done
    return s


def test_the_last_bar_line_closes_the_tune() -> None:
    g = constraint(num_bars=3).grammar
    assert ask(g, "end", at_bar_end(g, 0), "|]")[0] == PASS  # offered only at the last bar
    verdict, ns = ask(g, "end", at_bar_end(g, 2), "|]")
    assert verdict == OFFER and ns.closed
    verdict, ns = ask(g, "end", at_bar_end(g, 2), ":|")
    assert verdict == PASS and ns.closed  # the structure rule decides whether ':|' may close it


def test_without_num_bars_any_full_bar_may_end() -> None:
    g = constraint(num_bars=None).grammar
    verdict, ns = ask(g, "end", at_bar_end(g, 5), "|]")
    assert verdict == OFFER and ns.closed
    verdict, ns = ask(g, "end", at_bar_end(g, 5), ":|")
    assert verdict == PASS and ns.can_end and not ns.closed
    assert ask(g, "end", ns, eos_unit())[0] == OFFER
    assert ask(g, "end", at_bar_end(g, 5), eos_unit())[0] == REFUSE
    pickup = constraint(num_bars=None, pickup=F(1, 8)).grammar
    s = pickup.start_state()
    s.room, s.last = 0, "note"
    assert ask(pickup, "end", s, "|]")[0] == PASS and not ask(pickup, "end", s, "|]")[1].closed


def test_closed_tune_takes_only_eos_then_pads() -> None:
    tok = music_tokenizer()
    c = constraint(num_bars=1)
    c.feed(ids("A8|]"))
    assert c.state.closed and allowed_texts(c) == {"<|endoftext|>"} and c.min_tokens_to_finish() == 1
    c.advance(tok.eos_token_id)
    assert c.finished and set(c.allowed_ids()) == {tok.eos_token_id, tok.pad_token_id}
    c.advance(tok.pad_token_id)
    assert c.state.generated == 4
