"""Style classifier: clear synthetic classes, real jigs against real reels, adherence counting."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from abcgen.corpus.labels import normalise_rhythm
from abcgen.corpus.sources import read_text, resolve_sources
from abcgen.errors import AbcgenError, ConfigError
from abcgen.evaluation.style import StyleClassifier, adherence, adherence_counts, piece_features
from abcgen.notation.piece import Piece, read_piece, read_pieces
from abcgen.notation.tune import normalise_tune, split_tunes

LETTERS = "DEFGABcdefg"


def _jig_like(rng: random.Random, bars: int = 8) -> str:
    """6/8: each half bar a quarter and an eighth (mostly) or three eighths."""
    groups = []
    for _ in range(2 * bars):
        a, b, c = (rng.choice(LETTERS) for _ in range(3))
        groups.append(f"{a}2{b}" if rng.random() < 0.7 else f"{a}{b}{c}")
    body = " | ".join(" ".join(groups[i:i + 2]) for i in range(0, len(groups), 2))
    return f"X:1\nT:jig-like\nM:6/8\nL:1/8\nK:D\n{body} |]\n"


def _reel_like(rng: random.Random, bars: int = 8) -> str:
    """4/4: running eighths, now and then a quarter at the end of a bar."""
    bar_texts = []
    for _ in range(bars):
        notes = [rng.choice(LETTERS) for _ in range(8)]
        if rng.random() < 0.3:
            notes = notes[:6] + [notes[6] + "2"]
        bar_texts.append("".join(notes[:4]) + " " + "".join(notes[4:]))
    return "X:1\nT:reel-like\nM:4/4\nL:1/8\nK:D\n" + " | ".join(bar_texts) + " |]\n"


def test_synthetic_classes_are_separated() -> None:
    rng = random.Random(0)
    texts = [_jig_like(rng) for _ in range(80)] + [_reel_like(rng) for _ in range(80)]
    labels = ["jig"] * 80 + ["reel"] * 80
    pieces = read_pieces(texts)
    train = [i for i in range(160) if i % 80 < 50]
    test = [i for i in range(160) if i % 80 >= 50]
    classifier = StyleClassifier().fit([pieces[i] for i in train], [labels[i] for i in train])
    assert classifier.labels == ["jig", "reel"]
    assert classifier.accuracy([pieces[i] for i in test], [labels[i] for i in test]) >= 0.95
    assert adherence(classifier, [pieces[i] for i in test], [labels[i] for i in test]) >= 0.95
    # asking every tune to be a jig: only the jig-like half adheres
    assert adherence(classifier, [pieces[i] for i in test], ["jig"] * len(test)) == pytest.approx(0.5, abs=0.05)


def test_a_judge_of_one_feature_group_reads_only_that_group() -> None:
    """The synthetic jigs and reels differ in their lengths only (the pitches are drawn alike): a durations-only
    classifier tells them apart, an intervals-only one is near chance."""
    rng = random.Random(3)
    texts = [_jig_like(rng) for _ in range(80)] + [_reel_like(rng) for _ in range(80)]
    labels = ["jig"] * 80 + ["reel"] * 80
    pieces = read_pieces(texts)
    train, test = [i for i in range(160) if i % 80 < 50], [i for i in range(160) if i % 80 >= 50]

    def accuracy(groups: tuple[str, ...]) -> float:
        classifier = StyleClassifier(feature_groups=groups).fit([pieces[i] for i in train], [labels[i] for i in train])
        return classifier.accuracy([pieces[i] for i in test], [labels[i] for i in test])

    assert accuracy(("durations",)) >= 0.95
    assert accuracy(("intervals",)) < 0.8
    whole, durations = piece_features(pieces[0], 2 ** 14), piece_features(pieces[0], 2 ** 14, feature_groups=("durations",))
    assert set(durations) < set(whole)
    with pytest.raises(ConfigError, match="feature_groups=.*give one or more of intervals, durations"):
        StyleClassifier(feature_groups=("contour",))


def _oneills_jigs_and_reels(per_label: int) -> tuple[list[Piece], list[str]]:
    texts: list[str] = []
    for source_file in resolve_sources(["music21:oneills1850"]):
        text, _ = read_text(source_file.path)
        texts += [t.text for t in split_tunes(text)] if text else []
    chosen: dict[str, list[str]] = {"jig": [], "reel": []}
    for text in texts:
        try:
            rhythm = normalise_rhythm(normalise_tune(text).get("R"))
        except AbcgenError:
            continue
        if rhythm in chosen:
            chosen[rhythm].append(text)
    rng = random.Random(1)
    pieces, labels = [], []
    for label, tunes in chosen.items():
        for text in rng.sample(tunes, per_label):
            pieces.append(read_piece(text))
            labels.append(label)
    order = list(range(len(pieces)))
    rng.shuffle(order)
    return [pieces[i] for i in order], [labels[i] for i in order]


@pytest.mark.slow
def test_real_jigs_and_reels_are_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    """O'Neill's jigs against its reels (meter is not a feature): far above the 50 % of chance."""
    pieces, labels = _oneills_jigs_and_reels(150)
    train, test = slice(0, 200), slice(200, 300)
    with caplog.at_level(logging.INFO, logger="abcgen.evaluation.style"):
        classifier = StyleClassifier(seed=0).fit(pieces[train], labels[train])
    accuracy = classifier.accuracy(pieces[test], labels[test])
    print(f"\nreal jigs vs reels (O'Neill's, 200 train / 100 test): accuracy {accuracy:.3f}")
    assert accuracy > 0.8
    assert "L-BFGS stopped" in caplog.text


def test_rare_and_empty_labels_are_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(2)
    pieces = read_pieces([_jig_like(rng) for _ in range(12)] + [_reel_like(rng) for _ in range(12)]
                         + [_reel_like(rng) for _ in range(5)])
    labels = ["jig"] * 12 + ["reel"] * 12 + ["hornpipe"] * 3 + ["", ""]
    with caplog.at_level(logging.INFO, logger="abcgen.evaluation.style"):
        classifier = StyleClassifier(min_count=5).fit(pieces, labels)
    assert classifier.labels == ["jig", "reel"]
    assert "2 unlabelled pieces and 1 labels rarer than 5 pieces: hornpipe (3)" in caplog.text

    # unknown requested labels stay in the denominator and are counted
    counts = adherence_counts(classifier, pieces[:4], ["jig", "jig", "hornpipe", "polka"])
    assert (counts.unknown_label, counts.total) == (2, 4)
    assert counts.matched <= 2 and counts.share == counts.matched / 4
    assert adherence(classifier, pieces[:4], ["jig", "jig", "hornpipe", "polka"]) == counts.share
    # accuracy leaves out true labels the classifier cannot predict
    assert classifier.accuracy(pieces[:4] + pieces[24:26], ["jig"] * 4 + ["hornpipe"] * 2) == \
        classifier.accuracy(pieces[:4], ["jig"] * 4)


def test_piece_without_melody_gets_no_label() -> None:
    rng = random.Random(3)
    pieces = read_pieces([_jig_like(rng) for _ in range(10)] + [_reel_like(rng) for _ in range(10)])
    classifier = StyleClassifier(min_count=2).fit(pieces, ["jig"] * 10 + ["reel"] * 10)
    broken = read_piece("not ABC at all")
    assert piece_features(broken, 64) == {}
    assert classifier.predict([broken, pieces[0]])[0] is None
    assert adherence_counts(classifier, [broken], ["jig"]).matched == 0


def test_deterministic_and_seed_salts_the_hash() -> None:
    rng = random.Random(4)
    pieces = read_pieces([_jig_like(rng) for _ in range(15)] + [_reel_like(rng) for _ in range(15)])
    labels = ["jig"] * 15 + ["reel"] * 15
    first = StyleClassifier(seed=1).fit(pieces, labels)
    again = StyleClassifier(seed=1).fit(pieces, labels)
    other = StyleClassifier(seed=2).fit(pieces, labels)
    np.testing.assert_array_equal(first.weights, again.weights)
    assert sorted(piece_features(pieces[0], 2 ** 14, 1)) != sorted(piece_features(pieces[0], 2 ** 14, 2))
    assert not np.array_equal(first.weights, other.weights)
    probabilities = first.probabilities(pieces[:3])
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_errors_name_the_fix() -> None:
    rng = random.Random(5)
    pieces = read_pieces([_jig_like(rng) for _ in range(4)])
    with pytest.raises(ConfigError, match="two labels"):
        StyleClassifier(min_count=1).fit(pieces, ["jig"] * 4)
    with pytest.raises(ConfigError, match="one label per piece"):
        StyleClassifier().fit(pieces, ["jig"])
    with pytest.raises(ConfigError, match="call fit"):
        StyleClassifier().predict(pieces)
    with pytest.raises(ConfigError, match="min_count"):
        StyleClassifier(min_count=0)
