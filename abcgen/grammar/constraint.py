"""The engine: one compiled ``Grammar`` per vocabulary and settings (rules bound, masks cached), and the
``AbcConstraint`` that walks one tune body through it.

For a state, every candidate ``Unit`` of the vocabulary is put to the enabled rules in order
(``Rule.step``): refused by one, or offered by none, it is out; otherwise the rules have written the next
state, and the unit's *cost* is its token plus what it adds to the fewest tokens that finish the tune
(``min_finish``, the sum of the rules' ``finish_cost``). The budget rule keeps the units whose cost fits
the slack (tokens left beyond the fewest needed). So a state's allowed set depends only on its *key*
(what the rules' ``key`` report) and on the slack, capped at the dearest unit's cost: the table of
(cost, mask) per key and the mask per (key, capped slack) are built once and shared by every constraint
with the same settings. A step costs a few dictionary look-ups per row.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from abcgen.errors import AbcParseError
from abcgen.grammar.errors import (
    BarTemplateError,
    ConstraintViolation,
    FormError,
    GrammarConfigError,
    UnknownRuleError,
)
from abcgen.grammar.idioms import idioms_from_shares
from abcgen.grammar.melody import Context, LengthBonus, MelodyPrior, StepBonus, check_unison_penalty
from abcgen.grammar.recurrence import recurrence_plan
from abcgen.grammar.rules import (
    CORE,
    DEFAULT_RULES,
    IDIOMS,
    OFFER,
    OPTIONAL,
    REFUSE,
    RULES,
    BudgetRule,
    Rule,
)
from abcgen.grammar.rules.budget import check_budget_value
from abcgen.grammar.rules.cadence import check_cadence
from abcgen.grammar.state import INF, LAST_AFTER, State
from abcgen.grammar.timing import Timing, beam_length, beat_length, is_compound, meter_parts
from abcgen.grammar.vocabulary import BAR, COMPOSITE, NEWLINE, SPACE, MusicVocabulary, Unit, music_vocabulary
from abcgen.notation.keys import parse_key
from abcgen.notation.lexer import parse_fraction

_MAX_CACHED = 20_000  # cached masks per settings before the cache is emptied
_FINISHED, _CLOSED = ("finished",), ("closed",)


@dataclass(frozen=True, slots=True)
class Decision:
    mask: torch.Tensor  # bool over the tokenizer's vocabulary
    allowed: frozenset[int]
    bonus: torch.Tensor | None = None  # float logit bonus over the vocabulary (weighted rules), None: none


@dataclass(frozen=True, slots=True)
class Settings:
    """What a grammar is compiled for (checked by ``AbcConstraint``)."""

    meter: Fraction
    unit_length: Fraction
    pickup: Fraction
    num_bars: int | None
    form: str | None
    open_repeat: bool
    bar_lines: tuple[str, ...] | None
    rules: tuple[str, ...]
    meter_text: str | None = None  # the written meter (6/8 vs 3/4: beats and beams)
    key: str | None = None  # the K: value, for the rules that read it (cadence)
    cadence: str = "forced"  # "forced" (mask) or "weighted" (a logit bonus)
    cadence_degree: int = 1  # the scale degree the tune (and each section) ends on
    cadence_sections: bool = False  # also the last note of each form section
    cadence_weight: float = 4.0  # the bonus of a cadence note in "weighted" mode
    endings: bool = False  # form: repeated sections end with first and second endings
    pitch_prior: tuple[float, ...] | None = None  # theory prior: a note's bonus per semitone above the tonic
    opening_prior: tuple[float, ...] | None = None  # and in the opening (pickup and first bar), added to it
    length_prior: tuple[tuple[Fraction, float], ...] | None = None  # and per written length (whole notes)
    unison_penalty: float = 0.0  # logits off a note that repeats the melody note before it (abcgen.grammar.melody)
    interval_prior: StepBonus | None = None  # bonus per melodic step, after each previous step (step_bonus)
    rhythm_lengths: LengthBonus | None = None  # bonus per written length after each length (length_bonus_tables)


def rule_names(rules: Iterable[str] | None, form: str | None, bar_lines: Sequence[str] | None,
               idioms: Iterable[str] | None = None, vocab: MusicVocabulary | None = None) -> tuple[str, ...]:
    """The enabled rules, in the order they are asked: the core, the structure (``form``, ``template`` or
    ``repeats``), then the optional rules switched on. ``idioms`` (names of ``IDIOMS``, or None: all)
    keeps only those idiom rules; an idiom rule whose tokens ``vocab`` lacks is left out; ``beams``
    replaces ``layout``; ``order`` (the order of what stands before a note) comes with any idiom rule."""
    optional = tuple(DEFAULT_RULES if rules is None else rules)
    unknown = [name for name in optional if name not in OPTIONAL]
    if unknown:
        raise UnknownRuleError(f"rules={list(optional)!r}: {unknown[0]!r} is not a switchable grammar rule "
                               f"(switchable: {', '.join(OPTIONAL)}; always on: {', '.join(CORE)})")
    kept = None if idioms is None else set(idioms)
    if kept is not None and kept - set(IDIOMS):
        raise UnknownRuleError(f"idioms={sorted(kept)!r}: {sorted(kept - set(IDIOMS))[0]!r} is not an idiom "
                               f"(idioms: {', '.join(IDIOMS)})")
    structure = "form" if form else "template" if bar_lines is not None else None
    chosen = []
    for name in OPTIONAL:
        if name not in optional or (structure and name == "repeats") or (name == "layout" and "beams" in optional):
            continue
        if name in IDIOMS and ((kept is not None and name not in kept)
                               or (vocab is not None and not RULES[name].needs <= vocab.idiom_classes)):
            continue
        chosen.append(name)
    order = ("order",) if any(name in IDIOMS for name in chosen) else ()
    return ("bar_length", *((structure,) if structure else ()), "end", *order, *chosen)


class Grammar:
    """The rules bound to one vocabulary and one ``Settings``, with the grid every length is counted on
    and the mask caches (``cache``: decisions and device masks by key; ``tables``: per state key, the
    (cost, mask) of each allowed unit and the dearest cost)."""

    def __init__(self, vocab: MusicVocabulary, settings: Settings) -> None:
        self.vocab, self.settings = vocab, settings
        self.meter, self.unit_length, self.pickup = settings.meter, settings.unit_length, settings.pickup
        self.num_bars, self.form, self.open_repeat = settings.num_bars, settings.form, settings.open_repeat
        self.bar_lines = settings.bar_lines
        self.meter_parts = meter_parts(self.meter, settings.meter_text)
        self.compound = is_compound(*self.meter_parts)
        self.beat, self.beam = beat_length(*self.meter_parts), beam_length(*self.meter_parts)
        kinds = [RULES[name] for name in settings.rules]
        bar_units, pickup_units = self.meter / self.unit_length, self.pickup / self.unit_length
        self.usable_durations = [d for d in vocab.durations if d <= bar_units]
        lengths = [length / self.unit_length for kind in kinds for length in kind.grid_lengths(self)]
        denominator = math.lcm(bar_units.denominator, pickup_units.denominator,
                               *(d.denominator for d in self.usable_durations), *(x.denominator for x in lengths))
        denominator *= math.lcm(1, *(kind.grid_factor(self) for kind in kinds))
        self.step = Fraction(1, denominator)  # the grid every length is a whole number of, in L: units
        self.bar_steps = int(bar_units * denominator)
        self.pickup_steps = int(pickup_units * denominator)
        self.beat_steps = int(self.beat / self.unit_length * denominator)
        self.dur_steps = [int(d * denominator) if d <= bar_units else INF for d in vocab.durations]
        beams = "beams" in settings.rules
        self.timing = Timing(self.dur_steps, self.bar_steps,
                             int(self.beam / self.unit_length * denominator) if beams else 0)
        self.fill = self.timing.fill
        self.full_cost = self.fill[self.bar_steps]
        pitched = any(kind.pitched for kind in kinds)
        self.units = vocab.pitched_units if pitched else vocab.units
        self.unit_of = vocab.pitched_unit_of if pitched else vocab.unit_of
        self.rules: list[Rule] = []
        for name in settings.rules:
            rule = RULES[name]()
            rule.bind(self)
            self.rules.append(rule)
        self.budget = next((r for r in self.rules if isinstance(r, BudgetRule)), None)
        classes = {u.cls for u in self.units} | {p.cls for u in self.units for p in u.parts}
        self._steps = {c: [r.step for r in self.rules if c in r.classes] for c in classes}
        self._costs = [r.finish_cost for r in self.rules if type(r).finish_cost is not Rule.finish_cost]
        self._keys = [r.key for r in self.rules if type(r).key is not Rule.key]
        self._weights = [r.weight for r in self.rules if type(r).weight is not Rule.weight]
        self.melody = MelodyPrior(vocab, settings.unison_penalty, settings.interval_prior, settings.rhythm_lengths,
                                  settings.unit_length, settings.meter) \
            if settings.unison_penalty or settings.interval_prior is not None or settings.rhythm_lengths is not None \
            else None
        self.cache: dict[Hashable, Any] = {}
        self.tables: dict[Hashable, tuple[int, list[tuple[int, torch.Tensor, float]]]] = {}

    def start_state(self) -> State:
        s = State()
        for rule in self.rules:
            rule.start(s)
        return s

    def min_finish(self, s: State) -> int:
        """The fewest tokens that finish the tune from state ``s`` (EOS included)."""
        if s.finished:
            return 0
        if s.closed:
            return len(s.pending) + 1
        if s.can_end:
            return 1
        total = len(s.pending) + 1
        for cost in self._costs:
            total += cost(s)
        return total

    def next_state(self, s: State, unit: Unit) -> State | None:
        """The state after ``unit`` (one token) in a state without forced tokens, None when the rules do not
        allow it. A composite token is allowed when its parts are, in turn, with nothing forced between."""
        if unit.parts:
            ns: State | None = s
            for part in unit.parts:
                if ns is None or ns.pending or ns.closed:
                    return None
                ns = self._apply(ns, part)
        else:
            ns = self._apply(s, unit)
        if ns is not None:
            ns.generated = s.generated + 1
        return ns

    def _apply(self, s: State, unit: Unit) -> State | None:
        """The state after one unit (not counting the token)."""
        ns = s.copy()
        offered = False
        for step in self._steps.get(unit.cls, ()):
            verdict = step(s, ns, unit)
            if verdict == REFUSE:
                return None
            offered = offered or verdict == OFFER
        if not offered:
            return None
        last = LAST_AFTER[unit.cls]
        if last is not None:
            ns.last = last
        return ns

    def key(self, s: State, max_new_tokens: int) -> Hashable:
        """Everything the allowed set of ``s`` depends on: the rules' keys and the capped slack."""
        if s.finished:
            return _FINISHED
        if s.pending:
            return ("pending", s.pending[0])
        if s.closed:
            return _CLOSED
        rule_key = tuple([key(s) for key in self._keys])
        table = self.tables.get(rule_key)
        if table is None:
            table = self.tables[rule_key] = self._table(s)
        dearest = table[0]
        if self.budget is None:
            return rule_key, dearest
        return rule_key, min(max(max_new_tokens - s.generated - self.min_finish(s), 0), dearest)

    def _table(self, s: State) -> tuple[int, list[tuple[int, torch.Tensor, float]]]:
        """(cost, mask, logit bonus) of every unit the rules allow in ``s``, and the dearest cost."""
        base = self.min_finish(s)
        rows = []
        weights = self._weights
        for unit in self.units:
            ns = self.next_state(s, unit)
            if ns is not None:
                bonus = sum(weight(s, unit) for weight in weights) if weights else 0.0
                rows.append((self.min_finish(ns) + 1 - base, unit.mask, bonus))
        return max([row[0] for row in rows], default=0), rows

    def decide(self, s: State, key: Hashable) -> Decision:
        decision = self.cache.get(key)
        if decision is None:
            if len(self.cache) > _MAX_CACHED:  # a bound for huge vocabularies; states repeat, so rarely hit
                self.cache.clear()
                self.tables.clear()
            decision = self.cache[key] = self._build(s, key)
        return decision

    def _build(self, s: State, key: Hashable) -> Decision:
        v = self.vocab
        bonus: torch.Tensor | None = None
        if s.finished:
            mask = v.done.clone()
        elif s.pending:
            mask = torch.zeros(v.size, dtype=torch.bool)
            for text in s.pending[0]:
                mask |= v.bar_text_masks[text]
        elif s.closed:
            mask = v.eos.clone()
        else:
            rule_key, slack = key
            table = self.tables.get(rule_key) or self._table(s)
            mask = torch.zeros(v.size, dtype=torch.bool)
            for cost, unit_mask, weight in table[1]:
                if self.budget is None or self.budget.admits(cost, slack):
                    mask |= unit_mask
                    if weight:
                        if bonus is None:
                            bonus = torch.zeros(v.size)
                        bonus[unit_mask] += weight
        allowed = frozenset(mask.nonzero().flatten().tolist())
        if not allowed:
            raise ConstraintViolation(f"no token can continue the tune from state {s}; this is a bug")
        return Decision(mask=mask, allowed=allowed, bonus=bonus)


