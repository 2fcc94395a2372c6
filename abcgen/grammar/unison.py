"""The unison penalty: a note that repeats the melody note before it loses ``penalty`` logits.

Small language models trained on folk tunes repeat notes far more than the tunes do: the quickstart model
writes a unison (the same letter and octave as the note before) in about a quarter of its melodic steps,
where the training tunes have 5-12 % (reels 7.5 %, jigs 11.8 %, hornpipes 4.9 %). Runs such as ``AAAA|GGG``
are what a player hears as a machine marking time, and they also read as the wrong dance to a style
classifier (interval n-grams are most of its features). ``AbcConstraint(unison_penalty=P)`` subtracts ``P``
from the logit of every note that would repeat the previous melody note (its odds fall by ``e**P``); the
logits processor then keeps the notes' total probability (``abcgen.grammar.processor.weigh``), so the
penalty decides *which* note comes, not whether a note, a bar line or an ornament does. Nothing is masked:
a repeated note stays possible (and is the only choice after a tie, where the penalty changes nothing).

What counts, in the order the tune is written (bar lines and spaces in between do not break it):

- The melody note is the last plain note: grace notes (``{g}``) and the notes of a chord (``[DF]``) are
  not melody notes, and a chord or a rest leaves no melody note to repeat.
- A note after grace notes or a decoration (``A{B}A``, ``A~A``) is exempt: an ornamented repeated note is
  the idiom (a cut or a roll on a long note), not a machine marking time.
- Pitches compare by letter and octave; an accidental written on the same letter (``A^A``, rare in the
  corpus) counts as a repeat too -- the penalty is a weighting, not a rule of ABC.
- A two-note token (``AB``) is penalised for its first note against the melody note before it, and for
  its second note against its first.

The penalty depends on the previous pitch, which the grammar's cached decisions do not (their keys would
multiply by every pitch): ``UnisonPenalty`` keeps one bonus vector per previous pitch and the constraint
adds it to the cached decision's bonus.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from abcgen.grammar.errors import GrammarConfigError
from abcgen.grammar.vocabulary import CHORD_OPEN, COMPOSITE, NOTE, MusicVocabulary, _pitch_of

PitchKey = tuple[str, int]  # (letter upper case, octave): what a repeated note shares with the note before

# what a token leaves as the melody note: a pitch, None (a rest, a chord), or _KEEP (the note before stays: bar
# lines, spaces, and what stands before a note -- slurs, tuplets, grace groups, chord symbols, decorations)
_KEEP = object()


def check_unison_penalty(value: Any, name: str = "unison_penalty") -> float:
    """A finite number >= 0 (logits), returned as a float; anything else is one ``GrammarConfigError`` line."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise GrammarConfigError(f"{name}={value!r}: give a penalty of 0 or more in logits, e.g. 1 (0 = off: the "
                                 "model's own repeated notes)")
    return float(value)


class UnisonPenalty:
    """Per previous melody pitch, the logit penalty of every token of ``vocab`` (a float tensor of shape (V,))."""

    def __init__(self, vocab: MusicVocabulary, penalty: float) -> None:
        self.penalty = float(penalty)
        size = vocab.size
        self.first: list[PitchKey | None] = [None] * size  # the token's first note's pitch (None: not a note)
        self.leaves: list[Any] = [_KEEP] * size  # the melody note after the token
        internal = torch.zeros(size)  # repeats inside a two-note token, penalised whatever came before
        for i in range(size):
            parts = vocab.parts_of[i] if vocab.cls[i] == COMPOSITE else ((vocab.cls[i], None, vocab.texts[i]),)
            melody: Any = _KEEP
            seen = False
            for cls, _value, text in parts:
                if cls != NOTE:
                    if cls == CHORD_OPEN:
                        melody = None
                    continue
                pitch = _pitch_key(vocab, i, text)
                if not seen:
                    self.first[i], seen = pitch, True
                elif pitch is not None and pitch == melody:
                    internal[i] += 1.0
                melody = pitch  # a rest (None) leaves no melody note
            self.leaves[i] = melody
        self.internal = -self.penalty * internal
        self.by_pitch: dict[PitchKey, list[int]] = {}
        for i, pitch in enumerate(self.first):
            if pitch is not None:
                self.by_pitch.setdefault(pitch, []).append(i)
        self._vectors: dict[PitchKey | None, torch.Tensor] = {}

    def vector(self, last: PitchKey | None) -> torch.Tensor:
        """The penalty of each token after melody note ``last`` (None: no melody note before), cached."""
        cached = self._vectors.get(last)
        if cached is None:
            cached = self.internal.clone()
            if last is not None:
                cached[self.by_pitch.get(last, [])] -= self.penalty
            self._vectors[last] = cached
        return cached

    def after(self, last: PitchKey | None, token_id: int, melodic: bool) -> PitchKey | None:
        """The melody note after ``token_id``; ``melodic`` False inside a grace group or a chord (their notes
        are not melody notes: a grace group keeps the note before, a chord leaves none)."""
        if not melodic:
            return last
        leaves = self.leaves[token_id] if 0 <= token_id < len(self.leaves) else None
        return last if leaves is _KEEP else leaves


def _pitch_key(vocab: MusicVocabulary, token_id: int, text: str) -> PitchKey | None:
    pitch = vocab.pitches[token_id] if vocab.cls[token_id] == NOTE else _pitch_of(text)
    return None if pitch is None else (pitch[0], pitch[1])


__all__ = ["UnisonPenalty", "check_unison_penalty"]
