"""Keys, modes and key signatures as ABC writes them (``K:D``, ``K:Ador``, ``K:F#m``, ``K:Bb mix``).

A ``Key`` knows its tonic, its mode and the accidental each letter gets from the signature, which is
what the lexer's pitches need to become sounding pitches (for transposition, fingerprints, MIDI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from abcgen.errors import AbcParseError

LETTERS = "CDEFGAB"
# Semitones of each natural letter above C.
NATURAL_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SHARP_ORDER = "FCGDAEB"

# Mode -> number of sharps to add to the major key signature of the same tonic (dorian = major - 2).
MODE_OFFSETS = {
    "major": 0,
    "ionian": 0,
    "mixolydian": -1,
    "dorian": -2,
    "aeolian": -3,
    "minor": -3,
    "phrygian": -4,
    "locrian": -5,
    "lydian": 1,
}
# Canonical names: ABC allows any prefix of 3+ letters, "m" for minor and "maj"/"" for major.
_MODE_PREFIXES = {
    "maj": "major",
    "ion": "major",
    "mix": "mixolydian",
    "dor": "dorian",
    "aeo": "minor",
    "min": "minor",
    "m": "minor",
    "phr": "phrygian",
    "loc": "locrian",
    "lyd": "lydian",
}
# Sharps in the major key signature of each tonic spelling.
_MAJOR_SHARPS = {
    "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
    "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6, "Cb": -7,
    # Tonics whose major key would need double sharps/flats; reachable through modes (e.g. G# minor).
    "G#": 8, "D#": 9, "A#": 10, "E#": 11, "B#": 12, "Fb": -8,
}
_KEY_RE = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
_EXPLICIT_ACC_RE = re.compile(r"(\^\^|\^|__|_|=)([A-Ga-g])")


@dataclass(frozen=True, slots=True)
class Key:
    """A key: ``tonic`` like ``"F#"``, ``mode`` a canonical name, ``sharps`` the signature (-7..7, flats
    negative), ``extra`` explicit accidentals written after the key (``K:D =c``) as letter -> semitones."""

    tonic: str
    mode: str
    sharps: int
    extra: tuple[tuple[str, int], ...] = ()

    @property
    def label(self) -> str:
        """Human label used as the ``key`` control value: ``"D major"``, ``"A dorian"``."""
        return f"{self.tonic} {self.mode}" if self.tonic else "none"

    def accidentals(self) -> dict[str, int]:
        """Semitone alteration the signature gives each upper-case letter."""
        alter = dict.fromkeys(LETTERS, 0)
        if self.sharps > 0:
            for i in range(self.sharps):
                alter[SHARP_ORDER[i % 7]] += 1
        elif self.sharps < 0:
            for i in range(-self.sharps):
                alter[SHARP_ORDER[6 - i % 7]] -= 1
        for letter, semis in self.extra:
            alter[letter] = semis
        return alter

    def tonic_semitone(self) -> int:
        """Pitch class of the tonic, 0 = C."""
        if not self.tonic:
            return 0
        base = NATURAL_SEMITONES[self.tonic[0]]
        return (base + self.tonic[1:].count("#") - self.tonic[1:].count("b")) % 12


NO_KEY = Key(tonic="", mode="none", sharps=0)


def parse_key(value: str, *, tune: str | None = None) -> Key:
    """Parse the value of a ``K:`` field.

    ``K:none``/``K:`` (no signature) and the bagpipe keys ``HP``/``Hp`` are accepted; clef and other
    ``name=value`` settings after the key are ignored. Raises ``AbcParseError`` on an unreadable key.
    """
    text = value.split("%")[0].strip()
    # Drop clef=..., transpose=... and bare clef names: they do not change the key.
    words = [w for w in text.split() if "=" not in w or _EXPLICIT_ACC_RE.fullmatch(w)]
    words = [w for w in words if w.lower() not in {"treble", "bass", "alto", "tenor", "perc", "none"} or w == words[0]]
    text = " ".join(words)
    if not text or text.lower() == "none":
        return NO_KEY
    if text in ("HP", "Hp"):
        # Highland pipes: HP has no signature, Hp has F# C# (and G natural); both sound in A mixolydian.
        return Key(tonic="A", mode="mixolydian", sharps=2 if text == "Hp" else 0)
    match = _KEY_RE.match(text)
    if not match:
        raise AbcParseError(f"cannot read key {value!r}: expected a tonic A-G, e.g. 'K:D' or 'K:Ador'", tune=tune)
    letter, acc, rest = match.groups()
    tonic = letter.upper() + acc
    mode_word = rest.lower()
    remainder = text[match.end():]
    if not mode_word:
        # "K:D mix" writes the mode as a separate word.
        parts = remainder.split()
        if parts and not _EXPLICIT_ACC_RE.fullmatch(parts[0]):
            mode_word = parts[0].lower()
            remainder = remainder.replace(parts[0], "", 1)
    mode = "major"
    if mode_word:
        for prefix, name in _MODE_PREFIXES.items():
            if mode_word == prefix or (len(prefix) == 3 and mode_word.startswith(prefix)):
                mode = name
                break
        else:
            if mode_word not in ("exp",):
                raise AbcParseError(f"unknown mode {mode_word!r} in key {value!r}", tune=tune)
    sharps = _MAJOR_SHARPS.get(tonic)
    if sharps is None:
        raise AbcParseError(f"unsupported tonic {tonic!r} in key {value!r}", tune=tune)
    sharps += MODE_OFFSETS[mode]
    extra = []
    for acc_text, acc_letter in _EXPLICIT_ACC_RE.findall(remainder):
        semis = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}[acc_text]
        extra.append((acc_letter.upper(), semis))
    if "exp" in mode_word:
        sharps = 0
    return Key(tonic=tonic, mode=mode, sharps=sharps, extra=tuple(extra))


def key_for(tonic_semitone: int, mode: str, prefer_sharps: bool | None = None) -> Key:
    """The key of a given tonic pitch class and mode, spelt with the fewest accidentals (ties: sharps
    unless ``prefer_sharps`` is False)."""
    best: Key | None = None
    for tonic, major_sharps in _MAJOR_SHARPS.items():
        candidate = Key(tonic=tonic, mode=mode, sharps=major_sharps + MODE_OFFSETS[mode])
        if candidate.tonic_semitone() != tonic_semitone % 12 or abs(candidate.sharps) > 7:
            continue
        if best is None or abs(candidate.sharps) < abs(best.sharps) or (
            abs(candidate.sharps) == abs(best.sharps) and (candidate.sharps > 0) == (prefer_sharps is not False)
        ):
            best = candidate
    if best is None:  # pragma: no cover - every pitch class has a spelling within 7 accidentals
        raise ValueError(f"no key for pitch class {tonic_semitone} {mode}")
    return best


def format_key(key: Key) -> str:
    """ABC text of a key: ``D``, ``Em``, ``Ador``, ``Gmix``; extra accidentals are appended."""
    if not key.tonic:
        return "none"
    suffix = {"major": "", "minor": "m"}.get(key.mode, key.mode[:3].capitalize().lower())
    text = key.tonic + suffix
    for letter, semis in key.extra:
        text += " " + {2: "^^", 1: "^", 0: "=", -1: "_", -2: "__"}[semis] + letter.lower()
    return text
