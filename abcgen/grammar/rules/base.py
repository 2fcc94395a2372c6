"""The rule interface. See the package docstring (``abcgen.grammar``) for how the engine composes rules."""

from __future__ import annotations

from collections.abc import Hashable
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import Unit

if TYPE_CHECKING:
    from abcgen.grammar.constraint import Grammar

# What ``Rule.step`` answers for a candidate unit.
REFUSE = 0  # the unit may not come next (one refusal is enough)
PASS = 1  # no objection, but this rule does not bring the unit in
OFFER = 2  # this rule brings the unit in (a unit needs at least one offer)


class Rule:
    """One rule of the body grammar, bound to one set of settings (a ``Grammar``); stateless between
    tunes -- the tune's state is the ``State`` passed in.

    * ``bind(g)`` checks the settings that concern the rule and precomputes its tables; raises a
      ``GrammarConfigError`` subclass naming the value and the fix.
    * ``start(s)`` writes the rule's fields of the start state.
    * ``step(s, ns, unit)`` answers ``OFFER``/``PASS``/``REFUSE`` for ``unit`` coming next in state ``s``
      and writes what the unit changes into ``ns`` (a copy of ``s``). Only called for units whose class
      is in ``classes``. It must not write ``s``.
    * ``finish_cost(s)`` the tokens this rule alone still needs to finish the tune from ``s`` (a first
      ending needs a second one; a forced two-token bar line needs one more token). The engine adds the
      contributions of all rules, so each counts only tokens no other rule counts; the sum must be the
      exact fewest tokens to finish, or the budget rule cannot guarantee an ending.
    * ``weight(s, unit)`` (optional) a logit bonus for an allowed ``unit`` in ``s`` (weighted rules: it
      must depend only on what ``key`` reports).
    * class settings: ``needs`` (the token classes an idiom rule cannot work without: the rule is left
      out for a tokenizer without them), ``pitched`` (the rule reads ``Unit.pitch``: notes are split by
      pitch), ``grid_factor(g)``/``grid_lengths(g)`` (what the grid must resolve: a factor every note
      length is multiplied by -- 3 for triplets --, lengths in whole notes -- a beat).
    * ``key(s)`` the part of ``s`` that ``step`` and the *differences* of ``finish_cost`` between ``s``
      and the next state depend on. Masks are cached per key: a key that leaves out something a
      decision depends on gives wrong masks (``tests/test_grammar_constraint.py`` compares cached and
      uncached masks on random walks).
    """

    name: ClassVar[str] = ""
    classes: ClassVar[frozenset[int]] = frozenset()  # unit classes ``step`` looks at
    needs: ClassVar[frozenset[int]] = frozenset()  # token classes the rule needs (idioms)
    pitched: ClassVar[bool] = False  # reads Unit.pitch

    @classmethod
    def grid_factor(cls, g: Grammar) -> int:
        return 1

    @classmethod
    def grid_lengths(cls, g: Grammar) -> list[Fraction]:
        return []

    def bind(self, g: Grammar) -> None:
        self.g = g

    def start(self, s: State) -> None:
        """Write this rule's fields of the state at the start of the body."""

    def step(self, s: State, ns: State, unit: Unit) -> int:
        return PASS

    def finish_cost(self, s: State) -> int:
        return 0

    def key(self, s: State) -> Hashable:
        return None

    def weight(self, s: State, unit: Unit) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"<rule {self.name}>"


__all__ = ["OFFER", "PASS", "REFUSE", "Rule"]
