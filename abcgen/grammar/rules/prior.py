"""The theory prior as a weighted rule: every note gets the logit bonus of its scale degree in the requested key
(``pitch_prior``) and of its written length in the requested rhythm (``length_prior``).

``AbcConstraint(pitch_prior=...)`` gives 12 bonuses, one per semitone above the tonic of the ``K:`` key, and
``length_prior=...`` a table of (written length in whole notes, bonus) pairs whose last entry (length 0) is
the bonus of any other length; ``abcgen.grammar.tonality`` makes both from the training corpus's profiles
and a strength. Nothing is masked: the rule only weighs the notes the other rules allow, so every tune
stays as valid as without it, and the logits processor keeps the notes' total probability (``weigh``): the
prior decides which note, not whether a note, a bar line or an ornament comes next.

A note's pitch class is its letter with its written accidental, or with the key signature's when none is
written; an accidental written earlier in the same bar is not carried (a plain ``c`` after ``^c`` counts as
the signature's c -- rare in the folk corpus, and only a weighting). Its length is the written one
(``A3`` at ``L:1/16`` is 3/16), as the profiles count it. Rests, and the notes inside a grace group, get no
bonus: a grace note takes no time, and the prior is about where a tune spends its time. A two-note token
(``AB``) gets the sum of its notes' bonuses.
"""

from __future__ import annotations

from abcgen.errors import AbcParseError
from abcgen.grammar.errors import GrammarConfigError
from abcgen.grammar.rules.base import Rule
from abcgen.grammar.state import State
from abcgen.grammar.tonality import bonus_for_length
from abcgen.grammar.vocabulary import NOTE, Unit
from abcgen.notation.keys import NATURAL_SEMITONES, parse_key

_ACCIDENTAL_SEMITONES = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}


class TheoryPriorRule(Rule):
    name = "prior"
    pitched = True

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        settings = g.settings
        self.pitch = settings.pitch_prior
        self.lengths = settings.length_prior
        if self.pitch is not None:
            if len(self.pitch) != 12:
                raise GrammarConfigError(f"pitch_prior={self.pitch!r}: give 12 logit bonuses, one per semitone "
                                         "above the tonic")
            try:
                key = parse_key(settings.key or "")
            except AbcParseError as exc:
                raise GrammarConfigError(f"key={settings.key!r}: {exc.reason}") from exc
            if not key.tonic:
                raise GrammarConfigError(f"key={settings.key!r}: the theory prior needs a key with a tonic, e.g. 'D'")
            self.tonic, self.signature = key.tonic_semitone(), key.accidentals()
        if self.lengths is not None and (not self.lengths or self.lengths[-1][0] != 0):
            raise GrammarConfigError(f"length_prior={self.lengths!r}: give (length, bonus) pairs ending with the "
                                     "bonus of any other length at length 0 (abcgen.grammar.tonality.length_bonus)")
        self.durations, self.unit_length = g.vocab.durations, g.unit_length
        # the bonus depends on the unit alone: one number per unit, computed once
        self.bonus = {id(u): self._unit_bonus(u) for u in g.units}

    def _note_bonus(self, unit: Unit) -> float:
        if unit.cls != NOTE or unit.rest:
            return 0.0
        bonus = 0.0
        if self.pitch is not None and unit.pitch is not None:
            letter, _octave, written = unit.pitch
            alter = _ACCIDENTAL_SEMITONES[written] if written else self.signature[letter]
            bonus += self.pitch[(NATURAL_SEMITONES[letter] + alter - self.tonic) % 12]
        if self.lengths is not None:
            bonus += bonus_for_length(self.lengths, self.durations[unit.dur] * self.unit_length)
        return bonus

    def _unit_bonus(self, unit: Unit) -> float:
        if unit.parts:
            return sum(self._note_bonus(part) for part in unit.parts)
        return self._note_bonus(unit)

    def weight(self, s: State, unit: Unit) -> float:
        if s.grace:
            return 0.0
        bonus = self.bonus.get(id(unit))
        return self._unit_bonus(unit) if bonus is None else bonus

    def key(self, s: State) -> bool:
        return bool(s.grace)


__all__ = ["TheoryPriorRule"]
