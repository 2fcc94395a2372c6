"""Score a generated set against real music with the same code, and write ``report.json`` / ``report.md``.

``evaluate_texts`` is the Python API: it takes ABC texts from any generator (ours or another toolkit's),
real tunes of the same size from a held-out split, the training split (for copy detection and the style
classifier), and optionally what each generated tune was asked for (for adherence). Every metric is
computed on the generated set and on the real set by the same function, side by side, with bootstrap 95 %
intervals over pieces; metrics that compare two sets (distribution overlap, histogram divergences) are
computed generated-vs-real and, as the floor, real-vs-real between two halves of the held-out split.

Metric names, tiers and definitions follow ``shared/reference/evaluation.md``; ``REFERENCES`` keeps the
published real-data values beside them so a reader sees what "good" looks like.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abcgen.notation.piece import Piece, read_pieces

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Published real-data values (evaluation.md) shown next to ours; "" when the reference gives none.
REFERENCES = {
    "strict_validity": "94.2 % of real tunes pass abc2midi",
    "bar_alignment_error": "0.52 % of bars (NotaGen 0.16-0.27 %)",
    "repeat_errors": "folk-rnn 0.31 %",
    "pitch_class_entropy": "2.67 bits",
    "scale_consistency": "0.984",
    "pitch_range": "17.0 semitones",
    "pitch_classes_used": "7.6",
    "groove_consistency": "0.954",
    "repeat_sign_rate": "79.2 % (ChatMusician 76.0 %)",
    "form_top15_share": "58 %",
    "nearest_neighbour_similarity": "held-out real: median 0.463",
    "copy_rate": "held-out real: 1.0 % >= 0.85",
    "key_adherence_ks": "real tunes vs own K: 79.8 % (KS)",
    "key_signature_adherence_ks": "85.3 % (KS)",
    "key_adherence_aarden": "79.8 % (Aarden-Essen)",
    "key_signature_adherence_aarden": "92.3 % (Aarden-Essen)",
    "meter_adherence": "99.48 % of real bars",
    "overlap_mean": "real vs real 0.94-0.99",
    "kl_mean": "real vs real <= 0.011",
    "pitch_class_kl": "between halves 0.0010",
    # folk-idiom.md: O'Neill's 1850 by a regex reading of the body
    "uses_broken": "O'Neill's 41 %",
    "uses_tuplets": "O'Neill's 30 %",
    "uses_ties": "O'Neill's 11 %",
    "uses_grace": "O'Neill's 32 %",
    "uses_decorations": "folk-idiom.md: a few %; staccato `.A` counts here",
    "uses_chord_symbols": "1-11 % here; ~99 % in some collections",
    "uses_chords": "O'Neill's ~1 %",
    "ends_on_tonic": "O'Neill's 82 %",
    "bar_repeats": "O'Neill's ~24 % of bars",
    "strong_beats": "real jigs ~100 %; generated 66-76 %",
}
IDIOM_TIER = "G"  # rows of abcgen.evaluation.idiom: their own section of report.md


@dataclass
class Metric:
    """One row of the report: the same quantity on the generated and the real set."""

    name: str
    tier: str
    unit: str
    description: str
    generated: dict[str, float] | None
    real: dict[str, float] | None
    floor: dict[str, float] | None = None
    higher_is_better: bool | None = None  # None: closer to real is better
    per_seed: list[float] = field(default_factory=list)  # generated value of each sampling seed

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tier": self.tier, "unit": self.unit, "description": self.description,
                "higher_is_better": self.higher_is_better, "generated": self.generated, "real": self.real,
                "floor": self.floor, "per_seed": self.per_seed, "reference": REFERENCES.get(self.name, "")}


@dataclass
class EvaluationInputs:
    """Everything ``evaluate_texts`` scores. Only ``generated`` and ``real`` are required."""

    generated: Sequence[str]
    real: Sequence[str]
    train: Sequence[str] = ()  # training split texts: copy detection, style classifier
    requests: Sequence[Mapping[str, Any]] | None = None  # per generated tune: the conditions asked for
    seeds: Sequence[int] | None = None  # per generated tune: its sampling seed (per-seed spread)
    real_labels: Sequence[Mapping[str, Any]] | None = None  # per real tune: corpus labels (style ceiling)
    train_labels: Sequence[Mapping[str, Any]] | None = None  # per training tune: labels the classifier learns
    floor_real: Sequence[str] = ()  # held-out tunes split in two for the real-vs-real floor (default: real)


def _without_nan(value: Any) -> Any:
    """NaN (undefined, e.g. a descriptor of an empty set) becomes null: JSON has no NaN."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(v) for v in value]
    return value


