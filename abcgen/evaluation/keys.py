"""Adherence of a piece to what was requested: key (F1, estimated from the notes), meter (F2), number of
bars and form (F3).

Keys are estimated with the Krumhansl-Schmuckler method: the duration-weighted pitch-class histogram of a
piece is correlated (Pearson) with a key profile rotated to each of the 12 tonics, for a major and a minor
profile; the best of the 24 is the key. Two profiles:

* ``krumhansl``: Krumhansl & Kessler's probe-tone ratings (the classic Krumhansl-Schmuckler algorithm);
* ``aarden``: the Aarden-Essen weights, music21's default key analysis (``music21.analysis.discrete.
  AardenEssen``, values from the Humdrum ``keycor`` documentation), copied below.

Estimation only says major or minor. Adherence therefore compares a requested modal key by its quality:
dorian, phrygian, aeolian and locrian are minor-like, ionian, lydian and mixolydian major-like (so
``A dorian`` is matched exactly by an estimated A minor), and at the signature level by its key signature.

Modes (``estimate_mode``, ``mode_adherence``) are estimated with the *training corpus's own* pitch
profiles per mode (``abcgen.grammar.tonality.mode_profiles``: the duration-weighted share of each semitone
above the tonic, averaged over the corpus's tunes of that mode; a rare mode borrows the pooled major or
minor profile laid on its scale, ``profile_for``). The candidates are the modes the corpus has at least
``MIN_MODE_TUNES`` tunes of, and the requested one, each rotated to the 12 tonics; the best is the one
under which the tune's notes are most likely (the theory prior's own view of a mode: log-probability per
note), not the best Pearson correlation, which weighs the tonic's and the fifth's shares and barely the
one note that tells two modes apart. A dorian and an aeolian tune on A differ in one pitch class (F#
against F): that note's share is what the estimate has to go on, and a dorian tune that never plays its
sixth is told apart only by how its other notes sit in each mode's profile. On O'Neill's, Ryan's and
Aird's (2/3 of the tunes for the profiles, 1,362 held out, each against its own K:) the mode on the
tune's tonic is right for 96.9 % of major, 83.0 % of minor, 81.1 % of mixolydian and 72.2 % of dorian
tunes (Pearson: 96.9, 76.5, 59.5, 69.4 %).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from abcgen.corpus.labels import normalise_label, tempo_bpm, tempo_label
from abcgen.errors import AbcgenError, ConfigError
from abcgen.evaluation.idiom import bars_without_pickups
from abcgen.grammar.rules.forced import written_bars
from abcgen.grammar.tonality import MIN_MODE_TUNES, PROBABILITY_FLOOR, canonical_mode, profile_for
from abcgen.notation import events as ev
from abcgen.notation.keys import NO_KEY, Key, key_for
from abcgen.notation.piece import Piece
from abcgen.notation.structure import derive_form

__all__ = [
    "KEY_PROFILES",
    "MODE_METHODS",
    "bars_adherence",
    "compare_keys",
    "estimate_key",
    "estimate_mode",
    "form_adherence",
    "key_adherence",
    "key_from_histogram",
    "meter_adherence",
    "mode_adherence",
    "mode_quality",
    "pitch_class_durations",
    "tempo_adherence",
    "tempo_class",
]

# (major, minor) weights, index 0 = the tonic, then every semitone above it.
KEY_PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "krumhansl": (
        (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
        (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
    ),
    "aarden": (
        (17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624, 8.15494,
         0.232998, 4.95122),
        (18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621, 1.93186,
         7.37619, 1.75623),
    ),
}

_MINOR_LIKE_MODES = frozenset({"minor", "aeolian", "dorian", "phrygian", "locrian"})
_MAJOR_LIKE_MODES = frozenset({"major", "ionian", "lydian", "mixolydian"})


def _standardised_profiles(profile: str) -> np.ndarray:
    """(24, 12) z-scored profiles: rows 0-11 major on tonics C..B, rows 12-23 minor; column = pitch class."""
    if profile not in KEY_PROFILES:
        raise ConfigError(f"unknown key profile {profile!r}; choose one of {sorted(KEY_PROFILES)}")
    major, minor = (np.array(weights) for weights in KEY_PROFILES[profile])
    rows = [np.roll(major, tonic) for tonic in range(12)] + [np.roll(minor, tonic) for tonic in range(12)]
    table = np.array(rows)
    return (table - table.mean(axis=1, keepdims=True)) / table.std(axis=1, keepdims=True)


def pitch_class_durations(piece: Piece) -> np.ndarray:
    """(12,) total duration (whole notes) of the notes of every voice on each pitch class, C = 0."""
    histogram = np.zeros(12)
    for note in piece.notes:
        histogram[note.pitch % 12] += float(note.duration)
    return histogram


def estimate_key(piece: Piece, profile: str = "krumhansl") -> Key:
    """The major or minor key whose rotated ``profile`` correlates best with the piece's duration-weighted
    pitch-class histogram, spelt with the fewest accidentals. ``NO_KEY`` for a piece without notes (or with
    every pitch class equally long, where no key is preferred). Raises ``ConfigError`` for an unknown
    profile."""
    return key_from_histogram(pitch_class_durations(piece), profile)


def key_from_histogram(histogram: np.ndarray, profile: str = "krumhansl") -> Key:
    """``estimate_key`` of a (12,) duration-weighted pitch-class histogram (C = 0, any time unit), for notes
    that are not a ``Piece`` (MIDI: ``abcgen.evaluation.midi``). ``NO_KEY`` for an all-equal histogram."""
    profiles = _standardised_profiles(profile)
    histogram = np.asarray(histogram, dtype=np.float64)
    spread = histogram.std()
    if spread == 0:
        return NO_KEY
    correlations = profiles @ ((histogram - histogram.mean()) / spread) / 12  # (24,) Pearson r
    best = int(np.argmax(correlations))
    return key_for(best % 12, "major" if best < 12 else "minor")


def mode_quality(mode: str) -> str:
    """``major`` or ``minor``: the quality a mode's third gives it (``dorian`` -> minor). Raises
    ``ConfigError`` for a key without a mode (``K:none``)."""
    if mode in _MINOR_LIKE_MODES:
        return "minor"
    if mode in _MAJOR_LIKE_MODES:
        return "major"
    raise ConfigError(f"key mode {mode!r} has no major/minor quality; request a key with a tonic, e.g. 'D major'")


def key_adherence(piece: Piece, requested: Key, profile: str = "krumhansl") -> dict[str, bool]:
    """F1: the key estimated from the notes (``estimate_key``) against the requested key.

    ``exact``: same tonic (pitch class) and same quality (a requested modal key by its third, see the
    module docstring). ``signature``: the same key signature up to enharmonic spelling, so relative keys
    count (E minor for G major, A dorian for G major); a requested key's explicit extra accidentals
    (``K:D =c``) are ignored. Raises ``ConfigError`` for a requested key without a tonic (``K:none``)."""
    mode_quality(requested.mode)  # K:none raises before the notes are looked at
    return compare_keys(estimate_key(piece, profile), requested)


def compare_keys(estimated: Key, requested: Key) -> dict[str, bool]:
    """``key_adherence``'s comparison of an estimated major/minor key with a requested key: ``exact`` (tonic
    and quality) and ``signature`` (key signature up to enharmonic spelling); both False when ``estimated``
    is ``NO_KEY``. Raises ``ConfigError`` for a requested key without a tonic (``K:none``)."""
    wanted_quality = mode_quality(requested.mode)
    if not estimated.tonic:
        return {"exact": False, "signature": False}
    return {
        "exact": estimated.tonic_semitone() == requested.tonic_semitone() and estimated.mode == wanted_quality,
        # Sharps count fifths: F# major (6) and Gb major (-6) are 12 fifths apart and sound the same.
        "signature": (estimated.sharps - requested.sharps) % 12 == 0,
    }


# ---------------------------------------------------------------- modes, from the corpus's own profiles (F1)

MODE_METHODS = ("likelihood", "pearson")


def _mode_candidates(profiles: Mapping[str, Mapping[str, object]], also: str | None = None) -> dict[str, np.ndarray]:
    """mode -> (12,) profile relative to the tonic, for every mode of ``MODE_SCALES`` the corpus has at least
    ``MIN_MODE_TUNES`` tunes of (``profiles`` from ``mode_profiles``), plus ``also`` (the requested mode) with
    ``profile_for``'s profile, borrowed if the mode is rare; a mode whose quality the corpus lacks
    (``profile_for`` raises) is no candidate.

    Why not every mode the corpus has: a rare mode's borrowed profile is the pooled major (or minor) profile
    with one note moved, and neither score knows how rare the mode is. On O'Neill's, Ryan's and Aird's
    (2,703 training tunes with a mode, 5 of them lydian) a lydian candidate took 43 of 1,132 held-out major
    tunes; a mode is only a candidate unasked when the corpus has enough tunes for a profile of its own."""
    common = [mode for mode, entry in profiles.items()
              if int(entry["tunes"]) >= MIN_MODE_TUNES]  # type: ignore[call-overload]
    candidates: dict[str, np.ndarray] = {}
    for mode in [*common, *([also] if also else [])]:
        try:
            name = canonical_mode(mode)
            candidates.setdefault(name, np.asarray(profile_for(profiles, name), dtype=np.float64))
        except ConfigError:
            continue
    return candidates


def _mode_scores(piece: Piece, candidates: Mapping[str, np.ndarray],
                 method: str) -> tuple[list[str], np.ndarray] | None:
    """(modes, (len(modes), 12) score of the piece under each mode's profile with its tonic on pitch class
    0..11; higher is better). None for a piece without notes or with every pitch class equally long (no
    tonic is preferred), or without candidates.

    ``likelihood``: the mean log-probability of the piece's sounding time under the profile (minus the
    cross-entropy, nats), the profile floored at ``PROBABILITY_FLOOR`` as the theory prior floors it: a
    note outside the mode's scale costs what it costs the prior (F# in A minor, ~log 0.01). ``pearson``:
    the correlation of the histogram with the profile, as Krumhansl-Schmuckler; dominated by the large
    shares (tonic, fifth), so a corpus's tonic emphasis outweighs the one note that tells two modes apart."""
    if method not in MODE_METHODS:
        raise ConfigError(f"unknown mode estimate {method!r}; choose one of {', '.join(MODE_METHODS)}")
    histogram = pitch_class_durations(piece)
    if histogram.std() == 0 or not candidates:
        return None
    modes = list(candidates)
    # row [m, t]: profile of mode m with its tonic on pitch class t (np.roll moves index 0, the tonic, to t)
    table = np.array([[np.roll(candidates[m], t) for t in range(12)] for m in modes])  # (modes, 12, 12)
    if method == "likelihood":
        floored = np.maximum(table / table.sum(axis=2, keepdims=True), PROBABILITY_FLOOR)
        log_p = np.log(floored / floored.sum(axis=2, keepdims=True))
        return modes, log_p @ (histogram / histogram.sum())
    spread = table.std(axis=2, keepdims=True)
    spread[spread == 0] = 1.0  # a flat profile correlates with nothing (r = 0)
    table = (table - table.mean(axis=2, keepdims=True)) / spread
    return modes, table @ ((histogram - histogram.mean()) / histogram.std()) / 12


