"""Novelty (E1): how close each piece comes to a training tune, and how many are copies.

A melody becomes a **symbol sequence**: one symbol per note of ``Piece.melody`` for the pair (pitch
interval in semitones to the previous note, duration in whole notes); the first note's interval is a
marker of its own. A transposed copy therefore has the same sequence, and a copy written with another bar
layout, other ornaments or other chord symbols too. Similarity is the normalised Levenshtein similarity
``1 - distance / max(len_a, len_b)`` over symbols (insertion, deletion, substitution each cost 1), and a
piece's novelty score is its maximum over the training tunes.

Units of the score: one changed *duration* is one substitution (39/40 for a 40-note tune); one changed
*pitch* in the middle of a melody changes two intervals (to it and from it), so 38/40. A piece without a
melody (unreadable, rests only) has no score: ``nan``, never 0 or 1.

The search is **exact**, with no candidate stage that could miss a near-copy: every training sequence is
compared with every query by rapidfuzz's C++ Levenshtein (bit-parallel, SIMD over several short
sequences at once). Symbols are stored as one character each, so rapidfuzz reads the string buffers
directly instead of hashing Python lists element by element (measured 1.5-2x faster). Measured on
a shared 2-core machine (``benchmarks/novelty_index.py``): building the index over the 10,495-tune
training split of ``music21:all`` takes 0.8 s of CPU and 300 queries about 2 s (6-7 ms a query), so an
approximate candidate stage would buy nothing at this size and could only lose near-copies.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from abcgen._extras import needs_extra
from abcgen.errors import AbcgenError
from abcgen.notation.piece import Piece

with needs_extra("eval"):  # a missing package: one line naming pip install 'abcgen[eval]'
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

log = logging.getLogger(__name__)

COPY_THRESHOLD = 0.85
_FIRST_NOTE = None  # the interval of a melody's first note: it has no previous note
# Symbol ids become characters from here on, skipping the UTF-16 surrogate block (0xD800-0xDFFF), which a
# str may hold but which no text tool expects.
_FIRST_CODEPOINT = 0x100
_SURROGATES = (0xD800, 0xE000)
_MAX_CODEPOINT = 0x10FFFF
# cdist fills a (queries x training tunes) float32 block; this many cells at most per block (64 MB).
_MAX_BLOCK_CELLS = 16_000_000


@dataclass(frozen=True, slots=True)
class Neighbour:
    """The training tune nearest to a piece: its similarity (0..1, ``nan`` without a melody), its position
    in the list the index was built from (-1 when there is none) and its name."""

    similarity: float
    index: int
    name: str

    @property
    def exact_copy(self) -> bool:
        return self.similarity == 1.0


def melody_symbols(piece: Piece) -> list[tuple[int | None, Fraction]]:
    """The transposition-normalised melody of ``piece``: (interval to the previous note in semitones, or
    ``None`` for the first note; duration in whole notes) per note of ``piece.melody``."""
    pairs: list[tuple[int | None, Fraction]] = []
    previous: int | None = None
    for note in piece.melody:
        pairs.append((_FIRST_NOTE if previous is None else note.pitch - previous, note.duration))
        previous = note.pitch
    return pairs


def _codepoint(symbol_id: int) -> int:
    codepoint = _FIRST_CODEPOINT + symbol_id
    if codepoint >= _SURROGATES[0]:
        codepoint += _SURROGATES[1] - _SURROGATES[0]
    if codepoint > _MAX_CODEPOINT:
        raise AbcgenError(f"more than {symbol_id} distinct (interval, duration) symbols: the novelty index "
                          "encodes one symbol per character; build it from fewer or more regular tunes")
    return codepoint


class NoveltyIndex:
    """The training tunes' symbol sequences, searched exhaustively for each query's nearest neighbour.

    ``pieces`` are the training split's pieces, in order: ``Neighbour.index`` points into this list.
    Pieces without a melody are kept out of the search (they can match nothing) but keep their positions.

    ``symbols`` turns a piece into its symbol sequence (one hashable per note; default ``melody_symbols``);
    another one indexes pieces that are not ``Piece`` objects, such as MIDI (``abcgen.evaluation.midi``),
    which then need only a ``name``. Queries go through the same function.
    """

    def __init__(self, pieces: Sequence[Any], *, progress: bool = False,
                 symbols: Callable[[Any], Sequence[Hashable]] = melody_symbols) -> None:
        # Every (interval, duration) pair seen in training gets an id; a query's unseen pairs all map to one
        # reserved id that no training sequence contains, so they count as mismatches and the index stays
        # immutable. Ids are assigned in order of first appearance, so the same pieces give the same index.
        self._symbols = symbols
        self._symbol_ids: dict[Hashable, int] = {}
        self._sequences: list[str] = []
        self._positions: list[int] = []  # position in ``pieces`` of each stored sequence
        self._names: list[str] = [p.name for p in pieces]
        for position, piece in enumerate(tqdm(pieces, desc="novelty index", unit="tune", disable=not progress)):
            pairs = symbols(piece)
            if not pairs:
                continue
            ids = [self._symbol_ids.setdefault(pair, len(self._symbol_ids)) for pair in pairs]
            self._sequences.append("".join(map(chr, map(_codepoint, ids))))
            self._positions.append(position)
        self._unseen = chr(_codepoint(len(self._symbol_ids)))
        skipped = len(pieces) - len(self._sequences)
        log.info("novelty index: %d training tunes (%d without a melody left out), %d distinct symbols",
                 len(self._sequences), skipped, len(self._symbol_ids))

    def __len__(self) -> int:
        return len(self._sequences)

    @property
    def num_symbols(self) -> int:
        return len(self._symbol_ids)

    def encode(self, piece: Any) -> str:
        """``piece``'s symbol sequence as the index stores it, one character per note ("" without notes)."""
        chars = []
        for pair in self._symbols(piece):
            symbol_id = self._symbol_ids.get(pair)
            chars.append(self._unseen if symbol_id is None else chr(_codepoint(symbol_id)))
        return "".join(chars)

    def nearest(self, piece: Any) -> Neighbour:
        """The training tune of maximum normalised Levenshtein similarity to ``piece`` (the first of equals).

        rapidfuzz's ``extractOne`` raises its score cutoff to the best similarity found so far, which lets
        it skip a training tune as soon as the length difference alone rules it out; it stays exact."""
        query = self.encode(piece)
        if not query or not self._sequences:
            return Neighbour(math.nan, -1, "")
        _, score, stored = process.extractOne(query, self._sequences, scorer=Levenshtein.normalized_similarity)
        return self._neighbour(float(score), stored)

    def nearest_many(self, pieces: Sequence[Any], *, workers: int = 1, progress: bool = False) -> list[Neighbour]:
        """``nearest`` for many pieces at once: the same answers, in blocks of rapidfuzz ``cdist``
        (similarity matrix of a block of queries x all training tunes, float32), ``workers`` threads
        (-1: all cores)."""
        queries = [self.encode(p) for p in pieces]
        neighbours = [Neighbour(math.nan, -1, "")] * len(queries)
        todo = [i for i, q in enumerate(queries) if q]
        if not todo or not self._sequences:
            return neighbours
        block = max(1, _MAX_BLOCK_CELLS // len(self._sequences))
        for start in tqdm(range(0, len(todo), block), desc="nearest training tune", unit="block",
                          disable=not progress):
            rows = todo[start:start + block]
            matrix = process.cdist([queries[i] for i in rows], self._sequences,
                                   scorer=Levenshtein.normalized_similarity, dtype=np.float32, workers=workers)
            best = matrix.argmax(axis=1)  # the first maximum, as extractOne
            for row, stored in zip(rows, best.tolist(), strict=True):
                # recompute the winner in float64: float32 would turn 0.99995 into 1.0 (a false exact copy)
                score = Levenshtein.normalized_similarity(queries[row], self._sequences[stored])
                neighbours[row] = self._neighbour(score, stored)
        return neighbours

    def _neighbour(self, score: float, stored: int) -> Neighbour:
        position = self._positions[stored]
        return Neighbour(score, position, self._names[position])


def copy_report(pieces: Sequence[Any], index: NoveltyIndex, threshold: float = COPY_THRESHOLD) -> dict[str, Any]:
    """Nearest-neighbour similarity of every piece to the training tunes, and how many are copies.

    ``similarities`` has one value per piece, in order (``nan`` for a piece without a melody); the median,
    ``copy_rate`` (share at ``>= threshold``) and ``exact_copies`` (similarity 1: the same melody up to
    transposition) are over the pieces with a melody, ``without_melody`` counts the others."""
    neighbours = index.nearest_many(pieces)
    similarities = [n.similarity for n in neighbours]
    scored = [s for s in similarities if not math.isnan(s)]
    return {
        "median_similarity": statistics.median(scored) if scored else math.nan,
        "copy_rate": sum(s >= threshold for s in scored) / len(scored) if scored else math.nan,
        "exact_copies": sum(n.exact_copy for n in neighbours),
        "threshold": threshold,
        "pieces": len(similarities),
        "without_melody": len(similarities) - len(scored),
        "similarities": similarities,
        "nearest": [n.name for n in neighbours],
    }