_GRAMMARS: dict[tuple[Any, ...], Grammar] = {}


def compiled_grammar(vocab: MusicVocabulary, settings: Settings) -> Grammar:
    """One ``Grammar`` (and so one mask cache) for all constraints with the same vocabulary and settings."""
    key = (id(vocab), vocab.size, settings)
    grammar = _GRAMMARS.get(key)
    if grammar is None or grammar.vocab is not vocab:
        grammar = Grammar(vocab, settings)
        if len(_GRAMMARS) > 256:
            _GRAMMARS.clear()
        _GRAMMARS[key] = grammar
    return grammar


def read_meter(meter: Fraction | str) -> Fraction:
    """The meter as a fraction of a whole note, from a ``Fraction`` or the written ``M:`` value."""
    if isinstance(meter, str):
        value = parse_fraction(meter)
        if value is None:
            raise GrammarConfigError(f"meter={meter!r}: give a meter such as '6/8', 'C' or Fraction(3, 4) (free "
                                     "meter cannot be generated bar by bar)")
        return value
    return Fraction(meter)


def check_settings(meter: Fraction, unit_length: Fraction, pickup: Fraction, key: str, num_bars: int | None,
                   max_new_tokens: int, form: str | None, open_repeat: bool,
                   bar_lines: tuple[str, ...] | None) -> int | None:
    """Refuse settings that contradict each other (before any work); returns ``num_bars`` (a bar template
    fixes it)."""
    if bar_lines is not None:
        if form or open_repeat:
            raise BarTemplateError("bar_lines (a bar template) already fixes the repeats and sections: it cannot be "
                                   "combined with form or open_repeat")
        template_bars = len(bar_lines) - 1 - (1 if pickup else 0)
        if template_bars < 1:
            raise BarTemplateError(f"bar_lines={list(bar_lines)!r}: give the opening bar line ('' for none), then "
                                   f"the bar line ending each bar{' (the pickup bar first)' if pickup else ''}")
        if num_bars is not None and num_bars != template_bars:
            raise BarTemplateError(f"num_bars={num_bars} but bar_lines holds {template_bars} full bars")
        num_bars = template_bars
    if meter <= 0 or unit_length <= 0:
        raise GrammarConfigError(f"meter={meter} and unit_length={unit_length} must be positive (free meter cannot "
                                 "be generated bar by bar)")
    if not 0 <= pickup < meter:
        raise GrammarConfigError(f"pickup={pickup} must be shorter than the bar ({meter} of a whole note)")
    if num_bars is not None and num_bars < 1:
        raise GrammarConfigError(f"num_bars={num_bars}: need at least one bar")
    check_budget_value(max_new_tokens)
    try:
        parse_key(key)
    except AbcParseError as exc:
        raise GrammarConfigError(f"key={key!r}: {exc.reason}") from exc
    if open_repeat and form:
        raise GrammarConfigError("open_repeat (a melody prompt that left a |: open) cannot be combined with form")
    if form and num_bars is None:
        raise FormError(f"form={form!r} needs a number of bars to split into sections")
    return num_bars


