"""Multi-voice ABC: splitting, interleaving and voice alignment, on Bach chorales and small examples."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import music21  # noqa: E402 -- a dependency: a missing install must fail, not skip
import pytest

from abcgen.errors import AbcParseError
from abcgen.notation.musicxml import musicxml_to_abc
from abcgen.notation.voices import (
    check_voices_in_step,
    deinterleave_voices,
    interleave_voices,
    split_bar_texts,
    split_voices,
    strip_abc_comment,
    voice_bar_durations,
)

TWO_VOICES = (
    "X:1\nT:Two\nL:1/8\nM:3/4\nV:1 treble\nV:2 bass\nK:G\n"
    'V:1\n|: G2 | A2 B2 c2 :|1 d6 :|2 "^a|b" [K:D] d4 |]\n'
    "V:2\n|: G,2 | A,2 B,2 C2 :|1 D,6 :|2 D,4 |]\n"
)


@pytest.fixture(scope="module")
def chorales() -> dict[str, str]:
    """About 40 chorales (every tenth) converted by musicxml_to_abc, any number of voices."""
    paths = sorted(Path(p) for p in music21.corpus.getComposer("bach") if Path(p).suffix == ".mxl")
    return {path.name: musicxml_to_abc(path) for path in paths[::10]}


def test_split_bars_keeps_bar_lines_and_endings() -> None:
    assert split_bar_texts('|: G2 | A2 "C|G" B2 !x|y! c2 :|1 d6 :|2 [K:D] d4 |]') == [
        "|: G2 |",
        'A2 "C|G" B2 !x|y! c2 :|1',
        "d6 :|2",
        "[K:D] d4 |]",
    ]
    assert split_bar_texts("abc | def") == ["abc |", "def"]
    assert split_bar_texts("a2 :: b2 || [|c2|]") == ["a2 ::", "b2 ||", "[| c2|]"]


def test_strip_abc_comment() -> None:
    assert strip_abc_comment("abc | def | %12") == "abc | def |"
    assert strip_abc_comment('"^50%" abc \\% x') == '"^50%" abc \\% x'


def test_split_voices_reads_all_layouts() -> None:
    header, voices = split_voices(TWO_VOICES)
    assert header[-1] == "K:G" and "V:2 bass" in header
    assert list(voices) == ["1", "2"]
    assert voices["2"] == "|: G,2 | A,2 B,2 C2 :|1 D,6 :|2 D,4 |]"
    # xml2abc's raw layout: definitions after K:, bar-number comments, lyrics.
    raw = "X:1\nL:1/8\nK:C\nV:1 treble\nV:2 bass\nV:1\n C2 D2 | %1\nw: la la\nV:2\n C,4 | %1\n"
    header, voices = split_voices(raw)
    assert header == ["X:1", "L:1/8", "K:C", "V:1 treble", "V:2 bass"]
    assert voices == {"1": "C2 D2 |", "2": "C,4 |"}
    # Interleaved, with a voice switch written in the middle of a line.
    header, voices = split_voices("X:1\nK:C\n[V:1]C4|[V:2 clef=bass]C,4|\n[V:1]D4|][V:2]D,4|]\n")
    assert voices == {"1": "C4|\nD4|]", "2": "C,4|\nD,4|]"}
    # No V: at all: one voice called "1".
    assert split_voices("X:1\nK:C\nCDEF|\n")[1] == {"1": "CDEF|"}


def test_split_voices_needs_k() -> None:
    with pytest.raises(AbcParseError, match="K:"):
        split_voices("X:1\nT:no key\n")


def test_interleave_small_example() -> None:
    interleaved = interleave_voices(TWO_VOICES)
    assert interleaved.splitlines()[7:] == [
        "[V:1]|: G2 |[V:2]|: G,2 |",
        "[V:1]A2 B2 c2 :|1[V:2]A,2 B,2 C2 :|1",
        "[V:1]d6 :|2[V:2]D,6 :|2",
        '[V:1]"^a|b" [K:D] d4 |][V:2]D,4 |]',
    ]
    assert deinterleave_voices(interleaved) == TWO_VOICES


@pytest.mark.slow
def test_interleave_round_trip_is_exact_on_chorales(chorales: dict[str, str]) -> None:
    assert len(chorales) >= 30
    for name, abc in chorales.items():
        interleaved = interleave_voices(abc)
        _, voices = split_voices(abc)
        body = [line for line in interleaved.splitlines() if line.startswith("[V:")]
        assert len(body) == len(split_bar_texts(next(iter(voices.values())))), name
        assert all(line.count("[V:") == len(voices) for line in body), name
        assert deinterleave_voices(interleaved) == abc, name


def test_interleave_rejects_unequal_bar_counts() -> None:
    with pytest.raises(AbcParseError, match="numbers of bars"):
        interleave_voices("X:1\nK:C\nV:1\nC4|D4|\nV:2\nC,4|\n")


@pytest.mark.slow
def test_voice_bar_durations_and_step_check(chorales: dict[str, str]) -> None:
    durations = voice_bar_durations(TWO_VOICES)
    assert durations["1"] == [Fraction(1, 4), Fraction(3, 4), Fraction(3, 4), Fraction(1, 2)]
    assert durations["1"] == durations["2"]
    assert check_voices_in_step(TWO_VOICES) == []
    out_of_step = TWO_VOICES.replace("A,2 B,2 C2", "A,2 B,2 C")
    (mismatch,) = check_voices_in_step(out_of_step)
    assert mismatch.bar == 2
    assert mismatch.durations == {"1": Fraction(3, 4), "2": Fraction(5, 8)}
    missing_bar = "X:1\nL:1/4\nK:C\nV:1\nC4|D4|\nV:2\nC,4|\n"
    assert check_voices_in_step(missing_bar)[0].durations == {"1": Fraction(1), "2": None}
    # The four-voice chorales in the sample are all in step.
    for name, abc in chorales.items():
        if len(split_voices(abc)[1]) == 4:
            assert check_voices_in_step(abc) == [], name
