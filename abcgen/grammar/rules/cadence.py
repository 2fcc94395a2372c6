"""Cadences: the tune (and, with ``cadence_sections``, each ``form`` section) ends on the tonic of the
``K:`` key and mode -- or on another scale degree (``cadence_degree``: 5 for the dominant).

The cadence note is the scale degree's letter with the accidental the key signature gives it, written
with no accidental or with that one explicitly (``D``, ``d``, ``=D`` in ``K:D``; ``B``, ``_B`` in
``K:Bb``), in any octave. ``cadence="forced"``: in a cadence bar -- the last bar with ``num_bars``, and
each section's last bar -- the note that fills the bar must be the cadence note, every note must leave
a remainder that can end on it (``Timing.ending_with``), the cadence letter takes no other accidental
in that bar (so the plain letter keeps its meaning), and the bar is written in plain notes (no tuplet,
broken rhythm, chord or tie: grace notes, decorations, chord symbols and slurs are fine). Without
``num_bars`` the tune may only end (``|]``, or EOS after ``:|``) after a bar whose last note is the
cadence note, and the cadence letter takes no other accidental anywhere. ``cadence="weighted"``: nothing
is masked; the cadence note that fills a cadence bar (any bar without ``num_bars``) gets a logit bonus
of ``cadence_weight`` over the other notes (the notes keep their total probability: ``processor.weigh``).
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.errors import AbcParseError
from abcgen.grammar.errors import GrammarConfigError
from abcgen.grammar.rules.base import PASS, REFUSE, Rule
from abcgen.grammar.state import E1, INF, State
from abcgen.grammar.vocabulary import BAR, BROKEN, CHORD_OPEN, EOS, NOTE, TIE, TUPLET, Unit
from abcgen.notation.keys import LETTERS, parse_key

CADENCE_MODES = ("forced", "weighted")
_ACCIDENTAL = {2: "^^", 1: "^", 0: "=", -1: "_", -2: "__"}


def check_cadence(mode: str, degree: int, weight: float) -> None:
    if mode not in CADENCE_MODES:
        raise GrammarConfigError(f"cadence={mode!r}: give 'forced' (mask) or 'weighted' (a logit bonus)")
    if not 1 <= degree <= 7:
        raise GrammarConfigError(f"cadence_degree={degree}: give a scale degree from 1 (tonic) to 7")
    if weight < 0:
        raise GrammarConfigError(f"cadence_weight={weight}: give a bonus of 0 or more")


def cadence_pitch(key_text: str, degree: int) -> tuple[str, frozenset[str]]:
    """The cadence letter of a ``K:`` value and the accidentals it may be written with."""
    key = parse_key(key_text)
    tonic = key.tonic[0] if key.tonic else "C"
    letter = LETTERS[(LETTERS.index(tonic) + degree - 1) % 7]
    return letter, frozenset({"", _ACCIDENTAL[key.accidentals()[letter]]})


class CadenceRule(Rule):
    name = "cadence"
    classes = frozenset({NOTE, BAR, EOS, TUPLET, BROKEN, CHORD_OPEN, TIE})
    pitched = True

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        settings = g.settings
        try:
            self.letter, self.accidentals = cadence_pitch(settings.key or "C", settings.cadence_degree)
        except AbcParseError as exc:
            raise GrammarConfigError(f"key={settings.key!r}: {exc.reason}") from exc
        self.forced = settings.cadence == "forced"
        self.weight_value = settings.cadence_weight
        self.dur_steps, self.fill, self.bar_steps = g.dur_steps, g.fill, g.bar_steps
        ends = {g.dur_steps[u.dur] for u in g.units if u.cls == NOTE and self.is_cadence(u)}
        self.end = g.timing.ending_with(ends)
        self.bar_extra = self.end[g.bar_steps] - self.fill[g.bar_steps]
        if self.end[g.bar_steps] >= INF:
            raise GrammarConfigError(f"cadence: no single-token {self.letter} of the lengths that end a bar of "
                                     f"M={g.meter} at L={g.unit_length}; use cadence='weighted' or leave the rule out")
        bars: set[int] = set()
        if g.num_bars is not None:
            bars.add(g.num_bars)
            if settings.cadence_sections and g.form:
                from abcgen.grammar.rules.forced import parse_form

                bars.update(section.end_bar for section in parse_form(g.form, g.num_bars, settings.endings))
        self.bars = bars
        top = (g.num_bars or 0) + 2
        self.after = [sum(1 for b in bars if b >= first) for first in range(top + 1)]  # cadence bars >= first

    def is_cadence(self, unit: Unit) -> bool:
        return not unit.rest and unit.pitch is not None and unit.pitch[0] == self.letter \
            and unit.pitch[2] in self.accidentals

    def in_cadence_bar(self, s: State) -> bool:
        return not s.in_pickup and s.bars_done + 1 in self.bars

    def step(self, s: State, ns: State, unit: Unit) -> int:
        c = unit.cls
        if c == NOTE:
            pitch = unit.pitch
            wrong = pitch is not None and pitch[0] == self.letter and pitch[2] not in self.accidentals
            free = self.g.num_bars is None
            if not self.forced or not (free or self.in_cadence_bar(s)):
                return PASS
            if wrong:  # grace and chord notes too: an accidental holds for the rest of the bar
                return REFUSE
            if s.grace or s.chord >= 2:
                return PASS
            ns.tonic_end = not ns.room and self.is_cadence(unit)
            if free:
                return PASS
            if (not ns.room and not ns.tonic_end) or (ns.room and self.end[ns.room] >= INF):
                return REFUSE
            return PASS
        if not self.forced:
            return PASS
        if self.g.num_bars is None:
            if (c == EOS or (c == BAR and unit.kind == "|]")) and not s.tonic_end:
                return REFUSE
            if c == BAR and not s.room:
                ns.can_end = ns.can_end and s.tonic_end
            return PASS
        return REFUSE if c in (TUPLET, BROKEN, CHORD_OPEN, TIE) and self.in_cadence_bar(s) else PASS

    def finish_cost(self, s: State) -> int:
        if not self.forced:
            return 0
        if self.g.num_bars is None:
            if s.repeat == E1 or s.in_pickup:  # the bar still to come ends the tune
                return self.bar_extra
            if not s.room:
                return 0 if s.tonic_end else 1 + self.end[self.bar_steps]
            plain = not (s.scaled or s.chord or s.grace or s.tie is not None)
            this_bar = self.end[s.room] - self.fill[s.room] if plain else INF
            return min(this_bar, 1 + self.end[self.bar_steps])
        here = self.in_cadence_bar(s)
        current = 0 if s.in_pickup else s.bars_done + 1
        extra = self.end[s.room] - self.fill[s.room] if here and s.room else 0
        return extra + self.after[current + 1] * self.bar_extra

    def weight(self, s: State, unit: Unit) -> float:
        if self.forced or unit.cls != NOTE or s.grace or s.chord >= 2 or not self.is_cadence(unit):
            return 0.0
        if self.g.num_bars is not None and not self.in_cadence_bar(s):
            return 0.0
        num, den = s.scale if s.scaled else (1, 1)
        return self.weight_value if self.dur_steps[unit.dur] * num == s.room * den else 0.0

    def key(self, s: State) -> Hashable:
        if self.g.num_bars is None:
            plain = not (s.scaled or s.chord or s.grace or s.tie is not None)
            return s.tonic_end, s.repeat == E1, plain
        following = 1 if s.in_pickup else s.bars_done + 2
        return self.in_cadence_bar(s), following in self.bars