def estimate_mode(piece: Piece, profiles: Mapping[str, Mapping[str, object]], *, tonic: int | None = None,
                  also: str | None = None, method: str = "likelihood") -> tuple[int, str] | None:
    """(tonic pitch class, mode) whose corpus profile, rotated to that tonic, fits the piece's duration-weighted
    pitch-class histogram best (``_mode_scores``); the candidates are the modes the corpus has enough tunes
    of, and ``also`` (``_mode_candidates``). With ``tonic`` only that tonic is tried (which mode *on the
    requested tonic*). None for a piece without notes, a flat histogram, or no candidate. Raises
    ``ConfigError`` for an unknown ``method``."""
    scored = _mode_scores(piece, _mode_candidates(profiles, also), method)
    if scored is None:
        return None
    modes, score = scored
    if tonic is not None:
        return tonic % 12, modes[int(np.argmax(score[:, tonic % 12]))]
    m, t = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(t), modes[int(m)]


def mode_adherence(piece: Piece, requested: Key, profiles: Mapping[str, Mapping[str, object]],
                   method: str = "likelihood") -> dict[str, bool]:
    """F1 by mode, with the training corpus's own mode profiles (``profiles`` = ``mode_profiles(train texts)``).

    ``exact``: the best (tonic, mode) over every candidate mode and tonic is the requested one. ``mode``: on
    the requested tonic, the best candidate mode is the requested mode (``A dorian`` asked, the notes fit
    the corpus's A dorian better than its A minor or A major). Both False for a piece without notes. Raises
    ``ConfigError`` for a requested key without a tonic (``K:none``) or an unknown ``method``."""
    if not requested.tonic:
        raise ConfigError(f"key {requested.label!r} has no tonic to estimate a mode on; request e.g. 'A dorian'")
    wanted = canonical_mode(requested.mode)
    tonic = requested.tonic_semitone()
    scored = _mode_scores(piece, _mode_candidates(profiles, wanted), method)
    if scored is None:
        return {"exact": False, "mode": False}
    modes, score = scored
    m, t = np.unravel_index(int(np.argmax(score)), score.shape)
    return {"exact": int(t) == tonic and modes[int(m)] == wanted,
            "mode": modes[int(np.argmax(score[:, tonic]))] == wanted}


