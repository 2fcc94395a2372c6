"""Novelty index: known similarities on built melodies, and exactness against a plain Python Levenshtein."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from fractions import Fraction

import pytest

from abcgen.evaluation.novelty import NoveltyIndex, copy_report, melody_symbols
from abcgen.notation.piece import Piece, read_piece
from abcgen.notation.transpose import transpose_tune
from abcgen.notation.tune import normalise_tune

HEADER = "X:1\nT:{title}\nM:4/4\nL:1/8\nK:D\n"
LETTERS = "DEFGABcdefgab"


def melody_abc(notes: list[str], title: str = "made") -> str:
    """A tune of the given notes (ABC note texts), eight to a bar."""
    bars = [" ".join(notes[i:i + 8]) for i in range(0, len(notes), 8)]
    return HEADER.format(title=title) + " | ".join(bars) + " |]\n"


@pytest.fixture(scope="module")
def forty_notes() -> list[str]:
    rng = random.Random(3)
    return [rng.choice(LETTERS) for _ in range(40)]


@pytest.fixture(scope="module")
def real_pieces(real_tune_pieces: list[Piece]) -> list[Piece]:
    return [p for p in real_tune_pieces if p.melody]


def levenshtein(a: list, b: list) -> int:
    """Plain dynamic-programming edit distance (insert, delete, substitute: 1 each)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def brute_force_similarity(query: Piece, training: list[Piece]) -> float:
    a = melody_symbols(query)
    return max(1 - levenshtein(a, b) / max(len(a), len(b)) for b in map(melody_symbols, training))


def test_symbols_are_intervals_and_durations() -> None:
    piece = read_piece(melody_abc(["D", "F2", "A", "d/2"]))
    assert melody_symbols(piece) == [(None, Fraction(1, 8)), (4, Fraction(1, 4)), (3, Fraction(1, 8)),
                                     (5, Fraction(1, 16))]


def test_known_similarities(forty_notes: list[str], real_pieces: list[Piece]) -> None:
    original = read_piece(melody_abc(forty_notes), "original")
    index = NoveltyIndex(real_pieces[:100] + [original])

    itself = index.nearest(original)
    assert (itself.similarity, itself.index, itself.name, itself.exact_copy) == (1.0, 100, "original", True)

    up_a_fourth = read_piece(transpose_tune(normalise_tune(melody_abc(forty_notes)), 5).to_abc())
    assert up_a_fourth.melody[0].pitch == original.melody[0].pitch + 5
    assert index.nearest(up_a_fourth).similarity == 1.0

    longer = list(forty_notes)
    longer[20] = longer[20] + "2"  # one duration changed: one symbol of 40
    assert index.nearest(read_piece(melody_abc(longer))).similarity == pytest.approx(39 / 40)

    other_pitch = list(forty_notes)
    other_pitch[20] = LETTERS[(LETTERS.index(other_pitch[20]) + 2) % len(LETTERS)]
    # a pitch in the middle changes the interval into it and out of it: two symbols of 40
    assert index.nearest(read_piece(melody_abc(other_pitch))).similarity == pytest.approx(38 / 40)

    last_pitch = forty_notes[:-1] + ["c'"]  # the last interval only
    assert index.nearest(read_piece(melody_abc(last_pitch))).similarity == pytest.approx(39 / 40)

    assert index.nearest(read_piece(melody_abc(forty_notes[::-1]))).similarity < 0.5


def test_pieces_without_melody_have_no_score(real_pieces: list[Piece]) -> None:
    index = NoveltyIndex([read_piece("not a tune"), *real_pieces[:20]])
    assert len(index) == 20
    unreadable = read_piece("X:1\nK:D\n|: z4 | z4 :|\n")
    neighbour = index.nearest(unreadable)
    assert math.isnan(neighbour.similarity) and neighbour.index == -1
    # positions count every piece given, also those left out of the search
    assert index.nearest(real_pieces[5]).index == 6


def test_copy_report(forty_notes: list[str], real_pieces: list[Piece]) -> None:
    training = real_pieces[:150]
    index = NoveltyIndex(training)
    copied = training[10]
    transposed = replace(copied, melody=[replace(n, pitch=n.pitch - 3) for n in copied.melody])
    report = copy_report([copied, transposed, read_piece(melody_abc(forty_notes)), read_piece("nothing")], index)
    assert report["similarities"][:2] == [1.0, 1.0]
    assert report["similarities"][2] < 0.85
    assert math.isnan(report["similarities"][3])
    assert (report["exact_copies"], report["without_melody"], report["pieces"]) == (2, 1, 4)
    assert report["copy_rate"] == pytest.approx(2 / 3)
    assert report["median_similarity"] == 1.0
    assert report["nearest"][0] == copied.name


def _edited(piece: Piece, rng: random.Random) -> Piece:
    """A near-copy: transposed, with 1-6 notes deleted, inserted or lengthened."""
    notes = [replace(n, pitch=n.pitch + 2) for n in piece.melody]
    for _ in range(rng.randint(1, 6)):
        position = rng.randrange(len(notes))
        kind = rng.choice(("delete", "insert", "duration"))
        if kind == "delete" and len(notes) > 2:
            del notes[position]
        elif kind == "insert":
            notes.insert(position, replace(notes[position], pitch=notes[position].pitch + rng.choice((-2, 1, 5))))
        else:
            notes[position] = replace(notes[position], duration=notes[position].duration * 2)
    return Piece(abc="", name=f"edited {piece.name}", melody=notes)


@pytest.mark.slow
def test_index_agrees_with_brute_force_on_real_tunes(real_pieces: list[Piece]) -> None:
    """Exactness: the best similarity over the training tunes, by the index and by a plain Python
    Levenshtein, on real tunes, their near-copies and unrelated tunes."""
    rng = random.Random(0)
    short = [p for p in real_pieces if len(p.melody) <= 60]
    rng.shuffle(short)
    training, unrelated = short[:40], short[40:70]
    queries = [_edited(p, rng) for p in rng.sample(training, 20)] + unrelated
    index = NoveltyIndex(training)
    found = index.nearest_many(queries)
    for query, neighbour in zip(queries, found, strict=True):
        expected = brute_force_similarity(query, training)
        assert neighbour.similarity == pytest.approx(expected, abs=1e-12)
        assert index.nearest(query).similarity == pytest.approx(expected, abs=1e-12)
        # the reported neighbour really is at that similarity
        best = training[neighbour.index]
        assert brute_force_similarity(query, [best]) == pytest.approx(expected, abs=1e-12)
    near = [n.similarity for n in found[:20]]
    assert min(near) > 0.7  # near-copies are found as such...
    assert max(n.similarity for n in found[20:]) < 0.85  # ... and unrelated tunes are not copies
