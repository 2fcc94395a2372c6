"""The engine that composes the rules: cached masks equal masks computed afresh, rules switch on and off
by name, one compiled grammar per settings, the state copies every field, the old import path still
works, and the package imports nothing from the layers above it."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys

import pytest
import torch
from grammar_helpers import F, constraint, music_tokenizer

from abcgen.grammar import (
    DEFAULT_RULES,
    IDIOMS,
    LEGACY_RULES,
    AbcConstraint,
    State,
    UnknownRuleError,
    bar_template,
)
from abcgen.grammar.state import E1


def fresh_mask(c: AbcConstraint) -> torch.Tensor:
    """The allowed mask of ``c``'s state computed without any cache: every unit through the rules, the
    real (uncapped) budget slack."""
    g, s, v = c.grammar, c.state, c.vocab
    if s.finished:
        return v.done
    if s.pending:
        return torch.stack([v.bar_text_masks[t] for t in s.pending[0]]).any(0)
    if s.closed:
        return v.eos
    slack = c.max_new_tokens - s.generated - g.min_finish(s)
    mask = torch.zeros(v.size, dtype=torch.bool)
    base = g.min_finish(s)
    for unit in g.units:
        ns = g.next_state(s, unit)
        if ns is not None and (g.budget is None or g.min_finish(ns) + 1 - base <= slack):
            mask |= unit.mask
    return mask


def fresh_bonus(c: AbcConstraint) -> torch.Tensor:
    """The logit bonus of ``c``'s state computed without any cache."""
    g, s = c.grammar, c.state
    bonus = torch.zeros(c.vocab.size)
    allowed = fresh_mask(c)
    if s.finished or s.pending or s.closed:
        return bonus
    for unit in g.units:
        if g.next_state(s, unit) is not None:
            bonus[unit.mask & allowed] += sum(r.weight(s, unit) for r in g.rules)
    return bonus


RULE_SETS = [LEGACY_RULES, DEFAULT_RULES, DEFAULT_RULES, ("repeats", "layout", "budget", *IDIOMS),
             ("beams", "budget", "cadence", "ties", "broken")]


def test_cached_masks_equal_fresh_ones() -> None:
    cached_vs_fresh(walks=20, min_steps=200)  # the slow test below walks 300


@pytest.mark.slow
def test_cached_masks_equal_fresh_ones_long() -> None:
    cached_vs_fresh(walks=300, min_steps=3500)


def cached_vs_fresh(walks: int, min_steps: int) -> None:
    """Random walks under random settings (forms, pickups, open repeats, templates, tight budgets, the old
    and the new rule sets, forced and weighted cadences): at every step the cached mask (and logit bonus)
    is the one computed afresh -- so no rule's key leaves out what it depends on."""
    rng = random.Random(11)
    tok = music_tokenizer()
    meters = [(F(1), F(1, 8)), ("6/8", F(1, 8)), (F(3, 4), F(1, 8)), (F(1, 2), F(1, 16)), (F(9, 8), F(1, 8)),
              (F(1, 4), F(1, 4)), ("12/8", F(1, 8))]
    steps = 0
    for walk in range(walks):
        meter, unit = rng.choice(meters)
        bar = F(meter) if not isinstance(meter, str) else F(3, 4) if meter == "6/8" else F(3, 2)
        form = rng.choice([None, None, "AABB", "ABAC"])
        bars = rng.choice([1, 2, 4, 8]) if form is None else rng.choice([4, 8])
        bars = None if form is None and rng.random() < 0.3 else bars
        pickup = rng.choice([0, 0, bar / 4])
        settings = {"meter": meter, "unit_length": unit, "num_bars": bars, "pickup": pickup, "form": form,
                    "open_repeat": form is None and rng.random() < 0.2, "rules": rng.choice(RULE_SETS),
                    "key": rng.choice(["D", "Ador", "Bb"]), "cadence": rng.choice(["forced", "weighted"]),
                    "cadence_sections": rng.random() < 0.3}
        budget = constraint(**settings, max_new_tokens=10_000).min_tokens_to_finish() + rng.choice([0, 1, 3, 40])
        c = constraint(**settings, max_new_tokens=budget)
        written: list[int] = []
        while not c.finished:
            assert torch.equal(c.allowed_mask(), fresh_mask(c)), (walk, c.state)
            bonus = c.bonus()
            assert torch.equal(torch.zeros(c.vocab.size) if bonus is None else bonus, fresh_bonus(c)), (walk, c.state)
            token = rng.choice(c.allowed_ids())
            c.advance(token)
            written.append(token)
            steps += 1
        if walk % 3 == 0:
            voice = constraint(meter=meter, unit_length=unit, pickup=pickup, num_bars=None, rules=settings["rules"],
                               max_new_tokens=len(written) + 5, bar_lines=bar_template(tok, written))
            while not voice.finished:
                assert torch.equal(voice.allowed_mask(), fresh_mask(voice))
                voice.advance(rng.choice(voice.allowed_ids()))
    assert steps > min_steps