# ---------------------------------------------------------------- tempo

def tempo_class(piece: Piece) -> str:
    """The tempo label of a piece's header as the corpus labeller gives it (``corpus.labels.tempo_label``:
    ``slow``/``moderate``/``fast`` from ``Q:``'s beats a minute, else from tempo words in it); "" without
    one. The header is the normalised one (``read_piece``), which has no ``N:``, as the corpus builder
    labels normalised tunes: ``N:"Slow"`` gives a corpus row no tempo, and gives none here."""
    if piece.tune is None:
        return ""
    return tempo_label(tempo_bpm(piece.tune.get("Q")), piece.tune.get_all("N") + piece.tune.get_all("Q"))


def tempo_adherence(piece: Piece, requested_tempo: str) -> bool:
    """The tempo class of the piece's header (``tempo_class``) is the requested one (spelt as the corpus
    spells it). A tune without ``Q:`` has none and misses."""
    label = tempo_class(piece)
    return bool(label) and label == normalise_label("tempo", requested_tempo)


# ---------------------------------------------------------------- meter, bars and form (F2, F3)

_METER_ALIASES = {"C": "4/4", "C|": "2/2"}


def _meter_text(text: str) -> str:
    compact = re.sub(r"\s+", "", text.split("%")[0])
    return _METER_ALIASES.get(compact, compact)


