"""The token budget: the tune always ends within ``max_new_tokens`` (the number given to ``generate``,
EOS included).

The engine knows at every step the fewest tokens that finish the tune (the sum of the rules'
``finish_cost``: fill the bar with the longest notes that fit, e.g. one ``A8`` per 4/4 bar at ``L:1/8``,
bar lines, forced bar-line tokens, EOS). With this rule on, a unit is allowed only when the tune can
still be finished in the tokens left after it, so it is never cut off, and when the budget is tight only
the units on a shortest completion remain. A budget that cannot hold the tune raises
``BudgetTooSmallError`` when the constraint is built. Switched off, the model may run out of tokens.
"""

from __future__ import annotations

from abcgen.grammar.errors import BudgetTooSmallError
from abcgen.grammar.rules.base import Rule


class BudgetRule(Rule):
    name = "budget"

    @staticmethod
    def admits(cost: int, slack: int) -> bool:
        """A unit whose ``cost`` (its token plus what it adds to the fewest tokens to finish) fits the
        ``slack`` (tokens left beyond the fewest needed)."""
        return cost <= slack

    def check(self, max_new_tokens: int, needed: int) -> None:
        """Raise ``BudgetTooSmallError`` when ``max_new_tokens`` cannot hold the ``needed`` tokens."""
        if needed > max_new_tokens:
            g = self.g
            what = f"{g.num_bars} bars" if g.num_bars is not None else "one bar"
            pickup = " with a pickup" if g.pickup else ""
            raise BudgetTooSmallError(
                f"max_new_tokens={max_new_tokens} cannot hold {what} of M={g.meter} at L={g.unit_length}{pickup}: at "
                f"least {needed} tokens are needed (one longest note per bar, bar lines and EOS); raise "
                "max_new_tokens or ask for fewer bars", budget=max_new_tokens, needed=needed)


def check_budget_value(max_new_tokens: int) -> None:
    """The budget must allow at least EOS."""
    if max_new_tokens < 1:
        raise BudgetTooSmallError(f"max_new_tokens={max_new_tokens} must be at least 1", budget=max_new_tokens)


__all__ = ["BudgetRule", "check_budget_value"]
