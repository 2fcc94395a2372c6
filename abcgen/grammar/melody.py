"""Melodic motion while decoding: the unison penalty, the interval prior and the rhythm prior, all keyed on the
melody note before.

Small language models trained on folk tunes move unlike the tunes. The quickstart model writes a unison (the
same letter and octave as the note before) in about a quarter of its melodic steps, where the training tunes
have 5-12 % (reels 7.5 %, jigs 11.8 %, hornpipes 4.9 %), and it leaps a third or more where a reel runs
stepwise. Runs such as ``AAAA|GGG`` are what a player hears as a machine marking time, and both read as the
wrong dance to a style classifier (interval n-grams are most of its features); and it writes every dance
with the same lengths (broken rhythm in half of its reels, no more in its hornpipes). Three weightings of the
next note, added by ``AbcConstraint`` and kept to the notes' total probability by the logits processor
(``abcgen.grammar.processor.weigh``: they decide *which* note comes, not whether a note, a bar line or an
ornament does); nothing is masked:

- ``unison_penalty`` P (hand-set, logits): a note that repeats the melody note before it loses P logits.
- ``interval_prior`` (learned): the corpus's distribution of melodic steps for the requested rhythm,
  ``interval_profiles(rows)`` below. A step is counted on the staff, in diatonic steps between the written
  letters (``C``->``E`` is +2, ``B,``->``c`` is +2, an accidental does not change it: a step is a step in
  any key), clipped to +-``MAX_STEP`` (an octave and more). Per rhythm label the profile keeps the share of
  each first step and, per previous step, the shares of the step after it (second order: a run goes on in
  its direction, an arpeggio turns back), smoothed towards the first-order shares so a rare previous step
  borrows them. ``step_bonus(profile, strength)`` turns it into logit bonuses centred as the theory
  prior's (``abcgen.grammar.tonality``): a product of experts with the model, the model's distribution times
  ``p(step | previous step) ** strength``. The pipeline weighs by the ratio of the rhythm's profile to every
  tune's (``step_bonus(..., reference=pooled)``): the model knows the corpus's average motion already.
- ``rhythm_lengths`` (learned, the pipeline's ``rhythm_prior``): the same for note lengths, per rhythm *and
  meter* (a jig in 9/8 is not written like one in 6/8), against every tune of that meter: the written length
  of each melody note as a share of the bar after the written length of the one before
  (``length_profiles``), and the share of melody notes followed by a broken-rhythm sign (``A>B``: the
  dotted swing of a hornpipe, which written lengths do not show); ``length_bonus_tables`` turns the rhythm's
  profile against every tune's into bonuses (a broken-rhythm sign gets its bonus as a plain logit shift).

What counts, in the order the tune is written (bar lines and spaces in between do not break it):

- The melody note is the last plain note: grace notes (``{g}``) and the notes of a chord (``[DF]``) are
  not melody notes, and a chord or a rest leaves no melody note (the next note gets no bonus).
- A note after grace notes or a decoration (``A{B}A``, ``A~A``) is exempt: an ornamented repeated note is
  the idiom (a cut or a roll on a long note), not a machine marking time.
- Pitches compare by letter and octave; an accidental written on the same letter (``A^A``, rare in the
  corpus) counts as a repeat too -- a weighting, not a rule of ABC.
- A two-note token (``AB``) is weighed for its first note against the melody note before it, and for its
  second note against its first.

They depend on the notes before, which the grammar's cached decisions do not (their keys would multiply by
every pitch): ``MelodyPrior`` keeps one bonus vector per melody context (the previous pitch, the step that
reached it and its written length) and the constraint adds it to the cached decision's bonus.

Measured on the quickstart model (``benchmarks/results/adherence_melody_144.json``, 144 tunes): rhythm
adherence 45 % -> 75 % (by a durations-only judge 44 % -> 50 %), overlap with real tunes 0.916 -> 0.927, no
copies; the README's "Following the request" has the table and what the priors do not fix.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import torch

from abcgen.errors import ConfigError
from abcgen.grammar.errors import GrammarConfigError
from abcgen.grammar.vocabulary import BROKEN, CHORD_OPEN, COMPOSITE, NOTE, MusicVocabulary, _pitch_of

PitchKey = tuple[str, int]  # (letter upper case, octave): what a repeated note shares with the note before
# (melody pitch, the step that reached it, its written length as a share of the bar), None: no melody note
Context = tuple[PitchKey, int | None, Fraction | None] | None

MAX_STEP = 8  # steps are clipped to +-8 diatonic steps: "an octave and more" is one bucket each way
NUM_STEPS = 2 * MAX_STEP + 1  # index = step + MAX_STEP
MIN_INTERVAL_TUNES = 20  # a rhythm (in a meter, for lengths) with fewer tunes gets no profile of its own
POOLED = "all"  # the profile key of every tune of the corpus, whatever its rhythm
SMOOTHING = 20.0  # pseudo-counts of the first-order shares in each second-order row (a rare previous step)
_LETTERS = "CDEFGAB"

# what a token leaves as the melody note: a pitch, None (a rest, a chord), or _KEEP (the note before stays: bar
# lines, spaces, and what stands before a note -- slurs, tuplets, grace groups, chord symbols, decorations)
_KEEP = object()


def check_unison_penalty(value: Any, name: str = "unison_penalty") -> float:
    """A finite number >= 0 (logits), returned as a float; anything else is one ``GrammarConfigError`` line."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise GrammarConfigError(f"{name}={value!r}: give a penalty of 0 or more in logits, e.g. 1 (0 = off: the "
                                 "model's own repeated notes)")
    return float(value)