@dataclass
class _Scoring:
    """The two sets being scored and the bootstrap settings every row shares; ``rows`` collects the report's
    rows in order. ``add`` is the usual row: one value per tune, a bootstrap mean on each side."""

    gen: list[Piece]
    real: list[Piece]
    seeds: Sequence[int] | None  # per generated tune: its sampling seed (per-seed spread)
    n_resamples: int
    seed: int
    rows: list[Metric] = field(default_factory=list)

    def mean_ci(self, values: Sequence[float]) -> dict[str, float]:
        from abcgen.evaluation import stats

        return stats.bootstrap_mean([float(v) for v in values], n_resamples=self.n_resamples, seed=self.seed).as_dict()

    def per_seed(self, values: Sequence[float]) -> list[float]:
        if not self.seeds:
            return []
        by_seed: dict[int, list[float]] = {}
        for s, v in zip(self.seeds, values, strict=True):
            if not math.isnan(v):
                by_seed.setdefault(int(s), []).append(v)
        return [round(statistics.fmean(v), 4) for _, v in sorted(by_seed.items()) if v]

    def add(self, name: str, tier: str, unit: str, description: str, gen_values: Sequence[float],
            real_values: Sequence[float] | None, higher: bool | None) -> None:
        self.rows.append(Metric(name, tier, unit, description, self.mean_ci(gen_values),
                                self.mean_ci(real_values) if real_values is not None else None,
                                higher_is_better=higher, per_seed=self.per_seed(gen_values)))


def evaluate_texts(inputs: EvaluationInputs, *, n_resamples: int = 1000, seed: int = 0, abc2midi: bool = True,
                   style_labels: Sequence[str] = ("rhythm", "origin"), progress: bool = True) -> dict[str, Any]:
    """The metrics of ``inputs.generated`` beside those of ``inputs.real``; see the module docstring.

    Returns a dict with ``metrics`` (a list of ``Metric.as_dict()``), ``counts`` and the data the plots
    need (``histograms``, ``overlap``, ``similarities``). ``abc2midi=False`` skips the subprocess check
    (strict validity then uses our checker only and says so)."""
    from abcgen.evaluation import metrics

    if not inputs.generated:
        raise ValueError("no generated tunes to evaluate")
    if not inputs.real:
        raise ValueError("no real tunes to compare with: give the held-out split's tunes")
    gen = read_pieces(list(inputs.generated), [f"generated #{i}" for i in range(len(inputs.generated))])
    real = read_pieces(list(inputs.real), [f"real #{i}" for i in range(len(inputs.real))])
    scoring = _Scoring(gen, real, inputs.seeds, n_resamples, seed)
    gen_vals, real_vals = _validity_rows(scoring, abc2midi)
    overlap, floor_halves = _distribution_rows(scoring, inputs.floor_real)
    _descriptor_rows(scoring, gen_vals, real_vals)
    _structure_rows(scoring, gen_vals, real_vals)
    _idiom_rows(scoring, gen_vals, real_vals)
    # read once: the novelty index and the style classifier both use them (10k tunes take ~15 s to read)
    train_pieces = read_pieces(list(inputs.train), [f"train #{i}" for i in range(len(inputs.train))])
    similarities = _novelty_rows(scoring, train_pieces)
    _adherence_rows(scoring, inputs, train_pieces, style_labels)
    rows = [row.as_dict() for row in scoring.rows]
    return {
        "metrics": rows,
        "adherence": adherence_summary(rows, inputs.requests),
        "counts": {"generated": len(gen), "real": len(real), "train": len(inputs.train),
                   "generated_unreadable": sum(not p.readable for p in gen),
                   "real_unreadable": sum(not p.readable for p in real),
                   "floor_halves": floor_halves},
        "histograms": {"generated": _jsonable_histograms(metrics.pooled_histograms(gen)),
                       "real": _jsonable_histograms(metrics.pooled_histograms(real))},
        "overlap": overlap,
        "similarities": similarities,
        "problems": _problem_counts(gen),
    }


def _column(values: list[dict[str, float]], key: str, scale: float = 1.0) -> list[float]:
    """One per-piece value of every piece (NaN where the piece has none)."""
    return [v.get(key, math.nan) * scale for v in values]


