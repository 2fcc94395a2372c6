"""REMI tokens in a language model's tokenizer: the vocabulary, what each token means, adding them.

Every REMI token (``Bar_None``, ``TimeSig_6/8``, ``Position_12``, ``Tempo_122.99``, ``Program_40``,
``Pitch_67``, ``Velocity_103``, ``Duration_1.12.24``; ``abcgen.notation.remi``) becomes one whole added
token of the base tokenizer, so one REMI event is one model step. REMI text is never run through the base
tokenizer's text pipeline: ``RemiPromptFormat`` (``abcgen.tokenization.prompt``) maps each space-separated
token to its id and back, so ``decode(encode(x)) == x`` for every REMI text by construction.

A new token's embedding row starts from the base rows of a readable phrase of its meaning
(``remi_token_text``: ``Pitch_67`` -> ``"note G4"``, ``Program_40`` -> ``"violin"``, ``Duration_1.12.24``
-> ``"duration 1.5 beats"``), as an ABC unit's row starts from its own characters
(``abcgen.tokenization.embeddings``).
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Any

from tokenizers import AddedToken

from abcgen.errors import ConfigError

# miditok's own special tokens: our sequences use the base tokenizer's BOS/EOS/pad instead.
_MIDITOK_SPECIALS = frozenset({"PAD_None", "BOS_None", "EOS_None", "MASK_None"})
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# General MIDI names of the programs abcgen writes (abcgen.notation.remi); others read "instrument N".
GM_NAMES: dict[int, str] = {0: "piano", 24: "nylon guitar", 25: "steel guitar", 32: "acoustic bass",
                            33: "electric bass", 40: "violin", 41: "viola", 42: "cello", 43: "contrabass",
                            48: "strings", 52: "choir", 56: "trumpet", 68: "oboe", 70: "bassoon", 71: "clarinet",
                            73: "flute", 74: "recorder", 21: "accordion", 22: "harmonica", 109: "bagpipe"}
REMI_TOKEN_RE = re.compile(r"^(Bar|TimeSig|Position|Tempo|Program|Pitch|Velocity|Duration)_[^\s]+$")


@functools.lru_cache(maxsize=1)
def remi_vocabulary() -> tuple[str, ...]:
    """The REMI tokens a model gets, in miditok's id order (miditok's PAD/BOS/EOS/MASK left out)."""
    from abcgen.notation.remi import get_remi_tokenizer

    vocab = get_remi_tokenizer().vocab
    return tuple(token for token, _ in sorted(vocab.items(), key=lambda item: item[1]) if token not in _MIDITOK_SPECIALS)


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name: 60 -> ``C4``, 67 -> ``G4``."""
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def duration_beats(value: str) -> Fraction:
    """A ``Duration_`` token's value in beats: ``"1.12.24"`` -> 3/2 (beats.positions.resolution)."""
    beats, positions, resolution = (int(part) for part in value.split("."))
    return beats + Fraction(positions, resolution)


def remi_token_text(token: str) -> str | None:
    """A readable phrase of a REMI token's meaning (the text its embedding row starts from), or None for
    a token that is not REMI."""
    kind, _, value = token.partition("_")
    if not REMI_TOKEN_RE.match(token):
        return None
    if kind == "Bar":
        return "bar line"
    if kind == "TimeSig":
        return f"time signature {value}"
    if kind == "Position":
        return f"position {value}"
    if kind == "Tempo":
        return f"tempo {round(float(value))}"
    if kind == "Program":
        return GM_NAMES.get(int(value), f"instrument {value}")
    if kind == "Pitch":
        return f"note {note_name(int(value))}"
    if kind == "Velocity":
        return f"loudness {value}"
    beats = duration_beats(value)
    return f"duration {float(beats):g} beat{'' if beats == 1 else 's'}"


def add_remi_tokens(tokenizer: Any) -> int:
    """Add every REMI token to ``tokenizer`` as a whole token (in place); returns how many were new.

    They are plain (not special) added tokens: ``decode(..., skip_special_tokens=True)`` keeps them."""
    before = len(tokenizer)
    tokenizer.add_tokens([AddedToken(token, normalized=False, lstrip=False, rstrip=False, special=False)
                          for token in remi_vocabulary()])
    return len(tokenizer) - before


def remi_token_ids(tokenizer: Any) -> dict[str, int]:
    """``{REMI token: id}`` in ``tokenizer``; ``ConfigError`` when the tokenizer lacks REMI tokens."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in remi_vocabulary() if token not in vocab]
    if missing:
        raise ConfigError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} lacks {len(missing)} REMI tokens "
                          f"(e.g. {missing[0]!r}): train with data.representation: remi (it adds them and "
                          "initialises their rows), or call abcgen.tokenization.remi.add_remi_tokens")
    return {token: vocab[token] for token in remi_vocabulary()}


__all__ = ["GM_NAMES", "add_remi_tokens", "duration_beats", "note_name", "remi_token_ids", "remi_token_text",
           "remi_vocabulary"]
