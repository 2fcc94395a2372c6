"""The pipeline's argument checks (``ConfigError`` naming the value and the fix, before anything is generated)
and the grammar options of a call: ``grammar="legacy" | "idiom"``, ``cadence`` and ``idioms``.

``grammar="idiom"`` (the default) is the whole folk idiom (``DEFAULT_RULES``): broken rhythm, tuplets, ties, grace notes, decorations, slurs, chord
symbols and chords -- those the model's training corpus uses (``idioms.json`` of the model folder; every
idiom the tokenizer has tokens for when the folder has none) or the ``idioms`` given --, beams at the
meter's beats with a line every 4 bars, and the cadence on the tonic (``cadence="forced"``, the default
there, or ``"weighted"``: a logit bonus), and recurrence (bars 5-6 of a part replay bars 1-2, a returning
section replays; ``abcgen.grammar.recurrence``). ``grammar="legacy"`` is the body grammar before the
idioms (``LEGACY_RULES``: plain notes and bar lines, the model's own spaces, no cadence, no recurrence),
kept for comparison. ``guidance_scale`` (``check_guidance_scale``; 1 = off) is the
classifier-free guidance of ``abcgen.generation.guidance``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from abcgen.corpus.sources import read_text
from abcgen.errors import ConfigError
from abcgen.grammar.idioms import IDIOMS
from abcgen.grammar.rules import DEFAULT_RULES, LEGACY_RULES
from abcgen.grammar.rules.cadence import CADENCE_MODES

GRAMMARS = {"legacy": LEGACY_RULES, "idiom": DEFAULT_RULES}
DEFAULT_GRAMMAR = "idiom"
MAX_SEED = 2**63 - 1  # the largest seed torch accepts


def short(value: Any) -> str:
    """``repr`` of a bad value, cut to one short line for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """A whole number in ``low..high`` (``bool`` is not one here: ``bars=True`` is a mistake, not 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or \
            (high is not None and value > high):
        valid = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{name}={short(value)}: give a whole number {valid}")


def check_real(name: str, value: Any, valid: str, ok: Any) -> None:
    """A finite real number (int or float, not bool) for which ``ok(value)`` holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{name}={short(value)}: give {valid}")


def check_guidance_scale(value: Any) -> float:
    """``guidance_scale``: a finite number >= 0 (1 = off, the conditional model as trained; above 1 follows the
    control tokens more strongly; 0 ignores them). Returned as a float."""
    check_real("guidance_scale", value, "a number of 0 or more, e.g. 2 (1.0 = no guidance: the model as trained; "
               "above 1 follows the conditions more strongly)", lambda v: v >= 0)
    return float(value)


# The theory prior's strength when a call gives none and the model has theory profiles: measured on the quickstart
# model (benchmarks/results/adherence.json), 1 lifts key adherence from 48 % to 90 % (real tunes: 81 %) with the
# overlap with real tunes as good as without it; 2 sharpens past the corpus (overlap 0.85, fewer ornaments). With
# the melody and opening priors (benchmarks/results/adherence_opening_144.json, 144 tunes) 1.25 brings the key
# signature to the real tunes' rate (92.4 % against 92.7 %; 90.3 % at 1) for 0.012 of overlap (0.912 against 0.924).
DEFAULT_THEORY_PRIOR = 1.25


def check_theory_prior(value: Any, name: str = "theory_prior") -> float:
    """``theory_prior`` / ``rhythm_prior`` / ``interval_prior``: a finite number >= 0, the strength of a prior
    (``abcgen.grammar.tonality``, ``abcgen.grammar.melody``): 0 = off, 1 = the corpus's profile as it is, 2 = twice as sharp."""
    what = {"theory_prior": "pitches; 1 weighs each note by the corpus's profile of the requested mode",
            "rhythm_prior": "note lengths; 1 weighs each note by how much more often the requested rhythm writes its "
                            "length than every rhythm",
            "interval_prior": "melodic steps; 1 weighs each note by how much more often the requested rhythm takes "
                              "its step than tunes at large",
            "opening_prior": "first bar; 1 weighs each note of the opening by how much more of the corpus's "
                             "openings its scale degree takes than of whole tunes"}.get(name, "choices")
    check_real(name, value, f"a strength of 0 or more, e.g. 1 (0 = off: the model's own {what})", lambda v: v >= 0)
    return float(value)


# The interval prior's strength when a call gives none, for a model whose theory_profiles.json has interval
# profiles and a request with a rhythm that has one of its own (abcgen.grammar.melody: the bonus is the log ratio of
# the rhythm's melodic steps to every tune's, a naive-Bayes rhythm classifier's evidence). Measured on the quickstart
# model with the theory prior and unison penalty at 1 (benchmarks/results/adherence_interval.json).
DEFAULT_INTERVAL_PRIOR = 1.5
# The rhythm prior's strength when a call gives none, for a model whose theory_profiles.json has length profiles
# (abcgen.grammar.melody: the log ratio of the rhythm's written lengths after the length before, as shares of the bar,
# and of its broken-rhythm signs, to every tune's). Measured beside the interval prior, same file.
DEFAULT_RHYTHM_PRIOR = 2.0
# The opening prior's strength when a call gives none, for a model whose theory_profiles.json has opening profiles
# (abcgen.grammar.tonality.opening_bonus: the log ratio of the mode's openings' pitch-class profile to its whole
# tunes', added to the theory prior in the pickup and first bar). Measured on the quickstart model
# (benchmarks/results/adherence_opening_144.json).
DEFAULT_OPENING_PRIOR = 1.0