def _validity_rows(s: _Scoring, abc2midi: bool) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Tier A: strict validity (with abc2midi unless skipped), our checker, bar alignment, repeats,
    truncation. Returns the per-piece values (``metrics.piece_values``) of both sets, which C and D reuse."""
    from abcgen.evaluation import metrics, stats

    gen, real = s.gen, s.real
    gen_midi = metrics.abc2midi_valid(gen) if abc2midi else [True] * len(gen)
    real_midi = metrics.abc2midi_valid(real) if abc2midi else [True] * len(real)
    strict_what = "our checker and abc2midi" if abc2midi else "our checker only (abc2midi skipped)"
    s.add("strict_validity", "A1", "%", f"tunes that parse, are not truncated and pass {strict_what}",
          [100.0 * metrics.strict_valid(p, ok) for p, ok in zip(gen, gen_midi, strict=True)],
          [100.0 * metrics.strict_valid(p, ok) for p, ok in zip(real, real_midi, strict=True)], True)
    s.add("validity_ours", "A1", "%", "tunes that pass abcgen's checker (bars, repeats, truncation)",
          [100.0 * p.ok for p in gen], [100.0 * p.ok for p in real], True)
    if abc2midi:
        s.add("abc2midi_validity", "A1", "%", "tunes without an abc2midi error line",
              [100.0 * ok for ok in gen_midi], [100.0 * ok for ok in real_midi], True)
    gen_vals = [metrics.piece_values(p) for p in gen]
    real_vals = [metrics.piece_values(p) for p in real]
    s.rows.append(Metric("bar_alignment_error", "A2", "%", "bars whose length differs from the meter (pooled over "
                         "bars, with real-music tolerance: pickup, split bars, short bar at a section end)",
                         _bar_error(gen, stats, s.n_resamples, s.seed), _bar_error(real, stats, s.n_resamples, s.seed),
                         higher_is_better=False))
    s.add("repeat_errors", "A3", "%", "tunes with unbalanced repeats or endings out of order",
          _column(gen_vals, "repeat_error", 100.0), _column(real_vals, "repeat_error", 100.0), False)
    s.add("truncated", "A1", "%", "tunes cut off inside a bar", _column(gen_vals, "truncated", 100.0),
          _column(real_vals, "truncated", 100.0), False)
    return gen_vals, real_vals


def _distribution_rows(s: _Scoring, floor_real: Sequence[str]) -> tuple[dict[str, Any], list[int]]:
    """Tier B: set against set (Yang-Lerch overlap and KL, pooled histogram divergences); the floor is one
    real half against the other. Returns the overlaps (for the plots) and the sizes of the two halves."""
    from abcgen.evaluation import metrics, stats

    gen, real, seeds = s.gen, s.real, s.seeds
    floor_source = read_pieces(list(floor_real)) if floor_real else real
    half_a, half_b = stats.split_halves(floor_source, seed=s.seed)
    overlap_gen = metrics.yang_lerch(gen, real)
    overlap_floor = metrics.yang_lerch(half_a, half_b)
    overlap_seed: dict[str, list[float]] = {}
    if seeds and len(set(seeds)) > 1:
        for seed in sorted(set(seeds)):
            subset = [p for p, ps in zip(gen, seeds, strict=True) if ps == seed]
            for feature, values in metrics.yang_lerch(subset, real).items():
                overlap_seed.setdefault(feature, []).append(round(values["overlap"], 4))
    for feature in overlap_gen:
        s.rows.append(Metric(f"overlap_{feature}", "B1", "", f"Yang-Lerch overlap area of {feature} (generated vs "
                             "real; floor: real half vs half)", {"value": overlap_gen[feature]["overlap"]},
                             {"value": overlap_floor[feature]["overlap"]}, None, True, overlap_seed.get(feature, [])))
    mean_overlap = statistics.fmean(v["overlap"] for v in overlap_gen.values())
    mean_floor = statistics.fmean(v["overlap"] for v in overlap_floor.values())
    s.rows.append(Metric("overlap_mean", "B1", "", "mean Yang-Lerch overlap over the features",
                         {"value": mean_overlap}, {"value": mean_floor}, None, True))
    s.rows.append(Metric("kl_mean", "B1", "", "mean Yang-Lerch KL(intra || inter) over the features, one common grid",
                         {"value": statistics.fmean(v["kl"] for v in overlap_gen.values())},
                         {"value": statistics.fmean(v["kl"] for v in overlap_floor.values())}, None, False))
    divergence_gen = metrics.pooled_divergences(gen, real)
    divergence_floor = metrics.pooled_divergences(half_a, half_b)
    for hist in divergence_gen:
        for kind in ("kl", "js"):
            s.rows.append(Metric(f"{hist}_{kind}", "B2", "", f"{kind.upper()} of the pooled {hist.replace('_', '-')} "
                                 "histogram (generated vs real; floor: real halves)",
                                 {"value": divergence_gen[hist][kind]}, {"value": divergence_floor[hist][kind]},
                                 None, False))
    return {"generated_vs_real": overlap_gen, "real_vs_real": overlap_floor}, [len(half_a), len(half_b)]


def _descriptor_rows(s: _Scoring, gen_vals: list[dict[str, float]], real_vals: list[dict[str, float]]) -> None:
    """Tier C: per-piece descriptors (pitch, scale, rhythm), closer to real is better."""
    for key, unit, description in (
        ("pitch_class_entropy", "bits", "entropy of the pitch-class histogram"),
        ("scale_consistency", "", "share of notes in the best-fitting major/minor scale"),
        ("pitch_range", "semitones", "highest minus lowest pitch"),
        ("pitch_classes_used", "", "distinct pitch classes"),
        ("groove_consistency", "", "rhythmic similarity of consecutive bars (12 steps per quarter)"),
        ("mean_abs_interval", "semitones", "mean absolute melodic interval"),
    ):
        s.add(key, "C", unit, description, _column(gen_vals, key), _column(real_vals, key), None)
    s.add("repeated_notes", "C", "%", "successive melody notes on the same pitch",
          _column(gen_vals, "repeated_notes", 100.0), _column(real_vals, "repeated_notes", 100.0), None)


def _structure_rows(s: _Scoring, gen_vals: list[dict[str, float]], real_vals: list[dict[str, float]]) -> None:
    """Tier D: structure -- repeat signs, form diversity, self-similarity."""
    from abcgen.evaluation import metrics

    s.add("repeat_sign_rate", "D1", "%", "tunes whose body has |:, :| or ::",
          _column(gen_vals, "has_repeat_sign", 100.0), _column(real_vals, "has_repeat_sign", 100.0), None)
    form_gen, form_real = metrics.form_diversity(s.gen), metrics.form_diversity(s.real)
    s.rows.append(Metric("form_unique_share", "D2", "%", "distinct bar-line sequences / tunes",
                         {"value": 100.0 * form_gen["unique_forms"] / max(form_gen["num"], 1)},
                         {"value": 100.0 * form_real["unique_forms"] / max(form_real["num"], 1)}, None, None))
    s.rows.append(Metric("form_top15_share", "D2", "%", "tunes whose bar-line sequence is one of the 15 most common",
                         {"value": 100.0 * form_gen["top15_share"]}, {"value": 100.0 * form_real["top15_share"]},
                         None, None))
    s.add("self_similarity", "D3", "%", "bars (after the first) that repeat an earlier bar exactly",
          _column(gen_vals, "self_similarity", 100.0), _column(real_vals, "self_similarity", 100.0), None)


def _idiom_rows(s: _Scoring, gen_vals: list[dict[str, float]], real_vals: list[dict[str, float]]) -> None:
    """Tier G: folk idiom and form (``abcgen.evaluation.idiom``), per tune, closer to real is better."""
    from abcgen.evaluation.idiom import IDIOM_ROWS

    for key, tier, description in IDIOM_ROWS:
        s.add(key, tier, "%", description, _column(gen_vals, key, 100.0), _column(real_vals, key, 100.0), None)


def _novelty_rows(s: _Scoring, train_pieces: list[Piece]) -> dict[str, list[float]]:
    """Tier E: copies of training tunes (when there are training tunes) and diversity within the set.
    Returns the nearest-neighbour similarities of both sets (for the plots; empty without training tunes)."""
    from abcgen.evaluation import metrics, novelty, stats

    gen, real = s.gen, s.real
    similarities: dict[str, list[float]] = {}
    if train_pieces:
        index = novelty.NoveltyIndex(train_pieces)
        copy_gen, copy_real = novelty.copy_report(gen, index), novelty.copy_report(real, index)
        similarities = {"generated": copy_gen["similarities"], "real": copy_real["similarities"]}

        def median(values: Sequence[float]) -> float:
            kept = [v for v in values if not math.isnan(v)]
            return statistics.median(kept) if kept else math.nan

        s.rows.append(Metric("nearest_neighbour_similarity", "E1", "", "median normalised Levenshtein similarity of "
                             "the transposition-normalised melody to its nearest training tune",
                             stats.bootstrap_statistic(copy_gen["similarities"], median, n_resamples=s.n_resamples,
                                                       seed=s.seed).as_dict(),
                             stats.bootstrap_statistic(copy_real["similarities"], median, n_resamples=s.n_resamples,
                                                       seed=s.seed).as_dict(), None, None))
        s.add("copy_rate", "E1", "%", "tunes at similarity >= 0.85 to a training tune",
              [100.0 * (v >= 0.85) if not math.isnan(v) else math.nan for v in copy_gen["similarities"]],
              [100.0 * (v >= 0.85) if not math.isnan(v) else math.nan for v in copy_real["similarities"]], False)
        s.rows.append(Metric("exact_copies", "E1", "tunes", "tunes whose melody equals a training tune's",
                             {"value": copy_gen["exact_copies"]}, {"value": copy_real["exact_copies"]}, None, False))
    s.rows.append(Metric("duplicates_within_set", "E2", "tunes", "tunes whose melody repeats an earlier tune of the set",
                         {"value": metrics.within_set_duplicates(gen)}, {"value": metrics.within_set_duplicates(real)},
                         None, False))
    s.rows.append(Metric("distinct_bar_bigrams", "E2", "%", "distinct pairs of consecutive bars / all pairs",
                         {"value": 100.0 * metrics.distinct_bar_ngrams(gen, 2)},
                         {"value": 100.0 * metrics.distinct_bar_ngrams(real, 2)}, None, None))
    return similarities


def _adherence_rows(s: _Scoring, inputs: EvaluationInputs, train_pieces: list[Piece],
                    style_labels: Sequence[str]) -> None:
    """Tier F: did each generated tune deliver what it was asked for (key, meter, bars, form, style)? Real
    tunes are scored against their own labels: the ceiling. Without ``inputs.requests`` only the real side
    of key adherence is computed, and no row is added."""
    from abcgen.evaluation import keys
    from abcgen.notation.keys import parse_key

    gen, real = s.gen, s.real
    requests = list(inputs.requests) if inputs.requests is not None else None
    if requests is not None and len(requests) != len(gen):
        raise ValueError(f"{len(requests)} requests for {len(gen)} generated tunes: give one per tune")
    for profile, tag in (("krumhansl", "ks"), ("aarden", "aarden")):
        # K:none has no tonic to compare with: such tunes are left out of the share (NaN), not counted wrong
        real_key = [keys.key_adherence(p, p.key, profile=profile) if p.key and p.key.tonic and p.notes else None
                    for p in real]
        # a generated tune without notes was asked for a key and did not deliver it: counted as a miss
        missed = {"exact": False, "signature": False}
        gen_key = [(keys.key_adherence(p, parse_key(str(r["key"])), profile=profile) if p.notes else missed)
                   if r.get("key") else None for p, r in zip(gen, requests, strict=True)] if requests else None
        for level in ("exact", "signature"):
            name = f"key_adherence_{tag}" if level == "exact" else f"key_signature_adherence_{tag}"
            real_values = [100.0 * k[level] if k else math.nan for k in real_key]
            if gen_key is not None:
                s.add(name, "F1", "%", f"estimated key ({profile} profile) equals the requested one"
                      + (" at key-signature level" if level == "signature" else " (tonic and mode)") +
                      "; real: equals the tune's own K:",
                      [100.0 * k[level] if k else math.nan for k in gen_key], real_values, True)
    if requests is not None and inputs.train:
        _mode_rows(s, requests, inputs.train)
    if requests is not None:
        s.add("meter_adherence", "F2", "%", "M: is the requested meter and every bar fits it",
              [100.0 * keys.meter_adherence(p, str(r["meter"])) if r.get("meter") else math.nan
               for p, r in zip(gen, requests, strict=True)],
              [100.0 * keys.meter_adherence(p, p.tune.get("M") or "") if p.tune else 0.0 for p in real], True)
        s.add("bars_adherence", "F3", "%", "the tune has the requested number of bars",
              [100.0 * keys.bars_adherence(p, int(r["bars"]), r.get("form")) if r.get("bars") else math.nan
               for p, r in zip(gen, requests, strict=True)], None, True)
        if any(r.get("form") for r in requests):
            s.add("form_adherence", "F3", "%", "the form derived from the tune equals the requested form",
                  [100.0 * keys.form_adherence(p, str(r["form"])) if r.get("form") else math.nan
                   for p, r in zip(gen, requests, strict=True)], None, True)
        if any(r.get("tempo") for r in requests):
            s.add("tempo_adherence", "F2", "%", "the tempo class of the header's Q: is the requested one; "
                  "real: the tune's own tempo label",
                  [100.0 * keys.tempo_adherence(p, str(r["tempo"])) if r.get("tempo") else math.nan
                   for p, r in zip(gen, requests, strict=True)], _real_tempo(real, inputs.real_labels), True)
        s.rows += _style_rows(gen, real, train_pieces, inputs, requests, style_labels, s.mean_ci, s.seed)


def _mode_rows(s: _Scoring, requests: list[Mapping[str, Any]], train: Sequence[str]) -> None:
    """F1 by mode (``keys.mode_adherence``) with the pitch profile of each mode in the training tunes
    (``grammar.tonality.mode_profiles``, computed here once: it reads the training texts again, ~3 ms a
    tune). Real tunes against their own K: are the ceiling; a tune or request without a tonic (K:none) is
    left out of the share (NaN), a generated tune without notes counts as a miss."""
    from abcgen.evaluation import keys
    from abcgen.grammar.tonality import MODE_SCALES, mode_profiles
    from abcgen.notation.keys import Key, parse_key

    profiles = mode_profiles(train)
    if not profiles:
        log.info("mode adherence: no training tune has a key with a mode; no mode rows")
        return

    def modal(key: Key | None) -> Key | None:
        """The key when it has a tonic and a mode with a scale (not K:none)."""
        return key if key is not None and key.tonic and key.mode in MODE_SCALES else None

    real_mode = [keys.mode_adherence(p, k, profiles) if (k := modal(p.key)) and p.notes else None for p in s.real]
    asked = [modal(parse_key(str(r["key"]))) if r.get("key") else None for r in requests]
    gen_mode = [keys.mode_adherence(p, k, profiles) if k else None for p, k in zip(s.gen, asked, strict=True)]
    for level, name, what in (
            ("exact", "mode_adherence_exact", "the best tonic and mode over all tonics"),
            ("mode", "mode_adherence", "on the requested tonic, the best mode (A dorian, not A minor)")):
        s.add(name, "F1", "%", f"{what} under which the notes are most likely, by the training tunes' own "
              "mode profiles, equals the requested key's; real: the tune's own K:",
              [100.0 * m[level] if m else math.nan for m in gen_mode],
              [100.0 * m[level] if m else math.nan for m in real_mode], True)


def _real_tempo(real: list[Piece], labels: Sequence[Mapping[str, Any]] | None) -> list[float] | None:
    """The ceiling of tempo adherence: each real tune's header against its own corpus tempo label (NaN where
    it has none); None without labels."""
    from abcgen.evaluation import keys

    if not labels or len(labels) != len(real):
        return None
    return [100.0 * keys.tempo_adherence(p, str(row["tempo"])) if row.get("tempo") else math.nan
            for p, row in zip(real, labels, strict=True)]


# The report row that scores a condition in the summary, where it is not the registry's ``Condition.adherence``
# (key: the published Krumhansl-Schmuckler row; mode is no condition of its own but the mode of ``key``). The
# mode's row is the exact one (tonic and mode from the notes alone): the pipeline writes K:, so any tune
# without accidentals has the requested mode's scale, and ``mode_adherence`` (the best mode on the requested
# tonic) is high even for a random model's notes (5 of 6 for the test suite's tiny one) -- a diagnostic of
# accidentals, in the table, not the summary.
_SUMMARY_METRIC = {"key": "key_adherence_ks", "mode": "mode_adherence_exact"}
_SUMMARY_NOTES = {
    "key": "K: written by the pipeline; measured from the notes (Krumhansl-Schmuckler: tonic, major/minor)",
    "mode": "the key's tonic and mode from the notes alone: the training tunes' mode profile and tonic under "
            "which they are most likely",
    "meter": "M: written by the pipeline; constrained decoding makes every bar fit it",
    "bars": "counted out by constrained decoding; no ceiling: a real tune's own count is the request",
    "form": "sections and repeats enforced by constrained decoding, letters measured (a reused letter must "
            "repeat its music); no ceiling: a real tune's own form is the request",
    "rhythm": "a classifier trained on the training split; real: its accuracy on held-out tunes",
    "origin": "a classifier trained on the training split; real: its accuracy on held-out tunes",
    "tempo": "abcgen's pipeline writes Q: from the requested rhythm (TEMPO_BY_RHYTHM), not from this condition",
}
_UNMEASURED = {"unit_length": "L: written by the pipeline; no metric", "composer": "no composer classifier"}


def adherence_summary(metrics: Sequence[Mapping[str, Any]],
                      requests: Sequence[Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Each condition asked in ``requests`` once, in prefix order, with the row of ``metrics`` that scores it
    (read, not recomputed): ``{"metric", "generated", "real" (the real-data ceiling), "structural", "asked"
    (tunes that asked for it), "note"}``. ``structural`` is the registry's ``Condition.structural``: the
    pipeline writes it into the header or constrained decoding enforces it. ``mode`` follows ``key`` when
    the mode rows exist. A condition no row measures has ``metric`` None. Empty without requests."""
    from abcgen.controls import CONDITIONS, condition_names

    if not requests:
        return {}
    by_name = {m["name"]: m for m in metrics}
    asked: dict[str, int] = {}
    for request in requests:
        for name, value in request.items():
            if value not in (None, ""):
                asked[name] = asked.get(name, 0) + 1
    order = [n for n in condition_names() if n in asked] + sorted(n for n in asked if n not in CONDITIONS)
    if "key" in asked and _SUMMARY_METRIC["mode"] in by_name:
        order.insert(order.index("key") + 1, "mode")
        asked["mode"] = asked["key"]
    summary: dict[str, dict[str, Any]] = {}
    for name in order:
        condition = CONDITIONS.get("key" if name == "mode" else name)
        metric = _SUMMARY_METRIC.get(name) or (condition.adherence if condition else "") or f"{name}_adherence"
        row = by_name.get(metric)
        summary[name] = {
            "metric": metric if row else None,
            "generated": (row["generated"] or {}).get("value") if row else None,
            "real": (row["real"] or {}).get("value") if row and row["real"] else None,
            "structural": bool(condition and condition.structural),
            "asked": asked[name],
            "note": (_SUMMARY_NOTES.get(name) or row["description"]) if row
            else _UNMEASURED.get(name, "not measured in this run"),
        }
    return summary


