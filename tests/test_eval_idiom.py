"""Folk idiom and form (abcgen.evaluation.idiom): real O'Neill's tunes with values counted by hand, hand-written
edge cases (a tune ending on the dominant, a 6/8 bar with nothing on its second beat, second endings), the
bar count evaluation asks for (no pickup counted), and the report's "Folk idiom and form" section."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from abcgen.controls import ControlVocabulary, condition_names
from abcgen.corpus.build import Job, tune_row
from abcgen.corpus.sources import read_text, resolve_sources
from abcgen.evaluation import idiom, metrics
from abcgen.evaluation.generate import draw_requests
from abcgen.evaluation.report import EvaluationInputs, evaluate_texts, report_markdown
from abcgen.notation.bars import counted_bars
from abcgen.notation.keys import parse_key
from abcgen.notation.piece import Piece, read_piece
from abcgen.notation.tune import normalise_tune, parse_tune, split_tunes


def tune(body: str, *, meter: str = "6/8", length: str = "1/8", key: str = "D") -> Piece:
    return read_piece(f"X:1\nT:t\nM:{meter}\nL:{length}\nK:{key}\n{body}\n")


@pytest.fixture(scope="module")
def oneills_texts() -> list[str]:
    """Every tune of O'Neill's 1850 as written."""
    texts: list[str] = []
    for source in resolve_sources(["music21:oneills1850"]):
        text, _ = read_text(source.path)
        texts += [part.text for part in split_tunes(text or "")]
    return texts


@pytest.fixture(scope="module")
def oneills(oneills_texts: list[str]) -> dict[str, str]:
    """O'Neill's 1850 tunes by title (the first of each title)."""
    by_title: dict[str, str] = {}
    for text in oneills_texts:
        by_title.setdefault(parse_tune(text).get("T") or "", text)
    return by_title


def _music_bars(piece: Piece) -> list:
    return [b for b in piece.check.report.bars if b.has_notes]


# ---------------------------------------------------------------- real tunes, counted by hand


def test_a_real_jig_with_pickups(oneills: dict[str, str]) -> None:
    """The Cock and Hen (K:G, 6/8): a pickup, 8 bars, the B part's pickup, 8 bars."""
    piece = read_piece(oneills["Cock and Hen., The"])
    assert piece.ok
    values = idiom.idiom_values(piece)
    assert {k for k in values if k.startswith("uses_") and values[k] == 1.0} == {"uses_slurs"}
    assert values["strong_beats"] == 1.0  # a jig: a note on both dotted quarters of every full bar
    assert values["ends_on_tonic"] == 1.0  # ... BGG G2||
    # phrase ends: A bar 4 "cAA A2 (d/c/)" ends on its lead-in c (not G B D), A bar 8 "BGG G2" on G; the
    # same in the B part
    assert values["phrase_cadence"] == pytest.approx(0.5)
    # 18 bars with notes (two pickups): A bars 5-6 repeat bars 1-2; B bars 4-8 repeat A bars 4-8
    assert values["bar_repeats"] == pytest.approx(7 / 18)
    bars = _music_bars(piece)
    assert len(counted_bars(bars)) == 17 and idiom.bars_without_pickups(bars) == 16


def test_a_real_hornpipe_with_broken_rhythm(oneills: dict[str, str]) -> None:
    """Hick's Hornpipe (M:C, K:G): dotted pairs throughout; 4/4 counts its two half bars as the beats."""
    piece = read_piece(oneills["Hick's Hornpipe"])
    values = idiom.idiom_values(piece)
    assert values["uses_broken"] == 1.0 and values["uses_slurs"] == 1.0 and values["uses_tuplets"] == 0.0
    assert values["strong_beats"] == 1.0 and values["ends_on_tonic"] == 1.0
    assert values["phrase_cadence"] == pytest.approx(0.5)  # bars 4 end on the lead-in "B>c" / "d>c"
    assert idiom.bars_without_pickups(_music_bars(piece)) == 16