def diatonic_index(pitch: PitchKey) -> int:
    """The staff position of a (letter, octave) pitch: 7 per octave, ``C`` = 0, ``c`` = 7, ``C,`` = -7."""
    return 7 * pitch[1] + _LETTERS.index(pitch[0])


def clip_step(step: int) -> int:
    return max(-MAX_STEP, min(MAX_STEP, step))


# --- learning the interval profile from a corpus ------------------------------------------------------------------

def tune_steps(abc: str) -> list[tuple[int | None, int]] | None:
    """The melodic steps of one tune as (previous step or None, step) pairs, in diatonic steps clipped to
    +-``MAX_STEP`` (the rules of the module docstring: grace and chord notes are not melody notes, a rest or
    a chord breaks the line); None for a tune the parser rejects."""
    from abcgen.errors import AbcgenError
    from abcgen.notation import events as ev
    from abcgen.notation.tune import parse_tune

    try:
        events = parse_tune(abc).events()
    except AbcgenError:
        return None
    pairs: list[tuple[int | None, int]] = []
    last: int | None = None  # the melody note's staff position
    previous: int | None = None  # the step that reached it
    for event in events:
        if event.kind in (ev.REST, ev.CHORD):
            last = previous = None
        elif event.kind == ev.NOTE:
            pitch = _pitch_of(event.text)
            if pitch is None:
                last = previous = None
                continue
            here = diatonic_index((pitch[0], pitch[1]))
            if last is not None:
                step = clip_step(here - last)
                pairs.append((previous, step))
                previous = step
            last = here
    return pairs


