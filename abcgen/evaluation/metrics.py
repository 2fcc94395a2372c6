"""Objective metrics of a set of pieces: validity, structure, musical descriptors, distribution overlap with
real music, form and diversity (adherence to a request is in ``abcgen.evaluation.keys``).

Every function takes ``Piece`` objects (``abcgen.notation.piece``), so generated and real tunes go through
the same code; the report computes each metric on both and prints them side by side. The tiers (A1, B1, ...)
are those of the evaluation reference table. Units: times in whole notes, pitches in MIDI numbers,
intervals in semitones, rates in % where the name says so.

Which notes a quantity uses:

* pitch content (entropy, scale consistency, range, pitch classes, pitch count) uses every note of every
  voice, counted once per note (not weighted by duration), as muspy does;
* melodic and rhythmic quantities (intervals, inter-onset intervals, groove, bar texts) use voice 1's melody
  (one note per onset, a chord by its top note).

A piece that cannot be read gets NaN for everything but ``valid_ours`` (which is 0): its failure is counted
by validity, not averaged into the descriptors.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
from tqdm.auto import tqdm

from abcgen._extras import needs_extra
from abcgen.errors import AbcgenError, ConversionError
from abcgen.evaluation.idiom import IDIOM_VALUE_NAMES, idiom_values
from abcgen.notation import events as ev
from abcgen.notation.bars import Bar
from abcgen.notation.keys import parse_key
from abcgen.notation.piece import Piece
from abcgen.notation.pitches import melody_fingerprint
from abcgen.notation.remi import abc2midi_check

with needs_extra("eval"):  # a missing package: one line naming pip install 'abcgen[eval]'
    from scipy.spatial.distance import cdist, pdist
    from scipy.stats import gaussian_kde

logger = logging.getLogger(__name__)

__all__ = [
    "GROOVE_GRID_PER_WHOLE",
    "NOTE_LENGTH_BINS",
    "PIECE_VALUE_NAMES",
    "YANG_LERCH_FEATURES",
    "abc2midi_valid",
    "distinct_bar_ngrams",
    "form_diversity",
    "form_signature",
    "piece_values",
    "pooled_divergences",
    "pooled_histograms",
    "strict_valid",
    "within_set_duplicates",
    "yang_lerch",
]

NAN = float("nan")

# Groove grid: 12 positions per quarter note (48 per whole note), fixed so that the value does not depend on
# a file's resolution (muspy's groove consistency does); it holds straight 32nds and eighth/16th triplets.
GROOVE_GRID_PER_WHOLE = 48

# Note-length bins (whole notes) of the note-length histogram, longest first: mgeval's twelve common lengths
# (plain, dotted and triplet). A duration goes to the nearest bin on a log scale, so a tied whole-and-a-half
# note counts as "1" and a 32nd as "1/16".
NOTE_LENGTH_BINS: tuple[Fraction, ...] = tuple(Fraction(x) for x in (
    "1", "3/4", "1/2", "3/8", "1/3", "1/4", "3/16", "1/6", "1/8", "3/32", "1/12", "1/16"))
_LOG_NOTE_LENGTH_BINS = np.log2(np.array([float(b) for b in NOTE_LENGTH_BINS]))

# Melodic intervals of the pooled interval histogram: -12..+12 semitones, wider leaps in the end bins.
_MAX_INTERVAL = 12
_PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# The 12 diatonic pitch-class sets: a natural minor scale has the same set as its relative major, so these
# cover all 24 major/minor scales of scale consistency.
_MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
_DIATONIC_MASKS = np.array([[(pc - root) % 12 in _MAJOR_STEPS for pc in range(12)] for root in range(12)])

# Smoothing of pooled KL: probabilities get this added (and are renormalised), so that a bin one set never
# uses gives a large but finite divergence (about p * 14 nats) instead of infinity.
_POOLED_KL_EPSILON = 1e-6

# Yang & Lerch densities: evaluation grid size, how far beyond the data the grid reaches (in bandwidths),
# the epsilon inside the log of KL, and above how many distinct distances they are binned before the KDE.
_KDE_GRID_POINTS = 1024
_KDE_TAIL_BANDWIDTHS = 4.0
_KDE_KL_EPSILON = 1e-10
_KDE_MAX_SUPPORT = 2048
# Bandwidth of a zero-variance distance set (every distance equal, where gaussian_kde's covariance is
# singular): this share of the span of both sets' distances, or of the value itself when that span is 0.
_DEGENERATE_BANDWIDTH_SHARE = 0.01

PIECE_VALUE_NAMES: tuple[str, ...] = (
    "valid_ours", "bar_error_rate", "repeat_error", "truncated", "has_repeat_sign",
    "pitch_class_entropy", "scale_consistency", "pitch_range", "pitch_classes_used", "groove_consistency",
    "mean_abs_interval", "repeated_notes", "self_similarity", "num_bars", "num_notes", *IDIOM_VALUE_NAMES,
)

YANG_LERCH_FEATURES: tuple[str, ...] = (
    "total_pitch_count", "pitch_range", "mean_interval", "mean_ioi", "pitch_class_histogram",
    "note_length_histogram",
)


# ---------------------------------------------------------------- per-piece values (A2, A3, C, D1, D3)


def piece_values(piece: Piece) -> dict[str, float]:
    """Every per-piece quantity of one piece, NaN where undefined (see ``PIECE_VALUE_NAMES``).

    * ``valid_ours``: 1 when our checker passes it (parses, bars, repeats, not truncated), else 0.
    * ``bar_error_rate``: % of the bars with music that have a bar problem (a multi-voice bar counts once,
      whether one voice is wrong or the voices disagree); NaN without bars with music.
    * ``repeat_error``, ``truncated``, ``has_repeat_sign``: 1/0 (unbalanced repeats or endings out of order;
      cut off inside a bar; a ``|:``, ``:|`` or ``::`` anywhere in the body).
    * ``pitch_class_entropy``: Shannon entropy (bits) of the pitch-class counts of all notes.
    * ``scale_consistency``: the largest share of notes inside one of the 24 major/minor scales.
    * ``pitch_range`` (semitones), ``pitch_classes_used`` (0-12).
    * ``groove_consistency``: 1 - mean Hamming distance between consecutive bars' onset vectors on a grid of
      ``GROOVE_GRID_PER_WHOLE`` positions per whole note, divided by the bar's grid size (muspy's
      definition, at a fixed resolution). A pickup (the first bar, or a short bar that opens a section) is
      aligned to the end of its bar; pairs of bars in different meters (or in free meter) are skipped.
    * ``mean_abs_interval``: mean |interval| (semitones) between successive melody notes.
    * ``repeated_notes``: share of successive melody notes on the same pitch (0-1): folk tunes 5-12 % by dance,
      a small model's random walk about 25 % (``abcgen.grammar.melody``).
    * ``self_similarity``: share of the bars after the first whose text equals an earlier bar's text (the
      text of its notes and rests only, so ``A>B`` reads as ``AB``; ``bar_repeats`` compares the notes).
    * ``num_bars`` (bars with music, a pickup not counted), ``num_notes`` (all voices).
    * folk idiom and form (``abcgen.evaluation.idiom``, ``IDIOM_VALUE_NAMES``): idioms used, ending on the
      tonic, phrase cadences, bars repeating an earlier bar's notes, onsets on the meter's main beats.
    """
    values = dict.fromkeys(PIECE_VALUE_NAMES, NAN)
    values["valid_ours"] = 1.0 if piece.ok else 0.0
    if piece.check is None or piece.tune is None:
        return values
    check = piece.check
    music_bars = [b for b in check.report.bars if b.has_notes]
    if music_bars:
        bad_bars = len({p.bar for p in check.report.problems})
        values["bar_error_rate"] = 100.0 * min(bad_bars, len(music_bars)) / len(music_bars)
    values["repeat_error"] = float(bool(check.repeats))
    values["truncated"] = float(check.truncated)
    values["has_repeat_sign"] = float(_has_repeat_sign(piece))
    values["num_bars"] = float(check.report.num_bars)
    values["num_notes"] = float(len(piece.notes))
    values.update(_pitch_descriptors(piece))
    values["groove_consistency"] = _groove_consistency(piece)
    values["mean_abs_interval"] = _mean_abs_interval(piece)
    values["repeated_notes"] = _repeated_notes(piece)
    values["self_similarity"] = _self_similarity(piece.bar_texts)
    values.update(idiom_values(piece))
    return values


def _has_repeat_sign(piece: Piece) -> bool:
    """Any bar line of the body (any voice) with a repeat colon: ``|:``, ``:|``, ``::``, ``:|2``, ..."""
    return any(e.kind == ev.BAR and ":" in e.text for e in piece.tune.events())


def _pitch_descriptors(piece: Piece) -> dict[str, float]:
    if not piece.notes:
        return {}
    pitches = np.array([n.pitch for n in piece.notes])
    counts = np.bincount(pitches % 12, minlength=12).astype(float)  # (12,)
    shares = counts / counts.sum()
    used = shares[shares > 0]
    return {
        "pitch_class_entropy": float(-(used * np.log2(used)).sum()),
        "scale_consistency": float((_DIATONIC_MASKS @ shares).max()),
        "pitch_range": float(pitches.max() - pitches.min()),
        "pitch_classes_used": float(len(used)),
    }


def _mean_abs_interval(piece: Piece) -> float:
    if len(piece.melody) < 2:
        return NAN
    pitches = np.array([n.pitch for n in piece.melody])
    return float(np.abs(np.diff(pitches)).mean())


def _repeated_notes(piece: Piece) -> float:
    if len(piece.melody) < 2:
        return NAN
    pitches = np.array([n.pitch for n in piece.melody])
    return float((np.diff(pitches) == 0).mean())


def _self_similarity(bar_texts: Sequence[str]) -> float:
    if len(bar_texts) < 2:
        return NAN
    seen: set[str] = set()
    repeats = 0
    for text in (re.sub(r"\s+", "", t) for t in bar_texts):
        repeats += text in seen
        seen.add(text)
    return repeats / (len(bar_texts) - 1)


def _is_section_mark(bar_line: str) -> bool:
    return any(mark in bar_line for mark in (":", "||", "]", "[|")) or any(c.isdigit() for c in bar_line)


def _is_pickup(bar: Bar, position: int) -> bool:
    """A short bar that leads into the next one: the tune's first bar, or a bar that opens a section (after
    a repeat sign or double bar) and does not itself end one, like the ``f`` of ``:| f | afa ...``."""
    if bar.meter is None or bar.duration >= bar.meter:
        return False
    return position == 0 or (_is_section_mark(bar.opening) and not _is_section_mark(bar.closing))


def _groove_consistency(piece: Piece) -> float:
    """See ``piece_values``. Bars come from the bar check (voice 1), whose bars with music are the
    melody's bars in order, so bar ``k``'s start is the sum of the earlier bars' durations."""
    music_bars = [b for b in piece.check.report.bars if b.has_notes]
    if len(music_bars) < 2 or len(music_bars) != len(piece.bar_texts):
        return NAN  # a safeguard: the melody and the bar check split the bars alike on every real tune tried
    starts = np.cumsum([Fraction(0)] + [b.duration for b in music_bars[:-1]])
    onsets_by_bar: list[set[int]] = [set() for _ in music_bars]
    for note in piece.melody:
        bar = music_bars[note.bar]
        if bar.meter is None:
            continue
        offset = note.onset - starts[note.bar]
        if _is_pickup(bar, note.bar):  # its notes lead into the next downbeat: align them to the bar's end
            offset += bar.meter - bar.duration
        slot = math.floor(offset * GROOVE_GRID_PER_WHOLE)
        if 0 <= slot < bar.meter * GROOVE_GRID_PER_WHOLE:
            onsets_by_bar[note.bar].add(slot)
    distances = []
    for previous, current, prev_onsets, onsets in zip(music_bars, music_bars[1:], onsets_by_bar,
                                                      onsets_by_bar[1:], strict=False):
        if previous.meter is None or previous.meter != current.meter:
            continue
        grid = previous.meter * GROOVE_GRID_PER_WHOLE
        distances.append(len(prev_onsets ^ onsets) / float(grid))
    return 1.0 - float(np.mean(distances)) if distances else NAN