def test_rules_are_switched_by_name() -> None:
    assert constraint().rules == ("bar_length", "end", "repeats", "layout", "budget")  # LEGACY_RULES
    # the default: the idioms the tokenizer has tokens for (no chord names here), beams, the cadence
    assert constraint(rules=None).rules == ("bar_length", "end", "order", "repeats", "beams", "budget", "broken",
                                            "tuplets", "ties", "grace", "decorations", "slurs", "chords", "cadence")
    assert constraint(rules=None, idioms={"broken", "ties"}).rules == (
        "bar_length", "end", "order", "repeats", "beams", "budget", "broken", "ties", "cadence")
    assert constraint(rules=None, idioms={"broken": 0.4, "tuplets": 0.001}).rules[6:8] == ("broken", "cadence")
    assert constraint(rules=["layout", "beams"]).rules == ("bar_length", "end", "beams")  # beams replace layout
    assert constraint(form="AB", num_bars=4).rules == ("bar_length", "form", "end", "layout", "budget")
    assert constraint(bar_lines=["", "|", "|]"], num_bars=None).rules[:3] == ("bar_length", "template", "end")
    assert constraint(rules=[]).rules == ("bar_length", "end")
    no_repeats = constraint(num_bars=4, rules=["layout", "budget"])
    no_repeats.advance(music_tokenizer()("A8", add_special_tokens=False)["input_ids"][0])
    texts = {no_repeats.vocab.texts[i] for i in no_repeats.allowed_ids()}
    assert "|" in texts and not texts & {"|:", "::", ":|", "||", "|1"}
    with pytest.raises(UnknownRuleError, match="'trills' is not a switchable grammar rule"):
        constraint(rules=["trills"])
    with pytest.raises(UnknownRuleError, match="'trills' is not an idiom"):
        constraint(idioms=["trills"])


def test_one_compiled_grammar_per_settings() -> None:
    a, b = constraint(max_new_tokens=50), constraint(max_new_tokens=80)
    assert a.grammar is b.grammar and a._cache is b._cache  # masks shared, budgets per constraint
    assert constraint(num_bars=3).grammar is not a.grammar
    assert constraint(rules=["layout", "budget"]).grammar is not a.grammar


def test_state_copy_copies_every_field() -> None:
    s = State(generated=3, finished=True, closed=True, can_end=True, pending=(frozenset({"|"}),), last="bar",
              room=5, in_pickup=True, bars_done=7, repeat=E1, scale=(2, 3), scaled=2, prefix=3, prev=4, run_dur=2,
              prev_pitch=("A", 1, "^"), grace=2, host=True, chord=3, chord_dur=1, tie=("A", 1, "", 2), slur=True,
              need_space=True, need_newline=2, tonic_end=True, key=("k",))
    copied = s.copy()
    for field in dataclasses.fields(State):
        if field.name != "key":
            assert getattr(copied, field.name) == getattr(s, field.name), field.name
    assert copied.key is None


def test_copies_go_on_independently() -> None:
    c = constraint()
    twin = c.copy()
    c.advance(music_tokenizer()("A8", add_special_tokens=False)["input_ids"][0])
    assert twin.state.room == twin.grammar.bar_steps and c.state.room == 0


def test_old_import_path_still_works() -> None:
    import abcgen.grammar as grammar
    from abcgen.generation.constraints import (
        AbcConstraint,
        AbcLogitsProcessor,
        ConstraintViolation,
        bar_template,
        music_vocabulary,
        parse_form,
        split_bar_line,
    )

    assert (AbcConstraint, AbcLogitsProcessor, ConstraintViolation, bar_template, music_vocabulary, parse_form,
            split_bar_line) == (grammar.AbcConstraint, grammar.AbcLogitsProcessor, grammar.ConstraintViolation,
                                grammar.bar_template, grammar.music_vocabulary, grammar.parse_form,
                                grammar.split_bar_line)


@pytest.mark.slow
def test_the_grammar_imports_nothing_above_it() -> None:
    code = ("import sys, abcgen.grammar; print(sorted(m for m in sys.modules if m.startswith(('abcgen.generation', "
            "'abcgen.training', 'abcgen.evaluation', 'abcgen.hub', 'abcgen.models'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
