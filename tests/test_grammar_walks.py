"""Random walks over the allowed tokens with the idiom rules on: every tune passes our checker
(``abcgen.notation.checks.check_tune``) and abc2midi with no error or warning line, across meters (2/4,
3/4, 4/4, 6/8, 9/8, 12/8, 2/2, 3/2), keys, forms, pickups, budgets from the minimum up and rule sets
(every idiom, random subsets, forced and weighted cadences), with a tokenizer that has chord names and
written-out tuplets besides the shipped spec. A walk picks a random allowed token class, then a random
token of it, so rare idioms come as often as notes. The fewest tokens to finish is checked at every step
of some walks: one allowed token always brings the tune at least one token closer to its end."""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

import pytest
from grammar_helpers import constraint, idiom_tokenizer, random_walk

from abcgen.grammar import DEFAULT_RULES, IDIOMS, AbcConstraint, bar_template
from abcgen.notation.checks import abc2midi_check, check_tune
from abcgen.notation.lexer import parse_fraction
from abcgen.notation.tune import normalise_tune
from abcgen.tokenization.extend import ids_to_abc

METERS = [("2/4", "1/16"), ("2/4", "1/8"), ("3/4", "1/8"), ("4/4", "1/8"), ("6/8", "1/8"), ("9/8", "1/8"),
          ("12/8", "1/8"), ("2/2", "1/4"), ("2/2", "1/8"), ("3/2", "1/4"), ("C|", "1/8")]
KEYS = ["D", "G", "Ador", "Em", "Bb", "F#m", "A", "Cmix", "Edor", "Gm"]


def settings(rng: random.Random) -> dict[str, Any]:
    meter, unit = rng.choice(METERS)
    form = rng.choice([None, None, "AABB", "ABAC", "AB"])
    bars = rng.choice([1, 2, 4, 8]) if form is None else rng.choice([4, 8])
    bar = parse_fraction(meter)
    rules = DEFAULT_RULES if rng.random() < 0.5 else (
        "repeats", rng.choice(["beams", "layout"]), "budget", "cadence", *rng.sample(IDIOMS, rng.randint(1, 4)))
    return {"meter": meter, "unit_length": parse_fraction(unit), "key": rng.choice(KEYS), "form": form,
            "num_bars": None if form is None and rng.random() < 0.2 else bars,
            "pickup": rng.choice([0, 0, Fraction(1, 8), bar - Fraction(1, 16)]), "rules": rules,
            "cadence": rng.choice(["forced", "forced", "weighted"]), "cadence_sections": rng.random() < 0.3,
            "tokenizer": idiom_tokenizer()}


def problems_of(c: AbcConstraint, written: list[int], kw: dict[str, Any], budget: int) -> list[str]:
    body = ids_to_abc(c_tokenizer(), written)
    abc = f"X:1\nM:{kw['meter']}\nL:{kw['unit_length']}\nK:{kw['key']}\n{body}\n"
    check = check_tune(normalise_tune(abc))
    problems = list(check.problems)
    if kw["num_bars"] is not None and check.report.num_bars != kw["num_bars"]:
        problems.append(f"{check.report.num_bars} bars, not {kw['num_bars']}")
    if len(written) > budget:
        problems.append(f"{len(written)} tokens over the budget of {budget}")
    return problems + abc2midi_check(abc)


def c_tokenizer() -> Any:
    return idiom_tokenizer()


def walk_tunes(count: int, seed: int, check_progress: int = 0) -> dict[str, int]:
    """``count`` random walks; asserts each is valid; returns what was seen."""
    rng = random.Random(seed)
    seen = dict.fromkeys(["tunes", "steps", "(3", ">", "-", "{", "~", ".", "(", '"', "[", " ", "\n"], 0)
    for walk in range(count):
        kw = settings(rng)
        budget = constraint(**kw, max_new_tokens=10_000).min_tokens_to_finish() + rng.choice([0, 1, 3, 20, 80])
        c = constraint(**kw, max_new_tokens=budget)
        written = progress_walk(c, rng) if walk < check_progress else random_walk(c, rng)
        problems = problems_of(c, written, kw, budget)
        body = ids_to_abc(c_tokenizer(), written)
        if problems:
            pytest.fail(f"walk {walk}: {kw}\n{body}\n{problems}")
        seen["tunes"] += 1
        seen["steps"] += len(written)
        for mark in seen:
            if mark in body:
                seen[mark] += 1
    return seen


def progress_walk(c: AbcConstraint, rng: random.Random) -> list[int]:
    """A random walk that checks, at every step, that some allowed unit costs at most one token of the
    fewest still needed (the budget can never be stuck) and that the budget never runs short."""
    g = c.grammar
    written: list[int] = []
    while not c.finished:
        s = c.state
        if not (s.pending or s.closed):
            need = g.min_finish(s)
            best = min(g.min_finish(ns) for u in g.units if (ns := g.next_state(s, u)) is not None)
            assert best + 1 <= need, (s, need, best)
            assert need <= c.tokens_left, (s, need)
        token = rng.choice(c.allowed_ids())
        c.advance(token)
        written.append(token)
    return written


def test_fifty_idiom_walks_are_valid() -> None:
    seen = walk_tunes(50, seed=0, check_progress=10)
    # every idiom class is walked (a decoration: '~' or '.', among the 13 decoration tokens)
    assert seen["tunes"] == 50 and all(seen[mark] for mark in ("(3", ">", "{", "(", '"', "[", " "))
    assert seen["~"] + seen["."]


@pytest.mark.slow
def test_600_idiom_walks_are_valid() -> None:
    """600 tunes with every rule on or random subsets, all through our checker and abc2midi."""
    seen = walk_tunes(600, seed=1, check_progress=60)
    print(f"\n600 idiom walks valid (checker and abc2midi): {seen}")
    assert seen["tunes"] == 600 and all(seen[mark] > 20 for mark in seen)


def test_later_voices_follow_voice_one_with_idioms() -> None:
    rng = random.Random(3)
    tok = idiom_tokenizer()
    for _ in range(8):
        kw = settings(rng)
        kw["num_bars"], kw["form"] = kw["num_bars"] or 4, None
        first = random_walk(constraint(**kw, max_new_tokens=400), rng)
        template = bar_template(tok, first)
        voice = constraint(**{**kw, "num_bars": None}, bar_lines=template, max_new_tokens=len(first) + 40)
        second = random_walk(voice, rng)
        assert bar_template(tok, second) == template
