"""The budget rule on its own: the tune always ends within max_new_tokens, a tight budget leaves only
shortest completions, a budget too small is a typed error (the pipeline turns it into its
GenerationBudgetError: tests/test_pipeline.py); switched off, the model may run past the budget."""

from __future__ import annotations

import random

import pytest
from grammar_helpers import F, allowed_texts, constraint, ids, random_walk

from abcgen.errors import ConfigError
from abcgen.grammar import BudgetTooSmallError
from abcgen.grammar.rules import BudgetRule


def test_admits_by_cost_and_slack() -> None:
    assert BudgetRule.admits(1, 1) and not BudgetRule.admits(2, 1)


def test_budget_too_small_is_typed_and_carries_the_numbers() -> None:
    with pytest.raises(BudgetTooSmallError, match="max_new_tokens=4 cannot hold 2 bars") as caught:
        constraint(num_bars=2, max_new_tokens=4)
    assert (caught.value.budget, caught.value.needed) == (4, 5)  # A8 | B8 |] EOS
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(BudgetTooSmallError, match="must be at least 1"):
        constraint(max_new_tokens=0)


def test_tight_budget_forces_the_shortest_completion() -> None:
    c = constraint(num_bars=2, max_new_tokens=5)
    assert c.min_tokens_to_finish() == 5
    assert all(t.endswith("8") for t in allowed_texts(c))
    c.feed(ids("A8"))
    # bar lines of equal cost (a ':|' repeats from the start), ' |' a one-token merge; no space or newline
    # alone: no budget left for them
    assert allowed_texts(c) == {"|", "||", "|:", ":|", ":||", " |"}
    assert constraint(num_bars=16, form="AABB", meter=F(3, 4)).min_tokens_to_finish() == 34


def test_walks_end_within_the_budget() -> None:
    rng = random.Random(5)
    for _ in range(40):
        bars = rng.choice([None, 1, 3, 8])
        probe = constraint(num_bars=bars, max_new_tokens=10_000)
        budget = probe.min_tokens_to_finish() + rng.choice([0, 1, 4, 30])
        written = random_walk(constraint(num_bars=bars, max_new_tokens=budget), rng)
        assert len(written) <= budget


def test_switched_off_the_budget_is_not_enforced() -> None:
    c = constraint(num_bars=2, max_new_tokens=4, rules=["repeats", "layout"])  # would be refused with it
    assert "budget" not in c.rules
    c.feed(ids("A"))
    assert {"A", " "} <= allowed_texts(c)  # nothing held back for the tokens left
