"""A theory prior for decoding: how much of a tune each scale degree of its mode takes, and which note lengths
its dance writes, learned from a corpus.

``mode_profiles(texts)`` reads every tune, takes the duration-weighted pitch-class histogram of its notes
relative to the tonic of its ``K:`` (index 0 = the tonic, then each semitone above it), normalises it so
that every tune weighs the same whatever its length, and averages per mode. On O'Neill's and Ryan's a
major tune spends ~22 % of its time on the tonic, ~17 % on the fifth and under 0.5 % on the tritone: this
is the corpus's own answer to "what does D major sound like", the profile the Krumhansl-Schmuckler key
estimate compares a tune with (``abcgen.evaluation.keys``), but measured on the tunes the model learns.

``mode_profiles(texts, opening=True)`` does the same for each tune's opening -- its pickup and first full bar
(``opening_notes``): real tunes state their key there (a major opening spends 72 % of its time on the tonic
triad, the whole tune 60 %; 87 % of tunes start on a note of it). ``opening_bonus`` turns the two into the
``opening_prior``: ``strength * log(p_opening / p_tune)`` per degree, added to the theory prior in the opening
bars (so at equal strengths the opening is weighed by its own profile).

``profile_for(profiles, mode)`` is the profile of one requested mode. A mode with fewer than
``MIN_MODE_TUNES`` tunes (G mixolydian in a corpus of reels) borrows the major or minor profile of the
corpus, degree by degree of the mode's own scale: its 7 scale steps get the weights of the pooled
profile's 7 scale steps, and the 5 notes outside its scale the pooled profile's chromatic weights.

``prior_bonus(profile, strength)`` turns a profile into a logit bonus per semitone above the tonic:
``strength * (log p(degree) + H(p))``, centred so that its average under the profile is 0 -- notes of
the key gain, notes outside it lose, and notes as a whole are neither favoured over nor penalised against
bar lines, spaces and ornaments. Added to the model's logits it is a product of experts: the model's
distribution times ``p(degree) ** strength``. The grammar's ``prior`` rule adds it to every note
(``AbcConstraint(pitch_prior=...)``); ``strength`` 0 turns it off.

The same holds for rhythm: ``rhythm_profiles(rows)`` counts, per rhythm label (jig, reel, hornpipe), the
share of the notes written with each length in whole notes (``A3`` at ``L:1/16`` is 3/16; the written
length, as the grammar sees a token, not the one a broken rhythm or tuplet makes of it). The corpus's
hornpipes write ~49 % semiquavers and ~9 % dotted quavers, its reels ~57 % quavers, its jigs ~85 %
quavers: the style classifier hears exactly this difference. ``length_bonus(profile, strength)`` is the
bonus per written length, centred in the same way (a length the rhythm never writes gets the floor), for
``AbcConstraint(length_prior=...)``. The pipeline's ``rhythm_prior`` weighs lengths by a richer profile
(``abcgen.grammar.melody.length_profiles``: each length after the one before, as a share of the bar, and
broken-rhythm signs) against every tune's: the model has learned the corpus's average lengths already, and
weighing by the rhythm's own unigram shares counted them twice (every tune pushed towards quavers; measured
rhythm adherence fell from 45.7 % to 37.1 %).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from abcgen.errors import ConfigError

if TYPE_CHECKING:
    from abcgen.notation.piece import Note, Piece

log = logging.getLogger(__name__)

MIN_MODE_TUNES = 20  # below this many tunes a mode's own profile is noise; it borrows the pooled one
PROBABILITY_FLOOR = 1e-3  # a degree never seen still costs a finite amount: log(1e-3) ~ -6.9 nats
# The semitones of each mode's scale above its tonic (the 7 steps, in order).
MODE_SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
_CANONICAL = {"ionian": "major", "aeolian": "minor"}
_POOLED_OF = {"major": "major", "lydian": "major", "mixolydian": "major",
              "minor": "minor", "dorian": "minor", "phrygian": "minor", "locrian": "minor"}


def canonical_mode(mode: str) -> str:
    """``ionian`` -> ``major``, ``aeolian`` -> ``minor``; a mode outside ``MODE_SCALES`` is a ``ConfigError``."""
    name = _CANONICAL.get(mode.lower(), mode.lower())
    if name not in MODE_SCALES:
        raise ConfigError(f"mode {mode!r} has no scale; give one of {', '.join(MODE_SCALES)}")
    return name


def opening_notes(piece: Piece) -> list[Note]:
    """The notes of a tune's opening: its first bar, and the bar after it when the first is a pickup (shorter
    than the meter's bar) -- what the grammar's ``prior`` rule calls the opening (``State.in_pickup`` or no
    full bar done). Without a meter, the first bar."""
    notes = piece.notes
    meter = piece.meter
    second_bar = min((note.onset for note in notes if note.bar == 1), default=None)
    bars = 2 if meter is not None and second_bar is not None and second_bar < meter else 1
    return [note for note in notes if note.bar < bars]


def tune_profile(abc: str | Piece, *, opening: bool = False) -> tuple[str, list[float]] | None:
    """(mode, 12 shares of the tune's sounding time per semitone above the tonic, summing to 1) of one tune,
    as text or already read (``read_piece``; ``opening``: of its opening, ``opening_notes``), None for a tune
    that cannot be read, has no notes or no key with a tonic and mode of ``MODE_SCALES``."""
    from abcgen.notation.piece import (
        read_piece,  # the evaluation reader: only needed when a corpus is measured
    )

    piece = read_piece(abc) if isinstance(abc, str) else abc
    key = piece.key
    if not piece.notes or key is None or not key.tonic:
        return None
    try:
        mode = canonical_mode(key.mode)
    except ConfigError:
        return None
    tonic = key.tonic_semitone()
    histogram = [0.0] * 12
    for note in opening_notes(piece) if opening else piece.notes:
        histogram[(note.pitch - tonic) % 12] += float(note.duration)
    total = sum(histogram)
    if total <= 0:
        return None
    return mode, [h / total for h in histogram]


def mode_profiles(texts: Iterable[str | Piece], *, opening: bool = False) -> dict[str, dict[str, object]]:
    """Per mode found in ``texts`` (whole tunes, as text or read pieces): ``{"profile": 12 shares, "tunes": n}``
    of the whole tunes (``opening``: of their openings), each tune weighing the same. Tunes that
    ``tune_profile`` cannot read are skipped and counted in the log."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * 12)
    counts: dict[str, int] = defaultdict(int)
    skipped = 0
    for abc in texts:
        measured = tune_profile(abc, opening=opening)
        if measured is None:
            skipped += 1
            continue
        mode, shares = measured
        counts[mode] += 1
        sums[mode] = [a + b for a, b in zip(sums[mode], shares, strict=True)]
    if skipped:
        log.info("mode_profiles: %d tunes without readable notes or a key with a mode were skipped", skipped)
    return {mode: {"profile": [round(v / counts[mode], 6) for v in sums[mode]], "tunes": counts[mode]}
            for mode in sorted(counts)}


MIN_RHYTHM_TUNES = 20  # a rhythm with fewer tunes gets no length prior (its profile would be a few tunes' habits)
_LENGTH_SUFFIX_RE = re.compile(r"[_^=]*[A-Ga-g][',]*(.*)")


def tune_lengths(abc: str) -> Counter[Fraction] | None:
    """How many notes of one tune are written with each length in whole notes (chord and grace notes not
    counted), None for a tune the parser rejects."""
    from abcgen.errors import AbcgenError
    from abcgen.notation import events as ev
    from abcgen.notation.lexer import parse_duration
    from abcgen.notation.tune import parse_tune

    try:
        tune = parse_tune(abc)
        unit, events = tune.unit_length, tune.events()
    except AbcgenError:
        return None
    counts: Counter[Fraction] = Counter()
    for event in events:
        if event.kind != ev.NOTE:
            continue
        m = _LENGTH_SUFFIX_RE.fullmatch(event.text)
        if m is not None:
            counts[parse_duration(m.group(1)) * unit] += 1
    return counts


def rhythm_profiles(rows: Iterable[tuple[str, str]]) -> dict[str, dict[str, object]]:
    """Per rhythm label of ``rows`` (``(abc, rhythm)`` pairs; empty labels skipped): ``{"lengths": {"1/16":
    share, ...}, "tunes": n}``, the share of notes written with each length, each tune weighing the same."""
    sums: dict[str, Counter[Fraction]] = defaultdict(Counter)
    counts: dict[str, int] = defaultdict(int)
    for abc, rhythm in rows:
        if not rhythm:
            continue
        lengths = tune_lengths(abc)
        total = sum(lengths.values()) if lengths else 0
        if not total:
            continue
        counts[rhythm] += 1
        for length, n in lengths.items():
            sums[rhythm][length] += n / total
    return {rhythm: {"lengths": {str(length): round(share / counts[rhythm], 6)
                                 for length, share in sorted(sums[rhythm].items())},
                     "tunes": counts[rhythm]} for rhythm in sorted(counts)}


def length_bonus(lengths: Mapping[str, float], strength: float) -> tuple[tuple[Fraction, float], ...]:
    """The logit bonus per written length (whole notes) of a ``rhythm_profiles`` entry's ``lengths``, centred
    as ``prior_bonus``'s with one more floored slot for every length not listed: (length, bonus) pairs, the
    last at length 0 the bonus of any other length (use ``bonus_for_length``)."""
    check_strength(strength, "rhythm_prior")
    values = list(lengths.values())
    if not values or any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError(f"length profile {dict(lengths)!r}: give non-negative shares per note length")
    *bonuses, other = centred_log([*values, 0.0], strength)  # the last slot: every length not listed
    return (*sorted((Fraction(k), b) for k, b in zip(lengths, bonuses, strict=True)), (Fraction(0), other))


def bonus_for_length(table: Sequence[tuple[Fraction, float]], length: Fraction) -> float:
    """The bonus of a written length in a ``length_bonus`` table (the last entry, length 0, is any other)."""
    for known, bonus in table[:-1]:
        if known == length:
            return bonus
    return table[-1][1]


def profile_for_rhythm(profiles: Mapping[str, Mapping[str, object]], rhythm: str) -> dict[str, float] | None:
    """The length profile of ``rhythm``, None when the corpus has fewer than ``MIN_RHYTHM_TUNES`` of it."""
    entry = profiles.get(rhythm)
    if entry is None or int(entry["tunes"]) < MIN_RHYTHM_TUNES:  # type: ignore[call-overload]
        return None
    return dict(entry["lengths"])  # type: ignore[call-overload]


def check_strength(strength: float, name: str = "theory_prior") -> None:
    """One ``ConfigError`` line unless ``strength`` is a finite number >= 0 (``name``: the option it came as)."""
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not math.isfinite(strength) \
            or strength < 0:
        raise ConfigError(f"{name}={strength!r}: give a strength of 0 (off) or more; 1 is the corpus's "
                          "profile as it is, 2 twice as sharp")


def _pooled(profiles: Mapping[str, Mapping[str, object]], quality: str) -> list[float] | None:
    """The tune-weighted mean profile of the modes of one quality, each moved onto the ``quality``'s scale
    step by step (a dorian tune's minor third stays the third, its major sixth counts as the sixth)."""
    target = MODE_SCALES[quality]
    total, sums = 0, [0.0] * 12
    for mode, entry in profiles.items():
        if _POOLED_OF.get(mode) != quality:
            continue
        tunes = int(entry["tunes"])  # type: ignore[call-overload]
        moved = _move(list(entry["profile"]), MODE_SCALES[mode], target)  # type: ignore[call-overload]
        sums = [a + tunes * b for a, b in zip(sums, moved, strict=True)]
        total += tunes
    return [s / total for s in sums] if total else None


def _move(profile: Sequence[float], source: Sequence[int], target: Sequence[int]) -> list[float]:
    """A profile over ``source``'s scale re-laid on ``target``'s: step k's weight goes to target step k, and
    the mean weight of the notes outside the source scale to each note outside the target scale."""
    outside = [profile[i] for i in range(12) if i not in source]
    chromatic = sum(outside) / len(outside) if outside else 0.0
    moved = [chromatic] * 12
    for s, t in zip(source, target, strict=True):
        moved[t] = profile[s]
    total = sum(moved)
    return [m / total for m in moved] if total else moved


def profile_for(profiles: Mapping[str, Mapping[str, object]], mode: str) -> list[float]:
    """The 12-share profile to use for ``mode``: its own when the corpus has ``MIN_MODE_TUNES`` tunes in it,
    else the corpus's pooled major or minor profile laid on the mode's scale. Raises ``ConfigError`` when
    the corpus has no tune of the mode's quality either (a minor request to a model of major tunes)."""
    mode = canonical_mode(mode)
    own = profiles.get(mode)
    if own is not None and int(own["tunes"]) >= MIN_MODE_TUNES:  # type: ignore[call-overload]
        return list(own["profile"])  # type: ignore[call-overload]
    quality = _POOLED_OF[mode]
    pooled = _pooled(profiles, quality)
    if pooled is None:
        raise ConfigError(f"the model's corpus has no {quality}-like tunes, so it has no profile for a {mode} "
                          "request: set theory_prior=0 for it")
    return _move(pooled, MODE_SCALES[quality], MODE_SCALES[mode])


def prior_bonus(profile: Sequence[float], strength: float) -> tuple[float, ...]:
    """The logit bonus per semitone above the tonic: ``strength * (log p + H(p))`` with p floored at
    ``PROBABILITY_FLOOR`` and renormalised (see the module docstring). Raises ``ConfigError`` for a profile
    that is not 12 non-negative numbers or a negative ``strength``."""
    check_strength(strength)
    if len(profile) != 12 or any(not math.isfinite(p) or p < 0 for p in profile) or sum(profile) <= 0:
        raise ConfigError(f"pitch profile {list(profile)!r}: give 12 non-negative shares, one per semitone")
    return tuple(centred_log(list(profile), strength))


def opening_bonus(openings: Mapping[str, Mapping[str, object]], modes: Mapping[str, Mapping[str, object]],
                  mode: str, strength: float) -> tuple[float, ...]:
    """The ``opening_prior`` of a ``mode`` request: per semitone above the tonic, ``strength * log(p_opening /
    p_tune)`` (``centred_log_ratio``), the two profiles ``profile_for`` the mode from ``mode_profiles(texts,
    opening=True)`` and ``mode_profiles(texts)``. Raises ``ConfigError`` as ``profile_for`` does."""
    check_strength(strength, "opening_prior")
    return tuple(centred_log_ratio(profile_for(openings, mode), profile_for(modes, mode), strength))


def centred_log(values: Sequence[float], strength: float) -> list[float]:
    """``strength * (log p + H(p))`` per value, p the values normalised, floored at ``PROBABILITY_FLOOR`` and
    normalised again: its mean under p is 0 (what ``prior_bonus`` and ``length_bonus`` share)."""
    floored = [max(v / sum(values), PROBABILITY_FLOOR) for v in values]
    p = [f / sum(floored) for f in floored]
    entropy = -sum(q * math.log(q) for q in p)
    return [round(strength * (math.log(q) + entropy), 6) for q in p]


def centred_log_ratio(values: Sequence[float], reference: Sequence[float], strength: float) -> list[float]:
    """``strength * (log p - log q - KL(p || q))`` per value, p and q the two rows normalised and floored as in
    ``centred_log``: the bonus of what ``values`` has more of than ``reference`` (a naive-Bayes classifier's
    evidence for the row's label, which the model's own average statistics do not already hold), with mean 0
    under p."""
    def normalised(row: Sequence[float]) -> list[float]:
        floored = [max(v / sum(row), PROBABILITY_FLOOR) for v in row]
        return [f / sum(floored) for f in floored]

    p, q = normalised(values), normalised(reference)
    ratio = [math.log(a) - math.log(b) for a, b in zip(p, q, strict=True)]
    mean = sum(a * r for a, r in zip(p, ratio, strict=True))
    return [round(strength * (r - mean), 6) for r in ratio]


__all__ = ["MIN_MODE_TUNES", "MIN_RHYTHM_TUNES", "MODE_SCALES", "bonus_for_length", "canonical_mode", "centred_log",
           "centred_log_ratio", "check_strength", "length_bonus",
           "mode_profiles", "opening_bonus", "opening_notes", "prior_bonus", "profile_for", "profile_for_rhythm", "rhythm_profiles", "tune_lengths",
           "tune_profile"]