# ---------------------------------------------------------------- validity (A1)


def abc2midi_valid(pieces: Sequence[Piece], workers: int = 2) -> list[bool]:
    """For each piece, True when abc2midi reads its text (as written, not normalised) without an ``Error``
    line (warnings, such as its bar-length ones, are allowed). abc2midi runs as one subprocess per piece, in
    a thread pool of ``workers`` (the work is waiting on subprocesses). A tune abc2midi hangs on (timeout)
    counts as invalid. Raises ``ToolNotFoundError`` when abc2midi is not installed."""

    def passes(piece: Piece) -> bool:
        try:
            lines = abc2midi_check(piece.abc)
        except ConversionError as exc:
            logger.warning("abc2midi failed on %s: %s", piece.name or "a piece", exc)
            return False
        return not any(line.startswith("Error") for line in lines)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(passes, pieces)
        return list(tqdm(results, total=len(pieces), desc="abc2midi", unit="tune",
                         disable=len(pieces) < 50, leave=False))


def _key_field_last(abc: str) -> bool:
    """The header ends with a readable ``K:`` line: every line before the first ``K:`` is a field line
    (or a comment or blank), and the key parses. ``K:none`` is a valid ABC key."""
    for line in abc.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            continue
        match = re.match(r"^([A-Za-z]):(.*)$", stripped)
        if match is None:
            return False  # music before any K: line
        if match.group(1) == "K":
            try:
                parse_key(match.group(2))
            except AbcgenError:
                return False
            return True
    return False