def interval_profiles(rows: Iterable[tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
    """Per rhythm label of ``rows`` (``(abc, rhythm)`` pairs) and ``POOLED`` (every tune): ``{"tunes": n,
    "steps": NUM_STEPS shares of the steps, "after": NUM_STEPS rows, the shares of the step after each
    previous step}``. Steps are counted over notes (a long tune weighs more); the second-order rows are
    smoothed with ``SMOOTHING`` pseudo-counts of the first-order shares, so every row sums to 1."""
    firsts: dict[str, Counter[int]] = defaultdict(Counter)
    pairs: dict[str, Counter[tuple[int, int]]] = defaultdict(Counter)
    tunes: Counter[str] = Counter()
    for abc, rhythm in rows:
        steps = tune_steps(abc)
        if not steps:
            continue
        for label in (POOLED, rhythm) if rhythm else (POOLED,):
            tunes[label] += 1
            for previous, step in steps:
                firsts[label][step] += 1
                if previous is not None:
                    pairs[label][(previous, step)] += 1
    profiles: dict[str, dict[str, Any]] = {}
    for label in sorted(tunes):
        total = sum(firsts[label].values())
        shares = [firsts[label][s - MAX_STEP] / total for s in range(NUM_STEPS)]
        after = []
        for p in range(NUM_STEPS):
            counts = [pairs[label][(p - MAX_STEP, s - MAX_STEP)] for s in range(NUM_STEPS)]
            n = sum(counts)
            after.append([round((c + SMOOTHING * q) / (n + SMOOTHING), 6) for c, q in zip(counts, shares, strict=True)])
        profiles[label] = {"tunes": tunes[label], "steps": [round(q, 6) for q in shares], "after": after}
    return profiles


def profile_for_rhythm(profiles: Mapping[str, Mapping[str, Any]], rhythm: str | None) -> Mapping[str, Any] | None:
    """The interval profile for a request: the rhythm's own with ``MIN_INTERVAL_TUNES`` tunes, else the
    pooled one (None when the corpus had no readable tune at all)."""
    own = profiles.get(rhythm) if rhythm else None
    if own is not None and int(own["tunes"]) >= MIN_INTERVAL_TUNES:
        return own
    return profiles.get(POOLED)


def check_interval_profile(profile: Mapping[str, Any]) -> None:
    """One ``ConfigError`` line unless ``profile`` has NUM_STEPS non-negative ``steps`` and NUM_STEPS such rows in
    ``after``."""
    def ok(row: Any) -> bool:
        return isinstance(row, list | tuple) and len(row) == NUM_STEPS and sum(row) > 0 and all(
            isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in row)

    after = profile.get("after")
    if not ok(profile.get("steps")) or not isinstance(after, list | tuple) or len(after) != NUM_STEPS \
            or not all(ok(row) for row in after):
        raise ConfigError(f"interval profile with keys {sorted(profile)}: give 'steps' ({NUM_STEPS} shares, "
                          f"steps -{MAX_STEP}..+{MAX_STEP}) and 'after' ({NUM_STEPS} rows of {NUM_STEPS} shares); "
                          "rewrite it with `abcgen data profiles`")


StepBonus = tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]  # (first-order row, second-order rows)


def step_bonus(profile: Mapping[str, Any], strength: float,
               reference: Mapping[str, Any] | None = None) -> StepBonus:
    """The logit bonus per step of an interval profile at ``strength``: (bonus per step with no previous step
    known, per previous step the bonus per step). Each row is ``strength * log p`` centred as the theory
    prior's (``abcgen.grammar.tonality.centred_log``), or with a ``reference`` profile (the pooled one)
    ``strength * log(p / p_reference)`` centred (``centred_log_ratio``): only what the requested rhythm
    does more or less often than tunes at large, which the model has learned already."""
    from abcgen.grammar.tonality import centred_log, centred_log_ratio, check_strength

    check_strength(strength, "interval_prior")
    check_interval_profile(profile)
    if reference is None:
        first = tuple(centred_log(list(profile["steps"]), strength))
        after = tuple(tuple(centred_log(list(row), strength)) for row in profile["after"])
        return first, after
    check_interval_profile(reference)
    first = tuple(centred_log_ratio(list(profile["steps"]), list(reference["steps"]), strength))
    after = tuple(tuple(centred_log_ratio(list(row), list(ref), strength))
                  for row, ref in zip(profile["after"], reference["after"], strict=True))
    return first, after


_LENGTH_SUFFIX_RE = re.compile(r"[_^=]*[A-Ga-g][',]*(.*)")


def meter_label(meter: str | None) -> str | None:
    """The key a meter's length profiles are filed under: ``"6/8"``; ``C`` is ``4/4``, ``C|`` is ``2/2``; None
    for no meter or a free one."""
    text = (meter or "").strip().replace(" ", "")
    text = {"C": "4/4", "C|": "2/2"}.get(text, text)
    return text if re.fullmatch(r"[1-9][0-9]*/[1-9][0-9]*", text) else None


def length_profile_key(rhythm: str, meter: str | None) -> str | None:
    """``"jig|6/8"``: the key of a rhythm's (or ``POOLED``'s) length profile in one meter, None without a meter."""
    label = meter_label(meter)
    return None if label is None else f"{rhythm}|{label}"


def tune_lengths_in_order(abc: str) -> tuple[list[tuple[Fraction | None, Fraction]], int, str | None] | None:
    """The written lengths of one tune's melody notes (shares of its bar) as (previous length or None, length)
    pairs -- a rest or a chord breaks the line, grace notes are not melody notes --, how many of the notes a
    broken-rhythm sign follows, and the tune's ``M:`` text; None for a tune the parser rejects or without a
    meter."""
    from abcgen.errors import AbcgenError
    from abcgen.notation import events as ev
    from abcgen.notation.lexer import parse_duration
    from abcgen.notation.tune import parse_tune

    try:
        tune = parse_tune(abc)
        unit, bar, events, meter = tune.unit_length, tune.meter, tune.events(), tune.get("M")
    except AbcgenError:
        return None
    if not bar:  # free meter: no bar to measure against
        return None
    pairs: list[tuple[Fraction | None, Fraction]] = []
    last: Fraction | None = None
    broken = 0
    for event in events:
        if event.kind in (ev.REST, ev.CHORD):
            last = None
        elif event.kind == ev.BROKEN and last is not None:
            broken += 1
        elif event.kind == ev.NOTE:
            m = _LENGTH_SUFFIX_RE.fullmatch(event.text)
            if m is None:
                last = None
                continue
            length = parse_duration(m.group(1)) * unit / bar
            pairs.append((last, length))
            last = length
    return pairs, broken, meter


def length_profiles(rows: Iterable[tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
    """Per rhythm label of ``rows`` and ``POOLED``, in each meter (``length_profile_key``: ``"jig|6/8"``,
    ``"all|6/8"``): ``{"tunes": n, "lengths": {length: share}, "after":
    {previous length: {length: share}}, "broken": share of melody notes a broken-rhythm sign follows}``,
    lengths as text (``"3/16"``), counted over notes and smoothed as ``interval_profiles``."""
    firsts: dict[str, Counter[Fraction]] = defaultdict(Counter)
    pairs: dict[str, Counter[tuple[Fraction, Fraction]]] = defaultdict(Counter)
    broken: Counter[str] = Counter()
    tunes: Counter[str] = Counter()
    for abc, rhythm in rows:
        measured = tune_lengths_in_order(abc)
        if not measured or not measured[0]:
            continue
        lengths, signs, meter = measured
        for name in (POOLED, rhythm) if rhythm else (POOLED,):
            label = length_profile_key(name, meter)
            if label is None:
                continue
            tunes[label] += 1
            broken[label] += signs
            for previous, length in lengths:
                firsts[label][length] += 1
                if previous is not None:
                    pairs[label][(previous, length)] += 1
    profiles: dict[str, dict[str, Any]] = {}
    for label in sorted(tunes):
        total = sum(firsts[label].values())
        shares = {length: n / total for length, n in sorted(firsts[label].items())}
        after: dict[str, dict[str, float]] = {}
        for previous in shares:
            counts = {length: pairs[label][(previous, length)] for length in shares}
            n = sum(counts.values())
            after[str(previous)] = {str(length): round((c + SMOOTHING * shares[length]) / (n + SMOOTHING), 6)
                                    for length, c in counts.items()}
        profiles[label] = {"tunes": tunes[label], "lengths": {str(k): round(v, 6) for k, v in shares.items()},
                           "after": after, "broken": round(broken[label] / total, 6)}
    return profiles


def check_length_profile(profile: Mapping[str, Any]) -> None:
    """One ``ConfigError`` line unless ``profile`` is a ``length_profiles`` entry."""
    def ok(row: Any) -> bool:
        try:
            return isinstance(row, Mapping) and bool(row) and all(Fraction(k) > 0 for k in row) and all(
                isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in row.values()) \
                and sum(row.values()) > 0
        except (ValueError, ZeroDivisionError):
            return False

    after, broken = profile.get("after"), profile.get("broken")
    if not ok(profile.get("lengths")) or not isinstance(after, Mapping) or not all(
            ok(row) for row in after.values()) or not isinstance(broken, int | float) or not 0 <= broken < 1:
        raise ConfigError(f"length profile with keys {sorted(profile)}: give 'lengths' (shares per written length), "
                          "'after' (such shares per previous length) and 'broken' (a share below 1); rewrite it "
                          "with `abcgen data profiles`")


LengthRow = tuple[tuple[Fraction, float], ...]  # (length, bonus) pairs, the last at length 0: any other length
LengthBonus = tuple[LengthRow, tuple[tuple[Fraction, LengthRow], ...], float, float]
# (first-order row, per previous length its row, any other length's bonus, a broken-rhythm sign's bonus)


def length_bonus_tables(profile: Mapping[str, Any], reference: Mapping[str, Any], strength: float) -> LengthBonus:
    """The logit bonus of each written length (after each previous length) and of a broken-rhythm sign for
    ``profile`` against ``reference`` (the pooled profile) at ``strength``: ``strength * log(p / p_reference)``
    centred (``abcgen.grammar.tonality.centred_log_ratio``); a length neither writes gets the last slot's bonus."""
    from abcgen.grammar.tonality import centred_log_ratio, check_strength

    check_strength(strength, "rhythm_prior")
    check_length_profile(profile)
    check_length_profile(reference)
    keys = sorted({Fraction(k) for k in profile["lengths"]} | {Fraction(k) for k in reference["lengths"]})

    def row(mine: Mapping[str, float], theirs: Mapping[str, float]) -> LengthRow:
        values = centred_log_ratio([*(mine.get(str(k), 0.0) for k in keys), 0.0],
                                   [*(theirs.get(str(k), 0.0) for k in keys), 0.0], strength)
        return (*zip(keys, values[:-1], strict=True), (Fraction(0), values[-1]))

    first = row(profile["lengths"], reference["lengths"])
    after = tuple((k, row(profile["after"].get(str(k)) or profile["lengths"],
                          reference["after"].get(str(k)) or reference["lengths"])) for k in keys)
    p, q = max(float(profile["broken"]), 1e-3), max(float(reference["broken"]), 1e-3)
    broken = round(strength * (math.log(p) - math.log(q)), 6)
    return first, after, first[-1][1], broken


def _bonus_in(row: Sequence[tuple[Fraction, float]], length: Fraction) -> float:
    for known, bonus in row[:-1]:
        if known == length:
            return bonus
    return row[-1][1]


def measure_profiles(texts: Sequence[str], rhythms: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Every profile the decoding priors read (``theory_profiles.json``, ``abcgen.model_profiles``): ``{"modes",
    "rhythms", "intervals", "rhythm_lengths", "openings"}`` of training tunes ``texts`` with their rhythm labels (None: the
    corpus has no rhythm column; only the pooled entries are then written)."""
    from abcgen.grammar.tonality import mode_profiles, rhythm_profiles
    from abcgen.notation.piece import read_pieces

    labels = list(rhythms) if rhythms is not None else [None] * len(texts)
    pieces = read_pieces(list(texts))  # read once for the whole tunes' and the openings' pitch profiles
    return {"modes": mode_profiles(pieces),
            "rhythms": rhythm_profiles(zip(texts, labels, strict=True)) if rhythms is not None else {},
            "intervals": interval_profiles(zip(texts, labels, strict=True)),
            "rhythm_lengths": length_profiles(zip(texts, labels, strict=True)),
            "openings": mode_profiles(pieces, opening=True)}



# --- applying it while decoding ------------------------------------------------------------------------------------

class MelodyPrior:
    """Per melody context (``Context``), the logit bonus of every token of ``vocab`` (a float tensor of shape
    (V,)): ``-unison_penalty`` on a repeated note plus the ``steps`` bonus (``step_bonus``) of each note's
    step and the ``lengths`` bonus (``length_bonus_tables``) of each note's written length (token lengths are
    in units of ``unit_length``, the profiles' in shares of a bar of ``meter`` whole notes) and of a
    broken-rhythm sign."""

    def __init__(self, vocab: MusicVocabulary, unison_penalty: float = 0.0, steps: StepBonus | None = None,
                 lengths: LengthBonus | None = None, unit_length: Fraction = Fraction(1, 8),
                 meter: Fraction = Fraction(1)) -> None:
        self.penalty = float(unison_penalty)
        self.steps = steps
        self.lengths = lengths
        self._after_length = dict(lengths[1]) if lengths is not None else {}
        size = vocab.size
        # the token's notes as (pitch, written length as a share of the bar); pitch None: a rest
        self.notes: list[tuple[tuple[PitchKey | None, Fraction | None], ...]] = [()] * size
        self.leaves: list[Any] = [_KEEP] * size  # the melody note after the token
        self.leaves_step: list[int | None] = [None] * size  # the step of a two-note token's second note
        base = torch.zeros(size)  # what does not depend on the context: a broken-rhythm sign's bonus
        for i in range(size):
            parts = vocab.parts_of[i] if vocab.cls[i] == COMPOSITE else ((vocab.cls[i], None, vocab.texts[i]),)
            melody: Any = _KEEP
            notes: list[tuple[PitchKey | None, Fraction | None]] = []
            for cls, _value, text in parts:
                if cls == BROKEN and lengths is not None:
                    base[i] += lengths[3]
                if cls != NOTE:
                    if cls == CHORD_OPEN:
                        melody = None
                    continue
                melody = _pitch_key(vocab, i, text)  # a rest (None) leaves no melody note
                length = _written_length(text)
                notes.append((melody, None if length is None else length * unit_length / meter))
            self.notes[i], self.leaves[i] = tuple(notes), melody
            if len(notes) >= 2 and notes[-1][0] is not None and notes[-2][0] is not None:
                self.leaves_step[i] = clip_step(diatonic_index(notes[-1][0]) - diatonic_index(notes[-2][0]))
        self.noted = [i for i in range(size) if self.notes[i] and self.notes[i][0][0] is not None]
        self._base = base
        self._internal = self._chain(base.clone(), None)
        self._vectors: dict[Context, torch.Tensor] = {}

    def _chain(self, vector: torch.Tensor, context: Context) -> torch.Tensor:
        """Add to ``vector`` the weight of every note of every token after ``context`` (None: the first note of
        each token is not weighed, its later notes are)."""
        last, reached, last_length = context if context is not None else (None, None, None)
        first, after = self.steps if self.steps is not None else (None, None)
        for i in self.noted:
            before, step_before, length_before = last, reached, last_length
            total = 0.0
            for pitch, length in self.notes[i]:
                if pitch is None:
                    before = step_before = length_before = None
                    continue
                if before is not None:
                    step = clip_step(diatonic_index(pitch) - diatonic_index(before))
                    if step == 0:
                        total -= self.penalty
                    if first is not None and after is not None:
                        row = first if step_before is None else after[step_before + MAX_STEP]
                        total += row[step + MAX_STEP]
                    if self.lengths is not None and length is not None:
                        lengths = self._after_length.get(length_before, self.lengths[0]) \
                            if length_before is not None else self.lengths[0]
                        total += _bonus_in(lengths, length)
                    step_before = step
                before, length_before = pitch, length
            if total:
                vector[i] += total
        return vector

    def vector(self, context: Context) -> torch.Tensor:
        """The bonus of each token after melody context ``context`` (None: no melody note before, so only the
        notes inside a token are weighed), cached."""
        if context is None:
            return self._internal
        cached = self._vectors.get(context)
        if cached is None:
            cached = self._vectors[context] = self._chain(self._base.clone(), context)
        return cached

    def after(self, context: Context, token_id: int, melodic: bool) -> Context:
        """The melody context after ``token_id``; ``melodic`` False inside a grace group or a chord (their notes
        are not melody notes: a grace group keeps the note before, a chord leaves none)."""
        if not melodic or not 0 <= token_id < len(self.leaves):
            return context if not melodic else None
        leaves = self.leaves[token_id]
        if leaves is _KEEP:
            return context
        if leaves is None:
            return None
        notes = self.notes[token_id]
        length = notes[-1][1]
        if len(notes) >= 2:
            return leaves, self.leaves_step[token_id], length
        if context is None:
            return leaves, None, length
        return leaves, clip_step(diatonic_index(leaves) - diatonic_index(context[0])), length


def _written_length(text: str) -> Fraction | None:
    """A note token's written length in units of L (``A3/2`` -> 3/2), None where the text is not a note."""
    from abcgen.notation.lexer import parse_duration

    m = _LENGTH_SUFFIX_RE.fullmatch(text.strip())
    return None if m is None else parse_duration(m.group(1))


def _pitch_key(vocab: MusicVocabulary, token_id: int, text: str) -> PitchKey | None:
    pitch = vocab.pitches[token_id] if vocab.cls[token_id] == NOTE else _pitch_of(text)
    return None if pitch is None else (pitch[0], pitch[1])


__all__ = ["MAX_STEP", "MIN_INTERVAL_TUNES", "NUM_STEPS", "POOLED", "Context", "LengthBonus", "MelodyPrior",
           "PitchKey", "check_interval_profile", "check_length_profile", "check_unison_penalty", "diatonic_index", "measure_profiles",
           "interval_profiles", "length_bonus_tables", "length_profile_key", "length_profiles", "meter_label",
           "profile_for_rhythm", "step_bonus",
           "tune_lengths_in_order", "tune_steps"]