def _bar_error(pieces: list[Piece], stats: Any, n_resamples: int, seed: int) -> dict[str, float]:
    """Pooled share of bad bars, bootstrapped over pieces (a tune with 40 bars weighs 40 bars)."""
    counts = []
    for p in pieces:
        if p.check is None:
            continue  # unreadable: no bars to count (counted under strict validity)
        bars = sum(b.has_notes for b in p.check.report.bars)
        bad = len({problem.bar for problem in p.check.report.problems})
        counts.append((bad, bars))

    def share(items: Sequence[tuple[int, int]]) -> float:
        total = sum(b for _, b in items)
        return 100.0 * sum(bad for bad, _ in items) / total if total else math.nan

    return stats.bootstrap_statistic(counts, share, n_resamples=n_resamples, seed=seed).as_dict()


# Style labels also judged by classifiers that read one feature group each: rhythm adherence from the note durations
# alone and from the melodic intervals alone, so a decoding that moves only pitches (the interval prior) or only
# lengths shows which part of the style it changed.
SPLIT_JUDGES: dict[str, tuple[str, ...]] = {"rhythm": ("durations", "intervals")}


def _style_rows(gen: list[Piece], real: list[Piece], train_pieces: list[Piece], inputs: EvaluationInputs,
                requests: list[Mapping[str, Any]], style_labels: Sequence[str], mean_ci: Callable[[Sequence[float]], dict[str, float]],
                seed: int) -> list[Metric]:
    """F4: a classifier trained on the training split's labels; its accuracy on real held-out tunes is the
    ceiling, the share of generated tunes it assigns to the requested label is the adherence."""
    from abcgen.evaluation.style import StyleClassifier

    rows: list[Metric] = []
    if not train_pieces or not inputs.train_labels or not inputs.real_labels:
        return rows
    for label in style_labels:
        asked = [str(r.get(label) or "") for r in requests]
        if not any(asked):
            continue
        train_y = [str(row.get(label) or "") for row in inputs.train_labels]
        keep = [i for i, y in enumerate(train_y) if y and y != "other"]
        if len({train_y[i] for i in keep}) < 2:
            log.info("style %s: fewer than two labels in the training split; no classifier", label)
            continue
        real_y = [str(row.get(label) or "") for row in inputs.real_labels]
        for groups in ((None, *SPLIT_JUDGES.get(label, ()))):
            classifier = StyleClassifier(seed=seed, **({"feature_groups": (groups,)} if groups else {})).fit(
                [train_pieces[i] for i in keep], [train_y[i] for i in keep])
            known = set(classifier.labels)
            real_pred = classifier.predict(real)
            real_correct = [100.0 * (p == y) if y in known else math.nan
                            for p, y in zip(real_pred, real_y, strict=True)]
            gen_pred = classifier.predict(gen)
            gen_correct = [100.0 * (p == y) if y in known else math.nan for p, y in zip(gen_pred, asked, strict=True)]
            what = f"a {label} classifier trained on real tunes" + (f", reading only their {groups}," if groups else "")
            rows.append(Metric(f"{label}_adherence" + (f"_{groups}" if groups else ""), "F4", "%",
                               f"{what} assigns the requested {label}; real: its accuracy on held-out tunes (the "
                               "ceiling)", mean_ci(gen_correct), mean_ci(real_correct), higher_is_better=True))
    return rows