def test_evaluation_asks_a_real_tune_with_a_pickup_for_its_full_bars(oneills: dict[str, str]) -> None:
    """The corpus row of a tune with a pickup and a B-part pickup says 17 bars (counted_bars leaves out the
    first pickup only); evaluation asks for the 16 bars a player counts."""
    text = oneills["Cock and Hen., The"]
    row, reason = tune_row(normalise_tune(text), Job("music21:oneills1850", "oneills", 0, text), "reject")
    assert row is not None, reason
    assert row["num_bars"] == 17
    vocabulary = ControlVocabulary.from_rows([row], min_count=1)
    request = draw_requests([row], vocabulary, condition_names(), 1, seed=0)[0]
    assert request.conditions["bars"] == 16
    assert draw_requests([row], vocabulary, condition_names(), 1, seed=0, max_bars=8)[0].conditions["bars"] == 8
    # a row without its tune (as in the registry's tests) keeps its column
    assert draw_requests([{**row, "abc": ""}], vocabulary, condition_names(), 1, seed=0)[0].conditions["bars"] == 17


def test_real_shares_near_the_reference(oneills_texts: list[str]) -> None:
    """Every tenth tune of O'Neill's 1850 (its first hundred are slow airs, not a fair sample) against
    folk-idiom.md's counts over the whole collection."""
    values = [idiom.idiom_values(p) for p in map(read_piece, oneills_texts[::10]) if p.readable]

    def share(name: str) -> float:
        kept = [v[name] for v in values if not math.isnan(v[name])]
        return sum(kept) / len(kept)

    shares = {name: round(share(name), 3) for name in idiom.IDIOM_VALUE_NAMES}
    print(f"\nO'Neill's ({len(values)} tunes): {shares}")
    expected = {"uses_broken": 0.41, "uses_tuplets": 0.30, "uses_grace": 0.32, "uses_ties": 0.11,
                "ends_on_tonic": 0.82, "bar_repeats": 0.24}
    for name, reference in expected.items():
        assert abs(shares[name] - reference) < 0.1, (name, shares[name])
    assert shares["strong_beats"] > 0.8


# ---------------------------------------------------------------- hand-written edge cases


def test_a_tune_ending_on_the_dominant() -> None:
    # K:D, two 4-bar phrases: bar 4 ends on E (not D F# A), bar 8 on A (the dominant: a triad note, not the tonic)
    piece = tune("|: DFA dAF | DFA d2A | Bcd AFD | E3 E3 :|\nDFA dAF | DFA d2A | Bcd AFD | A3 A3 |]")
    values = idiom.idiom_values(piece)
    assert values["ends_on_tonic"] == 0.0
    assert values["phrase_cadence"] == pytest.approx(0.5)


def test_a_six_eight_bar_with_nothing_on_its_second_beat() -> None:
    # bar 2: d4 e2 starts notes at 0 and 1/2, not at 3/8; bar 3: a tie over the beat; bar 4: a rest on it
    piece = tune("DFA dAF | d4 e2 | d3- d2 A | d3 z3 | DFA d3 |]")
    assert idiom.idiom_values(piece)["strong_beats"] == pytest.approx(2 / 5)


def test_reel_beats_are_half_bars_and_pickups_are_not_bars_of_the_beat_count() -> None:
    reel = tune("A | d4 e2 f2 | d6 e2 | dBAF ABdf | d8 |]", meter="C")
    # full bars: "d4 e2 f2" (0, 1/2) yes; "d6 e2" (0, 3/4) no; "dBAF ABdf" yes; "d8" no; the pickup is not full
    assert idiom.idiom_values(reel)["strong_beats"] == pytest.approx(2 / 4)


def test_main_beats_per_meter() -> None:
    eighth, quarter = Fraction(1, 8), Fraction(1, 4)
    cases = {"6/8": (0, 3 * eighth), "9/8": (0, 3 * eighth, 6 * eighth), "12/8": (0, 3 * eighth, 6 * eighth,
             9 * eighth), "4/4": (0, Fraction(1, 2)), "C": (0, Fraction(1, 2)), "C|": (0, Fraction(1, 2)),
             "2/2": (0, Fraction(1, 2)), "3/4": (0, quarter, 2 * quarter), "2/4": (0, quarter)}
    for text, beats in cases.items():
        meter = Fraction(4, 4) if text.startswith("C") else Fraction(text)
        assert idiom.main_beats(text, meter) == tuple(Fraction(b) for b in beats), text
    assert idiom.main_beats("none", None) is None


def test_tonic_triads_of_modes() -> None:
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]

    def triad(key: str) -> set[str]:
        return {names[pc] for pc in idiom.tonic_triad(parse_key(key))}

    assert triad("D") == {"D", "F#", "A"}
    assert triad("Ador") == {"A", "C", "E"}  # the tonic of A dorian is A
    assert triad("Emin") == {"E", "G", "B"}
    assert triad("Gmix") == {"G", "B", "D"}
    assert triad("Bloc") == {"B", "D", "F"}
    assert idiom.tonic_triad(parse_key("none")) == frozenset()
    dorian = tune("|: EAA ABd | e2d BAG | EAA ABd | edB A3 :|", key="Ador")
    assert idiom.idiom_values(dorian)["ends_on_tonic"] == 1.0
    assert math.isnan(idiom.idiom_values(tune("DFA dAF | d3 d3 |]", key="none"))["ends_on_tonic"])