def strict_valid(piece: Piece, abc2midi_ok: bool) -> bool:
    """Strict validity (A1): a header with ``K:`` last and a valid key, our checker's verdict (``piece.ok``:
    parses, bars, repeats, not truncated) and abc2midi without an ``Error`` line (``abc2midi_ok``, from
    ``abc2midi_valid``)."""
    return abc2midi_ok and piece.ok and _key_field_last(piece.abc)


# ---------------------------------------------------------------- Yang & Lerch distribution overlap (B1)


def _note_length_bin(durations: np.ndarray) -> np.ndarray:
    """Index into ``NOTE_LENGTH_BINS`` of each duration (whole notes), nearest on a log scale."""
    logs = np.log2(np.maximum(durations, 1e-9))[:, None]  # (n, 1)
    return np.abs(logs - _LOG_NOTE_LENGTH_BINS[None, :]).argmin(axis=1)


def _yang_lerch_features(piece: Piece) -> dict[str, np.ndarray | None]:
    """The six per-piece features, each a 1-D array (a scalar feature is a 1-vector), None when undefined."""
    features: dict[str, np.ndarray | None] = dict.fromkeys(YANG_LERCH_FEATURES)
    if piece.notes:
        pitches = np.array([n.pitch for n in piece.notes])
        features["total_pitch_count"] = np.array([float(len(np.unique(pitches)))])
        features["pitch_range"] = np.array([float(pitches.max() - pitches.min())])
        histogram = np.bincount(pitches % 12, minlength=12).astype(float)
        features["pitch_class_histogram"] = histogram / histogram.sum()
        durations = np.array([float(n.duration) for n in piece.notes])
        lengths = np.bincount(_note_length_bin(durations), minlength=len(NOTE_LENGTH_BINS)).astype(float)
        features["note_length_histogram"] = lengths / lengths.sum()
    if len(piece.melody) >= 2:
        melody = np.array([n.pitch for n in piece.melody])
        features["mean_interval"] = np.array([float(np.abs(np.diff(melody)).mean())])
        onsets = np.array([float(n.onset) for n in piece.melody])
        features["mean_ioi"] = np.array([float(np.diff(onsets).mean())])
    return features


