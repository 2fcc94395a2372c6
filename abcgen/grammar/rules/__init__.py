"""The rules of the body grammar, by name (see ``abcgen.grammar`` for the interface).

``CORE`` rules are always on (without them no tune can be finished); ``form`` and ``template`` come on
with the ``form`` / ``bar_lines`` settings (and replace ``repeats``); the ``OPTIONAL`` ones are switched
with ``AbcConstraint(rules=...)`` (default: ``DEFAULT_RULES``). A new rule is registered in ``RULES`` and,
if it may be switched, in ``OPTIONAL``.

``DEFAULT_RULES`` writes the folk idiom: the idiom rules (``IDIOMS``: ``broken``, ``tuplets``, ``ties``,
``grace``, ``decorations``, ``slurs``, ``chord_symbols``, ``chords`` -- each left out when the tokenizer
lacks its tokens, and restricted with ``AbcConstraint(idioms=...)``), ``beams`` (spaces at the meter's
beat groups, a line every 4 bars; replaces ``layout``) and ``cadence`` (the tune ends on the tonic).
``LEGACY_RULES`` is the grammar before the idioms (``repeats``, ``layout``, ``budget``): plain notes and
bar lines, the model's own spaces. ``order`` (what may stand before a note) is not switched: it comes on
with any idiom rule. ``prior`` (the theory prior) is not switched by name either: it comes on with
``AbcConstraint(pitch_prior=..., length_prior=...)``.
"""

from __future__ import annotations

from abcgen.grammar.idioms import IDIOMS
from abcgen.grammar.rules.bar_length import BarLengthRule, fill_table
from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.rules.beams import BeamRule
from abcgen.grammar.rules.broken import BrokenRule
from abcgen.grammar.rules.budget import BudgetRule
from abcgen.grammar.rules.cadence import CadenceRule
from abcgen.grammar.rules.chord_symbols import ChordSymbolRule
from abcgen.grammar.rules.chords import ChordRule
from abcgen.grammar.rules.decorations import DecorationRule
from abcgen.grammar.rules.end import EndRule
from abcgen.grammar.rules.forced import FormRule, Section, TemplateRule, parse_form
from abcgen.grammar.rules.grace import GraceRule
from abcgen.grammar.rules.layout import LayoutRule
from abcgen.grammar.rules.order import OrderRule
from abcgen.grammar.rules.prior import TheoryPriorRule
from abcgen.grammar.rules.repeats import RepeatRule
from abcgen.grammar.rules.slurs import SlurRule
from abcgen.grammar.rules.ties import TieRule
from abcgen.grammar.rules.tuplets import TupletRule

RULES: dict[str, type[Rule]] = {r.name: r for r in (
    BarLengthRule, FormRule, TemplateRule, RepeatRule, EndRule, OrderRule, LayoutRule, BeamRule, BudgetRule,
    BrokenRule, TupletRule, TieRule, GraceRule, DecorationRule, SlurRule, ChordSymbolRule, ChordRule, CadenceRule,
    TheoryPriorRule)}
CORE = ("bar_length", "end")
OPTIONAL = ("repeats", "layout", "beams", "budget", *IDIOMS, "cadence")
DEFAULT_RULES = ("repeats", "beams", "budget", *IDIOMS, "cadence")
LEGACY_RULES = ("repeats", "layout", "budget")

__all__ = ["CORE", "DEFAULT_RULES", "IDIOMS", "LEGACY_RULES", "OFFER", "OPTIONAL", "PASS", "REFUSE", "RULES",
           "BarLengthRule", "BeamRule", "BrokenRule", "BudgetRule", "CadenceRule", "ChordRule", "ChordSymbolRule",
           "DecorationRule", "EndRule", "FormRule", "GraceRule", "LayoutRule", "OrderRule", "RepeatRule", "Rule",
           "Section", "SlurRule", "TemplateRule", "TheoryPriorRule", "TieRule", "TupletRule", "fill_table", "parse_form"]
