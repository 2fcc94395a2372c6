"""Deprecated location of constrained decoding: it lives in ``abcgen.grammar`` now (a package of rules).

Kept for one release so that ``from abcgen.generation.constraints import AbcConstraint, AbcLogitsProcessor,
bar_template, music_vocabulary, split_bar_line, parse_form, ConstraintViolation`` keeps working; import
from ``abcgen.grammar`` instead.
"""

from __future__ import annotations

from abcgen.grammar import (
    AbcConstraint,
    AbcLogitsProcessor,
    ConstraintViolation,
    MusicVocabulary,
    bar_template,
    music_vocabulary,
    parse_form,
    parse_unit,
    split_bar_line,
)
from abcgen.grammar.state import E1, E2, R0, R1
from abcgen.grammar.vocabulary import BAR, BAR_KINDS, EOS, NEWLINE, NOTE, OTHER, PAD, SPACE

__all__ = ["BAR", "BAR_KINDS", "E1", "E2", "EOS", "NEWLINE", "NOTE", "OTHER", "PAD", "R0", "R1", "SPACE",
           "AbcConstraint", "AbcLogitsProcessor", "ConstraintViolation", "MusicVocabulary", "bar_template",
           "music_vocabulary", "parse_form", "parse_unit", "split_bar_line"]