def _feature_matrix(pieces: Sequence[Piece], features: list[dict[str, np.ndarray | None]],
                    name: str) -> tuple[np.ndarray, np.ndarray]:
    """(pieces with the feature, feature size) matrix of one feature, and the ``id`` of each row's piece."""
    rows = [(id(piece), f[name]) for piece, f in zip(pieces, features, strict=True) if f[name] is not None]
    if not rows:
        return np.empty((0, 1)), np.empty(0, dtype=np.int64)
    return np.vstack([row for _, row in rows]), np.array([ident for ident, _ in rows], dtype=np.int64)


def _compress(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct distances and their counts; more than ``_KDE_MAX_SUPPORT`` distinct values are binned into
    that many equal bins (centres, counts). For N = 300 pieces there are 90,000 inter-set distances, and
    the bin width is a few hundredths of the bandwidth, so the KDE changes by far less than its own error."""
    support, counts = np.unique(distances, return_counts=True)
    if len(support) > _KDE_MAX_SUPPORT:
        counts, edges = np.histogram(distances, bins=_KDE_MAX_SUPPORT)
        support, counts = ((edges[:-1] + edges[1:]) / 2)[counts > 0], counts[counts > 0]
    return support, counts


def _density(distances: np.ndarray, bandwidth: float, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE (``scipy.stats.gaussian_kde``, weighted by the counts of ``_compress``) of ``distances``
    with the given bandwidth (the kernel's standard deviation), evaluated on ``grid``. A zero-variance set
    is one Gaussian at its value: gaussian_kde's covariance would be singular there."""
    support, counts = _compress(distances)
    if len(support) == 1:
        return np.exp(-0.5 * ((grid - support[0]) / bandwidth) ** 2) / (bandwidth * math.sqrt(2 * math.pi))
    # gaussian_kde's kernel std is its factor times the weighted data std it computes (np.cov with aweights).
    data_std = math.sqrt(float(np.cov(support, aweights=counts)))
    return gaussian_kde(support, weights=counts, bw_method=bandwidth / data_std)(grid)


def _overlap_and_kl(intra: np.ndarray, inter: np.ndarray) -> dict[str, float]:
    """Overlap area and KL(intra || inter) of the two distances' densities, on ONE grid with ONE bandwidth.

    The bandwidth is Scott's rule for the intra-set distances (std * n ** -1/5) and serves both densities:
    with each set's own Scott bandwidth, the inter set (about twice as many distances) would be smoothed
    less, and a set compared with itself would not overlap fully on discrete features such as pitch
    counts. When every intra-set distance is equal (zero variance), the bandwidth is
    ``_DEGENERATE_BANDWIDTH_SHARE`` of the span of all distances (of the value itself when that span is 0)."""
    span = float(max(intra.max(), inter.max()) - min(intra.min(), inter.min()))
    bandwidth = float(intra.std(ddof=1) if len(intra) > 1 else 0.0) * len(intra) ** -0.2
    if bandwidth <= 1e-12 * max(1.0, span):
        bandwidth = _DEGENERATE_BANDWIDTH_SHARE * (span if span > 0 else max(abs(float(intra.max())), 1e-3))
    low = min(intra.min(), inter.min()) - _KDE_TAIL_BANDWIDTHS * bandwidth
    high = max(intra.max(), inter.max()) + _KDE_TAIL_BANDWIDTHS * bandwidth
    grid = np.linspace(low, high, _KDE_GRID_POINTS)
    p, q = _density(intra, bandwidth, grid), _density(inter, bandwidth, grid)
    # Normalised on the grid, so that the overlap of a density with itself is exactly 1.
    p, q = p / np.trapezoid(p, grid), q / np.trapezoid(q, grid)
    overlap = float(np.trapezoid(np.minimum(p, q), grid))
    kl = float(np.trapezoid(p * np.log((p + _KDE_KL_EPSILON) / (q + _KDE_KL_EPSILON)), grid))
    return {"overlap": min(overlap, 1.0), "kl": max(kl, 0.0)}


def yang_lerch(a: Sequence[Piece], b: Sequence[Piece]) -> dict[str, dict[str, float]]:
    """Yang & Lerch (2020) distribution overlap of set ``a`` with set ``b``, per feature of
    ``YANG_LERCH_FEATURES`` (total pitch count = distinct pitches used, pitch range, mean |interval|, mean
    inter-onset interval in whole notes, normalised pitch-class histogram, normalised note-length histogram
    over ``NOTE_LENGTH_BINS``).

    For each feature: the intra-set distances of ``a`` (Euclidean, every pair of its pieces once) and the
    inter-set distances (every piece of ``a`` with every piece of ``b``), a Gaussian KDE of each, both
    evaluated on one common grid (mgeval evaluates them on different grids, which makes its KL wrong);
    ``overlap`` = the area under min(p, q) (1 = same distribution) and ``kl`` = KL(intra || inter) in nats.
    A piece that is in both sets (the same ``Piece`` object) is not compared with itself, so a set against
    itself gives overlap 1 and KL 0. Pieces without a feature (no notes; fewer than two melody notes for
    intervals and onsets) are left out of that feature; a feature with fewer than two pieces in ``a`` or no
    other piece in ``b`` gives NaN (and a warning)."""
    features_a = [_yang_lerch_features(p) for p in a]
    features_b = [_yang_lerch_features(p) for p in b]
    out: dict[str, dict[str, float]] = {}
    for name in YANG_LERCH_FEATURES:
        matrix_a, ids_a = _feature_matrix(a, features_a, name)
        matrix_b, ids_b = _feature_matrix(b, features_b, name)
        intra = pdist(matrix_a) if len(matrix_a) >= 2 else np.empty(0)  # (n_a * (n_a - 1) / 2,)
        # (n_a * n_b,) minus the pairs of a piece with itself, when the same Piece is in both sets
        inter = cdist(matrix_a, matrix_b)[ids_a[:, None] != ids_b[None, :]] if len(matrix_b) else np.empty(0)
        if len(intra) == 0 or len(inter) == 0:
            logger.warning("Yang-Lerch %s: %d pieces of the first set and %d of the second have it; need two "
                           "in the first and one other in the second", name, len(matrix_a), len(matrix_b))
            out[name] = {"overlap": NAN, "kl": NAN}
            continue
        out[name] = _overlap_and_kl(intra, inter)
    return out


# ---------------------------------------------------------------- pooled histograms (B2)


def _fraction_label(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _pooled_counts(pieces: Sequence[Piece]) -> dict[str, tuple[list[str], np.ndarray]]:
    """Counts over every note (intervals: every melodic step) of the set, per histogram."""
    pitch_classes = np.zeros(12)
    lengths = np.zeros(len(NOTE_LENGTH_BINS))
    intervals = np.zeros(2 * _MAX_INTERVAL + 1)
    for piece in pieces:
        if piece.notes:
            pitch_classes += np.bincount(np.array([n.pitch for n in piece.notes]) % 12, minlength=12)
            durations = np.array([float(n.duration) for n in piece.notes])
            lengths += np.bincount(_note_length_bin(durations), minlength=len(NOTE_LENGTH_BINS))
        if len(piece.melody) >= 2:
            steps = np.clip(np.diff([n.pitch for n in piece.melody]), -_MAX_INTERVAL, _MAX_INTERVAL)
            intervals += np.bincount(steps + _MAX_INTERVAL, minlength=len(intervals))
    interval_labels = [str(i) for i in range(-_MAX_INTERVAL, _MAX_INTERVAL + 1)]
    interval_labels[0], interval_labels[-1] = f"<=-{_MAX_INTERVAL}", f">={_MAX_INTERVAL}"
    return {
        "pitch_class": (list(_PITCH_CLASS_NAMES), pitch_classes),
        "note_length": ([_fraction_label(b) for b in NOTE_LENGTH_BINS], lengths),
        "interval": (interval_labels, intervals),
    }


def pooled_histograms(pieces: Sequence[Piece]) -> dict[str, tuple[list[str], list[float]]]:
    """The set's pooled, normalised histograms: ``pitch_class`` (12 bins, C..B, every note of every voice),
    ``note_length`` (``NOTE_LENGTH_BINS``, whole notes) and ``interval`` (melody steps -12..+12 semitones,
    the end bins holding wider leaps), each as (bin labels, probabilities); all zeros for a set without
    notes."""
    out = {}
    for name, (labels, counts) in _pooled_counts(pieces).items():
        total = counts.sum()
        out[name] = (labels, (counts / total if total else counts).tolist())
    return out


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float((p[mask] * np.log2(p[mask] / q[mask])).sum())


def pooled_divergences(a: Sequence[Piece], b: Sequence[Piece]) -> dict[str, dict[str, float]]:
    """KL(a || b) and Jensen-Shannon divergence of the pooled histograms of ``pooled_histograms``, in bits.
    KL smooths both histograms with ``_POOLED_KL_EPSILON`` (a bin ``b`` never uses would make it infinite);
    JS needs no smoothing and lies in [0, 1]. NaN for a histogram one set has no data for."""
    counts_a, counts_b = _pooled_counts(a), _pooled_counts(b)
    out = {}
    for name in counts_a:
        p, q = counts_a[name][1], counts_b[name][1]
        if p.sum() == 0 or q.sum() == 0:
            out[name] = {"kl": NAN, "js": NAN}
            continue
        p, q = p / p.sum(), q / q.sum()
        smooth_p = (p + _POOLED_KL_EPSILON) / (1 + len(p) * _POOLED_KL_EPSILON)
        smooth_q = (q + _POOLED_KL_EPSILON) / (1 + len(q) * _POOLED_KL_EPSILON)
        middle = (p + q) / 2
        js = 0.5 * _kl_bits(p, middle) + 0.5 * _kl_bits(q, middle)
        out[name] = {"kl": max(_kl_bits(smooth_p, smooth_q), 0.0), "js": min(max(js, 0.0), 1.0)}
    return out


# ---------------------------------------------------------------- form (D2) and diversity (E2)


def form_signature(piece: Piece) -> str:
    """A piece's form signature: its bar lines (voice 1) in order, space-separated."""
    return " ".join(piece.bar_lines)


def form_diversity(pieces: Sequence[Piece]) -> dict[str, float | int]:
    """``unique_forms`` (distinct bar-line sequences), ``top15_share`` (share of the pieces whose sequence is
    one of the 15 most common) and ``num`` (pieces counted: the readable ones with music)."""
    signatures = Counter(form_signature(p) for p in pieces if p.readable and p.melody)
    num = sum(signatures.values())
    top = sum(count for _, count in signatures.most_common(15))
    return {"unique_forms": len(signatures), "top15_share": top / num if num else NAN, "num": num}


def within_set_duplicates(pieces: Sequence[Piece]) -> int:
    """Pieces whose transposition-normalised melody (``melody_fingerprint``: intervals and lengths) equals an
    earlier piece's; unreadable pieces and pieces without notes are not counted."""
    seen: set[str] = set()
    duplicates = 0
    for piece in pieces:
        if piece.tune is None or not piece.melody:
            continue
        try:
            fingerprint = melody_fingerprint(piece.tune.events(), piece.tune.key, piece.tune.unit_length)
        except AbcgenError:
            continue
        duplicates += fingerprint in seen
        seen.add(fingerprint)
    return duplicates


def distinct_bar_ngrams(pieces: Sequence[Piece], n: int = 2) -> float:
    """Distinct n-grams of consecutive bar texts (voice 1, spaces removed) over all n-grams of the set, in
    [0, 1]: 1 = no sequence of ``n`` bars occurs twice. NaN when no piece has ``n`` bars."""
    if n < 1:
        raise ValueError(f"distinct_bar_ngrams: n={n}; give n >= 1")
    grams: list[tuple[str, ...]] = []
    for piece in pieces:
        texts = [re.sub(r"\s+", "", t) for t in piece.bar_texts]
        grams += [tuple(texts[i:i + n]) for i in range(len(texts) - n + 1)]
    return len(set(grams)) / len(grams) if grams else NAN