def meter_adherence(piece: Piece, requested_meter_text: str) -> bool:
    """F2: the header's ``M:`` is the requested meter (as text: 6/8 is not 3/4; ``C`` = 4/4, ``C|`` = 2/2)
    and every bar passes the bar check against it."""
    if piece.tune is None or piece.check is None:
        return False
    written = piece.tune.get("M")
    return written is not None and _meter_text(written) == _meter_text(requested_meter_text) and piece.check.report.ok


def bars_adherence(piece: Piece, requested_bars: int, form: str | None = None) -> bool:
    """F3: the piece has exactly ``requested_bars`` bars with music, no pickup counted, neither the tune's nor
    a section's (``idiom.bars_without_pickups``, as evaluation draws the request from a real tune, and as
    the constrained decoder writes them: full bars and at most a leading pickup). With a ``form`` the
    request counts *played* bars (the pipeline's ``bars``): the written count is ``written_bars``."""
    if piece.check is None:
        return False
    endings = piece.tune is not None and any(
        e.kind == ev.ENDING or (e.kind == ev.BAR and any(c.isdigit() for c in e.text)) for e in piece.tune.events())
    written = written_bars(form, requested_bars, endings) if form else requested_bars
    return bars_without_pickups(piece.check.report.bars) == written


def _section_pattern(form: str) -> list[int]:
    """Run lengths of a form's letters: ``AABB`` -> [2, 2], ``ABAC`` -> [1, 1, 1, 1]."""
    return [len(m.group(0)) for m in re.finditer(r"(.)\1*", form)]


def form_adherence(piece: Piece, requested_form: str, *, letters: bool = True) -> bool:
    """F3: the form re-derived from the piece (``derive_form``: sections split at repeats and double bars,
    sections with identical bars get the same letter; one plain section is ``A``) against ``requested_form``.

    ``letters=True`` asks for the same letters (``ABAC`` needs the third section to repeat the first's
    music); ``letters=False`` only for the same sections in the same order, each repeated or not
    (``AABB`` = two repeated sections), which is what constrained decoding enforces: it does not make a
    reused letter repeat earlier music."""
    if piece.tune is None:
        return False
    wanted = re.sub(r"[^A-Z]", "", requested_form.upper())
    try:
        derived = derive_form(piece.tune.events(), piece.tune.get("P")) or "A"
    except AbcgenError:
        return False
    if letters:
        return derived == wanted
    return _section_pattern(derived) == _section_pattern(wanted)