def test_second_endings_are_numbered_from_the_first() -> None:
    piece = tune("|: A | B3 B3 | c3 c3 | d3 d3 | e3 e3 | f3 f3 | g3 g3 | a3 a3 |1 b3 b2 :|2 b3 b2 A ||\n"
                 "P:B\nf | B3 B3 | c3 c3 | d3 d3 | e3 e3 |]")
    numbered = [(b.ending, n) for b, n in idiom.numbered_bars(_music_bars(piece))]
    assert [n for _, n in numbered] == [1, 2, 3, 4, 5, 6, 7, 8, 8, 1, 2, 3, 4]
    assert numbered[7][0] == "1" and numbered[8][0] == "2"
    ends = idiom.phrase_end_bars(_music_bars(piece))
    assert [b.ending for b in ends] == ["", "1", "2", ""]  # bar 4, both bars 8, the B part's bar 4
    assert idiom.bars_without_pickups(_music_bars(piece)) == 13  # 7 + two endings + 4: no pickup


def test_a_pickup_alone_before_the_first_repeat_is_not_a_bar() -> None:
    piece = tune("g |: fed cAA | eAA cBA | fed cAA | BGB dBG :|")
    assert idiom.bars_without_pickups(_music_bars(piece)) == 4


def test_bar_repeats_compare_notes_not_texts() -> None:
    # the bar texts keep notes and rests only: "A>B c>d" and "AB cd" read alike, their notes do not
    dotted = tune("A>B c>d | AB cd | A>B c>d |]", meter="2/4")
    values = metrics.piece_values(dotted)
    assert values["self_similarity"] == 1.0  # text: bars 2 and 3 repeat bar 1
    assert values["bar_repeats"] == pytest.approx(1 / 3)  # notes: only bar 3 repeats bar 1
    # a decoration and a chord symbol do not change the notes
    assert idiom.idiom_values(tune('DFA dAF | "D"DFA ~d2F |]'))["bar_repeats"] == 0.0
    assert idiom.idiom_values(tune('DFA dAF | "D"DFA .dAF |]'))["bar_repeats"] == pytest.approx(1 / 2)


def test_unreadable_and_free_meter_pieces_get_nan() -> None:
    unreadable = idiom.idiom_values(read_piece("X:1\nT:t\nM:4/4\nL:1/4\nK:Hq\nC D E F |\n"))
    assert set(unreadable) == set(idiom.IDIOM_VALUE_NAMES)
    assert all(math.isnan(v) for v in unreadable.values())
    free = idiom.idiom_values(tune("DFA dAF | d3 d3 |]", meter="none"))
    assert math.isnan(free["strong_beats"]) and free["ends_on_tonic"] == 1.0


# ---------------------------------------------------------------- the report


def test_the_report_has_a_folk_idiom_section(oneills: dict[str, str]) -> None:
    real = [oneills["Cock and Hen., The"], oneills["Hick's Hornpipe"]]
    generated = ["X:1\nT:g\nM:6/8\nL:1/8\nK:D\nDFA dAF | d4 e2 | DFA dAF | A3 A3 |]\n"]
    report = evaluate_texts(EvaluationInputs(generated=generated, real=real), n_resamples=20, abc2midi=False)
    rows = {m["name"]: m for m in report["metrics"]}
    assert rows["strong_beats"]["generated"]["value"] == pytest.approx(75.0)
    assert rows["strong_beats"]["real"]["value"] == pytest.approx(100.0)
    assert rows["ends_on_tonic"]["generated"]["value"] == 0.0 and rows["ends_on_tonic"]["real"]["value"] == 100.0
    assert rows["uses_broken"]["real"]["value"] == 50.0 and rows["uses_broken"]["tier"] == "G1"
    markdown = report_markdown({**report, "model": {"path": None}, "data": {}, "decoding": None})
    main, section = markdown.split("## Folk idiom and form")
    assert "| G2 | ends_on_tonic | % | 0.0" in section and "ends_on_tonic" not in main
    assert "| A1 | validity_ours |" in main