class AbcConstraint:
    """The state of one tune body being written, and the tokens it allows next.

    ``meter``, ``unit_length`` and ``pickup`` are in whole notes (``Fraction(3, 4)`` for 6/8 or 3/4,
    ``Fraction(1, 8)``); ``meter`` may be the written meter (``"6/8"``, ``"C|"``), which the beats of
    beams and chord symbols need (a ``Fraction`` 3/4 is read as 3/4; see ``abcgen.grammar.timing``);
    ``pickup`` 0 means no pickup bar. ``key`` is the ``K:`` value written in the prompt (the cadence rule
    ends the tune on its tonic, or on ``cadence_degree``). ``num_bars`` is the
    number of full bars to write (``None``: the model decides, within the budget); ``max_new_tokens`` the
    budget given to ``generate``; ``form`` e.g. ``"AABB"``; ``open_repeat``: the body continues a melody
    prompt that opened a ``|:`` it did not close (the model must close it); ``bar_lines``: a bar template
    (``num_bars`` may then be None); ``rules``: the switchable rules to enable (default
    ``DEFAULT_RULES``; ``LEGACY_RULES`` is the grammar without idioms; see ``abcgen.grammar.rules``);
    ``idioms``: the idiom rules to keep (names of ``IDIOMS``, e.g. those ``idioms_in_corpus`` finds in the
    training corpus; a mapping name -> share keeps those with a share of at least ``MIN_IDIOM_SHARE``;
    None: every idiom the tokenizer has tokens for); ``cadence``: ``"forced"`` (the last note is masked
    to the degree) or ``"weighted"`` (a logit bonus of ``cadence_weight``); ``cadence_sections``: also
    the last note of each ``form`` section; ``recurrence``: replay earlier bars where phrases and
    returning sections repeat them (``abcgen.grammar.recurrence``; ``variation``: a returning section gets a
    new cadence); ``endings``: with a ``form``, repeated sections end with first and second endings (one
    bar each; ``num_bars`` counts both); ``pitch_prior``: the theory prior, 12 logit bonuses per
    semitone above the key's tonic added to every note (``abcgen.grammar.tonality.prior_bonus``; the
    ``prior`` rule: nothing is masked); ``opening_prior``: 12 more bonuses added to the notes of the opening
    -- the pickup and the first full bar (``abcgen.grammar.tonality.opening_bonus``); ``length_prior``: the same per written note length
    (``length_bonus``: (length in whole notes, bonus) pairs, the last at length 0 for any other);
    ``unison_penalty``: logits taken off a note that repeats the melody note before it
    (``abcgen.grammar.melody``; 0 = off); ``interval_prior``: the bonus of each melodic step after the
    step before it (``abcgen.grammar.melody.step_bonus`` of the corpus's interval profile; None = off);
    ``rhythm_lengths``: the bonus of each written length after the one before and of a broken-rhythm sign
    (``abcgen.grammar.melody.length_bonus_tables``; None = off). Raises a ``GrammarConfigError`` (a ``ConfigError``)
    when the settings contradict each other, ``BudgetTooSmallError`` when the budget cannot hold the bars.

    Feed each generated token to ``advance``; ``allowed_mask()`` / ``allowed_ids()`` say what may come
    next. ``AbcLogitsProcessor`` does both for a batch.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        meter: Fraction,
        unit_length: Fraction,
        key: str,
        num_bars: int | None,
        max_new_tokens: int,
        pickup: Fraction = Fraction(0),
        form: str | None = None,
        open_repeat: bool = False,
        bar_lines: Sequence[str] | None = None,
        rules: Iterable[str] | None = None,
        idioms: Iterable[str] | Mapping[str, float] | None = None,
        cadence: str = "forced",
        cadence_degree: int = 1,
        cadence_sections: bool = False,
        cadence_weight: float = 4.0,
        recurrence: bool = False,
        variation: bool = True,
        endings: bool = False,
        pitch_prior: Sequence[float] | None = None,
        opening_prior: Sequence[float] | None = None,
        length_prior: Sequence[tuple[Fraction, float]] | None = None,
        unison_penalty: float = 0.0,
        interval_prior: StepBonus | None = None,
        rhythm_lengths: LengthBonus | None = None,
    ) -> None:
        meter_text = meter if isinstance(meter, str) else None
        meter = read_meter(meter)
        unit_length, pickup = Fraction(unit_length), Fraction(pickup or 0)
        if bar_lines is not None:
            bar_lines = tuple(str(text) for text in bar_lines)
        num_bars = check_settings(meter, unit_length, pickup, key, num_bars, max_new_tokens, form, open_repeat,
                                  bar_lines)
        check_cadence(cadence, cadence_degree, cadence_weight)
        unison_penalty = check_unison_penalty(unison_penalty)
        if isinstance(idioms, Mapping):
            idioms = idioms_from_shares(idioms)
        vocab = music_vocabulary(tokenizer)
        names = rule_names(rules, form, bar_lines, idioms, vocab)
        if pitch_prior is not None:
            pitch_prior = tuple(float(b) for b in pitch_prior)
        if opening_prior is not None:
            opening_prior = tuple(float(b) for b in opening_prior)
        if interval_prior is not None:  # hashable: the settings key the compiled grammar's cache
            first, after = interval_prior
            interval_prior = (tuple(float(b) for b in first), tuple(tuple(float(b) for b in row) for row in after))
        if rhythm_lengths is not None:
            def row(pairs: Iterable[tuple[Any, float]]) -> tuple[tuple[Fraction, float], ...]:
                return tuple((Fraction(length), float(b)) for length, b in pairs)

            first_lengths, after_lengths, other, broken = rhythm_lengths
            rhythm_lengths = (row(first_lengths), tuple((Fraction(k), row(r)) for k, r in after_lengths),
                              float(other), float(broken))
        if length_prior is not None:
            length_prior = tuple((Fraction(length), float(b)) for length, b in length_prior)
        if pitch_prior is not None or opening_prior is not None or length_prior is not None:
            names = (*names, "prior")
        cadence_on = "cadence" in names
        settings = Settings(meter=meter, unit_length=unit_length, pickup=pickup, num_bars=num_bars,
                            form=form or None, open_repeat=bool(open_repeat), bar_lines=bar_lines, rules=names,
                            meter_text=meter_text, key=key if cadence_on or pitch_prior is not None or opening_prior is not None else None, cadence=cadence,
                            cadence_degree=cadence_degree, cadence_sections=bool(cadence_sections) and cadence_on,
                            cadence_weight=float(cadence_weight), endings=bool(endings) and bool(form),
                            pitch_prior=pitch_prior, opening_prior=opening_prior, length_prior=length_prior, unison_penalty=unison_penalty,
                            interval_prior=interval_prior, rhythm_lengths=rhythm_lengths)
        self.grammar = compiled_grammar(vocab, settings)
        self.vocab = self.grammar.vocab
        self.key, self.max_new_tokens = key, max_new_tokens
        self.plan = recurrence_plan(num_bars, form or None, variation=variation,
                                    endings=bool(endings)) if recurrence else {}
        self.reset()
        if self.grammar.budget is not None:
            self.grammar.budget.check(max_new_tokens, self.min_tokens_to_finish())

    # the settings, as attributes
    meter = property(lambda self: self.grammar.meter)
    unit_length = property(lambda self: self.grammar.unit_length)
    pickup = property(lambda self: self.grammar.pickup)
    num_bars = property(lambda self: self.grammar.num_bars)
    form = property(lambda self: self.grammar.form)
    open_repeat = property(lambda self: self.grammar.open_repeat)
    bar_lines = property(lambda self: self.grammar.bar_lines)

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the enabled rules, in the order they are asked."""
        return self.grammar.settings.rules

    @property
    def _cache(self) -> dict[Hashable, Any]:
        """The mask cache shared by every constraint with these settings."""
        return self.grammar.cache

    def reset(self) -> None:
        """Back to the start of the body."""
        self.state = self.grammar.start_state()
        self.bar_ids: dict[int, list[int]] = {}  # full bar -> its tokens (no bar line), for ``recurrence``
        self.replay: list[int] = []  # tokens of an earlier bar still to replay in this one
        self.melody_context: Context = None  # the last melody note and its step (``abcgen.grammar.melody``)

    def copy(self) -> AbcConstraint:
        """A constraint in the same state that goes on independently (same settings and caches)."""
        twin = object.__new__(AbcConstraint)
        twin.__dict__.update(self.__dict__)
        twin.state = self.state.copy()
        twin.bar_ids = {bar: list(ids) for bar, ids in self.bar_ids.items()}
        twin.replay = list(self.replay)
        return twin

    def _forced(self, decision: Decision) -> int | None:
        """The replayed token to force now (``recurrence``), None when the model chooses. A replay the
        grammar refuses is dropped, except while only a space or line break may come (the bar has not
        started yet)."""
        if not self.replay:
            return None
        token_id = self.replay[0]
        if token_id in decision.allowed:
            return token_id
        if all(self.vocab.cls[i] in (SPACE, NEWLINE) for i in decision.allowed):
            return None
        self.replay = []
        return None

    def _record(self, token_id: int, before: State) -> None:
        """Keep the bar's tokens (``recurrence``) and start a replay where a new bar repeats an earlier one."""
        cls = self.vocab.cls[token_id]
        parts = self.vocab.parts_of[token_id] if cls == COMPOSITE else None
        has_bar = cls == BAR or bool(parts and any(p[0] == BAR for p in parts))
        bar = before.bars_done + 1
        if not has_bar and not before.in_pickup and not before.pending:
            ids = self.bar_ids.setdefault(bar, [])
            if ids or cls not in (SPACE, NEWLINE):
                ids.append(token_id)
        if self.replay and token_id == self.replay[0]:
            self.replay.pop(0)
        elif self.replay and cls not in (SPACE, NEWLINE):
            self.replay = []
        s = self.state
        if has_bar and s.room and not s.in_pickup and not s.closed:  # a new full bar starts
            source = self.plan.get(s.bars_done + 1)
            self.replay = list(self.bar_ids.get(source, ())) if source is not None else []

    @property
    def tokens_left(self) -> int:
        """Tokens that may still be generated (EOS included)."""
        return self.max_new_tokens - self.state.generated

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def bars_done(self) -> int:
        """Full bars completed so far (a pickup is not counted)."""
        return self.state.bars_done

    def min_tokens_to_finish(self) -> int:
        """The fewest tokens that finish the tune from where it stands."""
        return self.grammar.min_finish(self.state)

    def _key(self) -> Hashable:
        s = self.state
        if s.key is None:
            s.key = self.grammar.key(s, self.max_new_tokens)
        return s.key

    def _decide(self) -> Decision:
        return self.grammar.decide(self.state, self._key())

    def allowed_mask(self) -> torch.Tensor:
        """Boolean mask over the tokenizer's vocabulary of the tokens allowed next (CPU, do not modify)."""
        decision = self._decide()
        forced = self._forced(decision)
        if forced is None:
            return decision.mask
        mask = torch.zeros_like(decision.mask)
        mask[forced] = True
        return mask

    def allowed_ids(self) -> list[int]:
        """Sorted ids of the tokens allowed next."""
        decision = self._decide()
        forced = self._forced(decision)
        return [forced] if forced is not None else sorted(decision.allowed)

    def _melody_context(self) -> Context:
        """The melody context the next token's first note is weighed against (``abcgen.grammar.melody``), None
        where it is not a melody note that follows one (inside a grace group or a chord, a note ornamented by
        grace notes or a decoration, nothing before)."""
        s = self.state
        if (self.grammar.melody is None or s.pending or s.closed or s.finished or s.grace or s.chord
                or s.host):
            return None
        return self.melody_context

    def bonus(self) -> torch.Tensor | None:
        """The logit bonus of the tokens allowed next (weighted rules: cadence, theory prior; the unison
        penalty and interval prior), None when there is none."""
        bonus = self._decide().bonus
        melody = self.grammar.melody
        if melody is None or self.state.finished or self.state.pending or self.state.closed:
            return bonus
        weight = melody.vector(self._melody_context())
        return weight if bonus is None else bonus + weight

    def device_bonus(self, device: torch.device, width: int) -> torch.Tensor | None:
        """``bonus()`` on ``device``, padded with 0 to ``width``; None when there is none."""
        dkey = (self._key(), self._melody_context(), device, width, "bonus")
        cache = self.grammar.cache
        cached = cache.get(dkey)
        if cached is None:
            bonus = self.bonus()
            if bonus is None:
                return None
            if width > bonus.numel():
                bonus = torch.cat([bonus, torch.zeros(width - bonus.numel())])
            cached = cache[dkey] = bonus[:width].to(device)
        return cached

    def device_mask(self, device: torch.device, width: int, *, blocked: bool = False) -> torch.Tensor:
        """``allowed_mask()`` on ``device``, padded with False to ``width`` (the model's vocabulary size);
        ``blocked=True`` gives its complement (the tokens to mask). Cached per state, device and width."""
        cache = self.grammar.cache
        forced = self._forced(self._decide()) if self.replay else None
        dkey = (self._key(), device, width, blocked) if forced is None else ("replay", forced, device, width, blocked)
        cached = cache.get(dkey)
        if cached is None:
            mask = self.allowed_mask()
            if width > mask.numel():
                mask = torch.cat([mask, torch.zeros(width - mask.numel(), dtype=torch.bool)])
            mask = mask[:width]
            cached = cache[dkey] = (~mask if blocked else mask).to(device)
        return cached

    def advance(self, token_id: int) -> None:
        """Feed one generated token. Raises ``ConstraintViolation`` for a token that is not allowed."""
        s = self.state
        if s.finished:  # generate pads finished rows; nothing after EOS matters
            s.generated += 1
            return
        if token_id not in self._decide().allowed:
            text = self.vocab.texts[token_id] if 0 <= token_id < self.vocab.size else "?"
            raise ConstraintViolation(f"token {token_id} ({text!r}) is not allowed after {s}")
        before = s
        if s.pending:  # a forced bar-line token
            ns = s.copy()
            ns.pending, ns.last, ns.generated = s.pending[1:], "bar", s.generated + 1
        elif s.closed:  # EOS after the final bar line
            ns = s.copy()
            ns.finished, ns.generated = True, s.generated + 1
        else:
            next_state = self.grammar.next_state(s, self.grammar.units[self.grammar.unit_of[token_id]])
            assert next_state is not None  # allowed tokens have a transition
            ns = next_state
        self.state = ns
        if self.grammar.melody is not None:
            melodic = not before.grace and not before.chord and not before.pending
            self.melody_context = self.grammar.melody.after(self.melody_context, token_id, melodic)
        if self.plan:
            self._record(token_id, before)

    def feed(self, token_ids: Sequence[int]) -> None:
        """``advance`` each token in turn."""
        for token_id in token_ids:
            self.advance(int(token_id))


__all__ = ["AbcConstraint", "Decision", "Grammar", "Settings", "check_settings", "compiled_grammar", "read_meter",
           "rule_names"]