def _jsonable_histograms(histograms: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    return {name: {"bins": [str(b) for b in bins], "probabilities": [float(p) for p in probs]}
            for name, (bins, probs) in histograms.items()}


def _problem_counts(pieces: list[Piece]) -> dict[str, int]:
    """The most frequent first problem of invalid generated tunes, by kind (text before the first ':')."""
    counts: dict[str, int] = {}
    for p in pieces:
        if p.problems:
            kind = p.problems[0].split(":")[0][:60]
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:10])


# --- writing --------------------------------------------------------------------------------------------------

def _fmt(cell: Mapping[str, float] | None, unit: str) -> str:
    if not cell or cell.get("value") is None or (isinstance(cell["value"], float) and math.isnan(cell["value"])):
        return "–"
    digits = 1 if unit in ("%", "semitones") else 3 if unit in ("", "bits") else 0
    text = f"{cell['value']:.{digits}f}"
    if cell.get("low") is not None and cell.get("high") is not None and not math.isnan(cell["low"]):
        text += f" [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"
    return text


def _metric_table(metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| tier | metric | unit | generated | real | per seed | published reference |",
             "|---|---|---|---|---|---|---|"]
    for m in metrics:
        seeds = ", ".join(f"{v:g}" for v in m.get("per_seed") or [])
        lines.append(f"| {m['tier']} | {m['name']} | {m['unit']} | {_fmt(m['generated'], m['unit'])} | "
                     f"{_fmt(m['real'], m['unit'])} | {seeds} | {m.get('reference', '')} |")
    return lines


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: settings, then one table of generated vs real per tier."""
    lines = [f"# Evaluation of {report['model'].get('path') or 'generated tunes'}", ""]
    d, data = report.get("decoding") or {}, report["data"]
    if d and d.get("family") == "gan":
        lines += [f"Generator: a MusicGAN (piano-roll windows from latent draws; no token sampling), seeds "
                  f"{d.get('seeds')}, {d.get('num_samples')} tunes per seed.", ""]
    elif d:
        lines += [f"Decoding: {'constrained' if d.get('constrained') else 'unconstrained'}, temperature "
                  f"{d.get('temperature')}, top-p {d.get('top_p')}, max new tokens {d.get('max_new_tokens') or 'auto'}, "
                  f"seeds {d.get('seeds')}, {d.get('num_samples')} tunes per seed.", "", _grammar_line(d), ""]
    counts = report["counts"]
    lines += [f"Generated tunes: {counts['generated']} ({counts['generated_unreadable']} unreadable). Real tunes: "
              f"{counts['real']} from `{data.get('corpus')}` split `{data.get('split')}`; floor: two halves of "
              f"{sum(counts['floor_halves'])} held-out tunes. Training tunes indexed for copies: {counts['train']}.",
              "", "Intervals are bootstrap 95 % intervals over tunes. Set-level rows (B) compare generated with "
              "real, and real with real (the floor) in the *real* column.", ""]
    idiom = [m for m in report["metrics"] if m["tier"].startswith(IDIOM_TIER)]
    lines += _metric_table([m for m in report["metrics"] if not m["tier"].startswith(IDIOM_TIER)])
    lines += _adherence_section(report)
    if idiom:
        lines += ["", "## Folk idiom and form", "",
                  "Per tune, the same code on both sides (`abcgen.evaluation.idiom`): G1 idioms used, G2 "
                  "cadences (phrase ends: bars 4, 8, ... of each section, its pickup not counted), G3 bars "
                  "repeating an earlier bar's notes, G4 onsets on the meter's main beats.", ""]
        lines += _metric_table(idiom)
    if report.get("perplexity"):
        p = report["perplexity"]
        lines += ["", f"Held-out perplexity (diagnostic, not a quality score): {p['perplexity']:.2f} over "
                  f"{p['tokens']} tune tokens of {p['tunes']} tunes."]
    if report.get("problems"):
        lines += ["", "Most frequent problems of invalid generated tunes:", ""]
        lines += [f"- {kind}: {n}" for kind, n in report["problems"].items()]
    if report.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    if report.get("samples"):
        lines += ["", "## Samples", ""]
        for sample in report["samples"][:4]:
            lines += [f"Asked for {sample['conditions']} ({'valid' if sample['valid'] else 'invalid'}):", "",
                      "```abc", sample["abc"].rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def _adherence_section(report: Mapping[str, Any]) -> list[str]:
    """"Adherence per condition": each condition asked once (``report["adherence"]``), its generated value and
    real-data ceiling with the intervals of the row that measures it; nothing for a report without requests."""
    summary = report.get("adherence") or {}
    if not summary:
        return []
    rows = {m["name"]: m for m in report["metrics"]}
    lines = ["", "## Adherence per condition", "",
             "Every condition the generated tunes were asked for, once, with the row that measures it; the real "
             "ceiling is the same measure on held-out real tunes against their own labels. *Structural*: the "
             "pipeline writes it into the header or constrained decoding enforces it, so a model honours it "
             "without having learnt it.", "",
             "| condition | measured by | generated | real ceiling | note |", "|---|---|---|---|---|"]
    for name, entry in summary.items():
        row = rows.get(entry["metric"] or "")
        unit = row["unit"] if row else "%"
        generated = _fmt(row["generated"] if row else None, unit)
        real = _fmt(row["real"] if row else None, unit)
        note = ("structural; " if entry["structural"] else "") + str(entry.get("note") or "")
        lines.append(f"| {name} (asked {entry.get('asked', '?')}) | {entry['metric'] or '–'} | {generated} | "
                     f"{real} | {note} |")
    decoding = report.get("decoding") or {}
    if decoding.get("constrained") is False:
        lines += ["", "Decoding was unconstrained in this run: of the structural conditions only those written "
                  "into the header (key, meter, unit length) were given; bars and form were not enforced."]
    return lines


def _grammar_line(decoding: Mapping[str, Any]) -> str:
    """The header line naming the grammar, the guidance and the theory prior every generated tune was sampled
    with (reports written before they were recorded say so rather than guess)."""
    grammar, scale = decoding.get("grammar"), decoding.get("guidance_scale")
    grammar_text = {"legacy": "legacy (plain notes and bar lines)",
                    "idiom": "idiom (the folk idiom, beams, the cadence on the tonic, recurring bars)"}.get(
        str(grammar), "not recorded" if grammar is None else str(grammar))
    if scale is None:
        guidance_text = "not recorded"
    else:
        guidance_text = "off (scale 1)" if float(scale) == 1.0 else f"classifier-free, scale {float(scale):g}"
    constrained = "" if decoding.get("constrained") else " (unused: decoding is unconstrained)"
    pitch, lengths = decoding.get("theory_prior"), decoding.get("rhythm_prior")
    if pitch is None:
        prior_text = "not recorded"
    elif not pitch and not lengths:
        prior_text = "off"
    else:
        prior_text = f"pitch {float(pitch):g}, note lengths {float(lengths or 0):g}"
    unison = decoding.get("unison_penalty")
    unison_text = "not recorded" if unison is None else "off" if not unison else f"{float(unison):g} (logit units)"
    steps = decoding.get("interval_prior")
    steps_text = "not recorded" if steps is None else "off" if not steps else f"{float(steps):g}"
    opening = decoding.get("opening_prior")
    opening_text = "not recorded" if opening is None else "off" if not opening else f"{float(opening):g}"
    return (f"Grammar: {grammar_text}{constrained}. Guidance: {guidance_text}. Theory prior: {prior_text}. "
            f"Unison penalty: {unison_text}. Interval prior: {steps_text}. Opening prior: {opening_text}.")


def write_report(report: dict[str, Any], out: str | Path) -> Path:
    """``out/report.json`` and ``out/report.md`` (the plots are written by ``abcgen.evaluation.plots``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_without_nan(report), indent=1, ensure_ascii=False, allow_nan=False),
                                     encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return out