# The unison penalty when a call gives none (constrained decoding; ``abcgen.grammar.melody`` says why repeated
# notes need one). Measured on the quickstart model with the theory prior at 1 (benchmarks/results/adherence.json):
# 1 takes repeated notes from 28 % of melodic steps to 12 % (the training tunes: 5-12 % by dance) with the overlap
# with real tunes as good; 2 takes them to 6 %, past the corpus, and the steps saved go to leaps of a fourth.
DEFAULT_UNISON_PENALTY = 1.0


def default_unison_penalty(constrained: bool = True) -> float:
    """The unison penalty of a call that gives none: ``DEFAULT_UNISON_PENALTY`` under constrained decoding (the
    grammar applies it), else 0."""
    return DEFAULT_UNISON_PENALTY if constrained else 0.0


def check_unison_penalty(value: Any) -> float:
    """``unison_penalty``: a finite number >= 0, the logits taken off a note that repeats the melody note
    before it (``abcgen.grammar.melody``). Returned as a float."""
    check_real("unison_penalty", value, "a penalty of 0 or more in logits, e.g. 1 (0 = off: the model's own "
               "repeated notes)", lambda v: v >= 0)
    return float(value)


def check_grammar_options(grammar: Any, cadence: Any, idioms: Any, endings: Any = None) -> dict[str, Any]:
    """The grammar options of a call, checked: ``{"grammar", "cadence", "idioms", "endings"}`` with ``endings``
    True/False or None (first and second endings in a ``form``'s repeated parts as often as the model's
    corpus writes them: drawn per call, seeded by the call's ``seed``), ``cadence``
    ``"forced"`` by default under ``grammar="idiom"`` and ``idioms`` a frozenset of names or None (the
    model's corpus decides). ``cadence`` and ``idioms`` are refused with the legacy grammar, which has
    neither."""
    if not isinstance(grammar, str) or grammar not in GRAMMARS:
        raise ConfigError(f"grammar={short(grammar)}: give 'legacy' (plain notes and bar lines) or 'idiom' (the folk "
                          "idiom: broken rhythm, triplets, ornaments, chords, beams, a cadence)")
    if grammar == "legacy":
        for name, value in (("cadence", cadence), ("idioms", idioms)):
            if value is not None:
                raise ConfigError(f"{name}={short(value)} needs grammar='idiom' (the legacy grammar has no "
                                  f"{name}): add grammar='idiom' or leave {name} out")
        return {"grammar": grammar, "cadence": None, "idioms": None, "endings": _endings(endings)}
    if cadence is None:
        cadence = "forced"
    if not isinstance(cadence, str) or cadence not in CADENCE_MODES:
        raise ConfigError(f"cadence={short(cadence)}: give 'forced' (the tune ends on the tonic) or 'weighted' (a "
                          "bonus for ending there)")
    if idioms is not None:
        if isinstance(idioms, str) or not isinstance(idioms, Iterable):
            raise ConfigError(f"idioms={short(idioms)}: give a set of idiom names, e.g. {{'broken', 'tuplets'}} "
                              f"(idioms: {', '.join(IDIOMS)})")
        idioms = frozenset(idioms)
        unknown = sorted(str(name) for name in idioms if name not in IDIOMS)
        if unknown:
            raise ConfigError(f"idioms: {unknown[0]!r} is not an idiom; give names from {', '.join(IDIOMS)}")
    return {"grammar": grammar, "cadence": cadence, "idioms": idioms, "endings": _endings(endings)}


def _endings(endings: Any) -> bool | None:
    if endings is not None and not isinstance(endings, bool):
        raise ConfigError(f"endings={short(endings)}: give True (first and second endings in a form's repeated "
                          "parts), False, or leave it out (where the model's corpus uses them)")
    return endings


def parse_idioms_option(text: str | None) -> frozenset[str] | None:
    """``--idioms broken,tuplets`` -> the names (``""`` -> no idiom at all); None -> None."""
    if text is None:
        return None
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def read_prompt(path: str | Path) -> str:
    """The text of a melody prompt file (``abcgen generate --prompt``); ``ConfigError`` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt file {str(path)!r} does not exist (or is not a file): give an ABC file with the "
                          "opening bars to continue")
    text, reason = read_text(path)
    if text is None:
        raise ConfigError(f"prompt file {str(path)!r} cannot be read ({reason}): give an ABC text file")
    return text


__all__ = ["DEFAULT_GRAMMAR", "DEFAULT_INTERVAL_PRIOR", "DEFAULT_OPENING_PRIOR", "DEFAULT_RHYTHM_PRIOR", "DEFAULT_THEORY_PRIOR", "GRAMMARS", "MAX_SEED", "check_grammar_options", "check_guidance_scale", "check_int",
           "check_real", "check_theory_prior", "parse_idioms_option", "read_prompt", "short"]
