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
"""

from __future__ import annotations

import re

import numpy as np

from abcgen.errors import AbcgenError, ConfigError
from abcgen.evaluation.idiom import bars_without_pickups
from abcgen.grammar.rules.forced import written_bars
from abcgen.notation import events as ev
from abcgen.notation.keys import NO_KEY, Key, key_for
from abcgen.notation.piece import Piece
from abcgen.notation.structure import derive_form

__all__ = [
    "KEY_PROFILES",
    "bars_adherence",
    "estimate_key",
    "form_adherence",
    "key_adherence",
    "meter_adherence",
    "mode_quality",
    "pitch_class_durations",
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
    profiles = _standardised_profiles(profile)
    histogram = pitch_class_durations(piece)
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
    wanted_quality = mode_quality(requested.mode)
    estimated = estimate_key(piece, profile)
    if not estimated.tonic:
        return {"exact": False, "signature": False}
    return {
        "exact": estimated.tonic_semitone() == requested.tonic_semitone() and estimated.mode == wanted_quality,
        # Sharps count fifths: F# major (6) and Gb major (-6) are 12 fifths apart and sound the same.
        "signature": (estimated.sharps - requested.sharps) % 12 == 0,
    }


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

