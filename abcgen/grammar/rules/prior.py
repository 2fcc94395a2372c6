"""The theory prior as a weighted rule: every note gets the logit bonus of its scale degree in the requested key
(``pitch_prior``) and of its written length in the requested rhythm (``length_prior``); a note of the opening
(the pickup and the first full bar) also gets ``opening_prior``'s bonus of its scale degree.

``AbcConstraint(pitch_prior=...)`` gives 12 bonuses, one per semitone above the tonic of the ``K:`` key, and
``length_prior=...`` a table of (written length in whole notes, bonus) pairs whose last entry (length 0) is
the bonus of any other length; ``abcgen.grammar.tonality`` makes both from the training corpus's profiles
and a strength; ``opening_prior`` is 12 more bonuses, the log-ratio of how the corpus's openings and its whole
tunes spend their time per degree (``tonality.opening_bonus``: real tunes state their key in the first bar --
72 % of a major opening's time is on the tonic triad, 60 % of a whole tune's). Nothing is masked: the rule
only weighs the notes the other rules allow, so every tune stays as valid as without it, and the logits
processor keeps the notes' total probability (``weigh``): the prior decides which note, not whether a note, a
bar line or an ornament comes next.

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
        self.opening = settings.opening_prior
        self.lengths = settings.length_prior
        for name, table in (("pitch_prior", self.pitch), ("opening_prior", self.opening)):
            if table is not None and len(table) != 12:
                raise GrammarConfigError(f"{name}={table!r}: give 12 logit bonuses, one per semitone above the tonic")
        if self.pitch is not None or self.opening is not None:
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
        # the bonus depends on the unit and on whether the tune is in its opening: computed once per unit
        self.bonus = {id(u): self._unit_bonus(u, False) for u in g.units}
        self.opening_bonus = {id(u): self._unit_bonus(u, True) for u in g.units} if self.opening is not None \
            else self.bonus

    def _note_bonus(self, unit: Unit, opening: bool) -> float:
        if unit.cls != NOTE or unit.rest:
            return 0.0
        bonus = 0.0
        if unit.pitch is not None and (self.pitch is not None or (opening and self.opening is not None)):
            letter, _octave, written = unit.pitch
            alter = _ACCIDENTAL_SEMITONES[written] if written else self.signature[letter]
            degree = (NATURAL_SEMITONES[letter] + alter - self.tonic) % 12
            if self.pitch is not None:
                bonus += self.pitch[degree]
            if opening and self.opening is not None:
                bonus += self.opening[degree]
        if self.lengths is not None:
            bonus += bonus_for_length(self.lengths, self.durations[unit.dur] * self.unit_length)
        return bonus

    def _unit_bonus(self, unit: Unit, opening: bool) -> float:
        if unit.parts:
            return sum(self._note_bonus(part, opening) for part in unit.parts)
        return self._note_bonus(unit, opening)

    def in_opening(self, s: State) -> bool:
        """The pickup and the first full bar (``bars_done`` does not count the pickup), as
        ``tonality.opening_notes`` reads a real tune."""
        return self.opening is not None and (s.in_pickup or s.bars_done == 0)

    def weight(self, s: State, unit: Unit) -> float:
        if s.grace:
            return 0.0
        opening = self.in_opening(s)
        bonus = (self.opening_bonus if opening else self.bonus).get(id(unit))
        return self._unit_bonus(unit, opening) if bonus is None else bonus

    def key(self, s: State) -> tuple[bool, bool]:
        return bool(s.grace), self.in_opening(s)


__all__ = ["TheoryPriorRule"]
