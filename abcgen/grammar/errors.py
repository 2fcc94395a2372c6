"""Typed errors of the grammar, so callers branch on the type, not on the text of a message.

Every settings error is also a ``ConfigError`` (callers that only know that one keep working); the
budget error carries the numbers, so the pipeline can turn it into its own error without reading text."""

from __future__ import annotations

from abcgen.errors import AbcgenError, ConfigError


class GrammarError(AbcgenError):
    """Base class of the grammar's errors."""


class GrammarConfigError(GrammarError, ConfigError):
    """Settings the grammar refuses (meter, pickup, bars, key, contradictory options)."""


class BudgetTooSmallError(GrammarConfigError):
    """``max_new_tokens`` cannot hold the requested tune. ``needed`` is the fewest tokens that can (None when
    the budget is below 1 and nothing was counted), ``budget`` the value given."""

    def __init__(self, message: str, *, budget: int, needed: int | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.needed = needed


class FormError(GrammarConfigError):
    """A ``form`` (``AABB``) that cannot be written: bad letters, too few bars, a bar line not in the vocabulary."""


class BarTemplateError(GrammarConfigError):
    """A bar template (``bar_lines``) that cannot be followed: unknown bar lines, unbalanced repeats."""


class UnclosedRepeatError(BarTemplateError):
    """A bar template whose repeats or endings are unbalanced or out of order."""


class VocabularyError(GrammarConfigError):
    """The tokenizer lacks what the grammar needs (an EOS token, single-token notes that fill a bar)."""


class UnknownRuleError(GrammarConfigError):
    """A rule name that is not registered, or a rule set without a rule every tune needs."""


class ConstraintViolation(GrammarError, ValueError):
    """A token the constraint does not allow was fed to ``AbcConstraint.advance``."""


__all__ = ["BarTemplateError", "BudgetTooSmallError", "ConstraintViolation", "FormError", "GrammarConfigError",
           "GrammarError", "UnclosedRepeatError", "UnknownRuleError", "VocabularyError"]
