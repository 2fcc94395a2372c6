"""Helpers for the grammar tests: one tiny music tokenizer per test process, rules put to single units."""

from __future__ import annotations

import functools
import random
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from tiny_models import tiny_base_tokenizer

from abcgen.grammar import LEGACY_RULES, AbcConstraint, Grammar, State, Unit, music_vocabulary
from abcgen.tokenization.extend import build_music_tokenizer
from abcgen.tokenization.units import load_default_spec

F = Fraction

# (M:, L:, K:, bars, pickup in whole notes, form): the constraint settings the walk, sampling and golden
# tests share (the golden file was recorded with exactly these).
SETTINGS = [
    ("4/4", "1/8", "D", 8, 0, None),
    ("6/8", "1/8", "Ador", 16, 0, None),
    ("3/4", "1/8", "G", 8, F(1, 8), None),
    ("2/4", "1/16", "Bb", 16, 0, None),
    ("4/4", "1/8", "Edor", 16, F(1, 8), "AABB"),
    ("6/8", "1/8", "D", 8, F(1, 8), "AB"),
    ("3/4", "1/4", "F", 8, 0, "ABAC"),
    ("2/4", "1/8", "Em", 8, 0, "AABB"),
]


@functools.lru_cache(maxsize=1)
def music_tokenizer() -> Any:
    """The tests' tiny byte-level BPE extended with the shipped unit spec (built once per process)."""
    folder = Path(tempfile.mkdtemp(prefix="abcgen-grammar-"))
    return build_music_tokenizer(tiny_base_tokenizer(folder), load_default_spec(), ["<key=D_major>"])


# Idiom tokens the shipped spec lacks (chord names, a written-out tuplet, more broken rhythm and
# decorations): the idiom rules must work with whatever single tokens a corpus gives.
IDIOM_EXTRAS = ['"Am"', '"D"', '"G"', '"Em"', '"D7"', '"C"', '"A/C#"', '"Bm"', "!trill!", "!fermata!", "(3:2:3", "(2",
                "<<", "(4"]


@functools.lru_cache(maxsize=1)
def idiom_tokenizer() -> Any:
    """``music_tokenizer()`` plus ``IDIOM_EXTRAS`` as unit tokens (built once per process)."""
    folder = Path(tempfile.mkdtemp(prefix="abcgen-idioms-"))
    return build_music_tokenizer(tiny_base_tokenizer(folder), load_default_spec().texts() + IDIOM_EXTRAS,
                                 ["<key=D_major>"])


def constraint(**kw: Any) -> AbcConstraint:
    """An ``AbcConstraint`` over ``music_tokenizer()``: 4/4 at L:1/8 in D, 2 bars, budget 100 and the rules
    before the idioms (``LEGACY_RULES``: the tests of those rules pin them) unless given."""
    settings = {"meter": F(1), "unit_length": F(1, 8), "key": "D", "num_bars": 2, "max_new_tokens": 100,
                "rules": LEGACY_RULES}
    settings.update(kw)
    return AbcConstraint(settings.pop("tokenizer", None) or music_tokenizer(), **settings)


def ids(text: str, tok: Any = None) -> list[int]:
    return (tok or music_tokenizer())(text, add_special_tokens=False)["input_ids"]


def unit(text: str, tok: Any = None) -> Unit:
    """The (pitched) unit of a text that is one token (``"A2"``, ``":|"``, ``" "``, ``"\\n"``, ``"(3"``)."""
    found = ids(text, tok)
    assert len(found) == 1, (text, found)
    vocab = music_vocabulary(tok or music_tokenizer())
    return vocab.pitched_units[vocab.pitched_unit_of[found[0]]]


def eos_unit() -> Unit:
    vocab = music_vocabulary(music_tokenizer())
    return vocab.units[vocab.unit_of[music_tokenizer().eos_token_id]]


def ask(g: Grammar, name: str, s: State, text_or_unit: str | Unit, tok: Any = None) -> tuple[int, State]:
    """What rule ``name`` of ``g`` alone answers for the unit in state ``s``, and the state it writes."""
    rule = next(r for r in g.rules if r.name == name)
    u = unit(text_or_unit, tok) if isinstance(text_or_unit, str) else text_or_unit
    ns = s.copy()
    return rule.step(s, ns, u), ns


def allowed_texts(c: AbcConstraint) -> set[str]:
    return {c.vocab.texts[i] for i in c.allowed_ids()}


def random_walk(c: AbcConstraint, rng: random.Random) -> list[int]:
    """Feed ``c`` allowed tokens until it finishes: a random token class first (so that rare classes such
    as endings and '::' are reached), then a random token of it."""
    vocab = c.vocab
    written: list[int] = []
    while not c.finished:
        by_class: dict[int, list[int]] = {}
        for i in c.allowed_ids():
            by_class.setdefault(vocab.cls[i], []).append(i)
        token = rng.choice(by_class[rng.choice(sorted(by_class))])
        c.advance(token)
        written.append(token)
    return written
