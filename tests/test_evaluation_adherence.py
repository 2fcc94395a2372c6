"""Per-condition adherence in ``abcgen evaluate`` (issue 14): the mode of a tune from the training corpus's own
pitch profiles (``abcgen.evaluation.keys.mode_adherence``), tempo from the header, and the report's one row per
requested condition with its real-data ceiling (``report.json``'s ``adherence``, ``report.md``'s section).

Real tunes of music21's corpus throughout: the profiles are learnt from Ryan's Mammoth Collection (21 dorian
tunes, enough for a profile of its own), and the dorian tunes are O'Neill's, which the profiles never saw."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from abcgen.controls import condition_names
from abcgen.corpus.labels import header_labels
from abcgen.corpus.sources import read_text, resolve_sources
from abcgen.errors import AbcgenError, ConfigError
from abcgen.evaluation.idiom import bars_without_pickups
from abcgen.evaluation.keys import (
    MODE_METHODS,
    estimate_mode,
    mode_adherence,
    pitch_class_durations,
    tempo_adherence,
    tempo_class,
)
from abcgen.evaluation.report import EvaluationInputs, evaluate_texts, report_markdown, write_report
from abcgen.grammar.tonality import MIN_MODE_TUNES, mode_profiles
from abcgen.notation.keys import parse_key
from abcgen.notation.piece import Piece, read_piece
from abcgen.notation.transpose import transpose_abc
from abcgen.notation.tune import normalise_tune, split_tunes


def _collection(name: str) -> list[str]:
    """Every tune of one of music21's embedded collections, as raw ABC."""
    texts: list[str] = []
    for source_file in resolve_sources([f"music21:{name}"]):
        text, _ = read_text(source_file.path)
        if text is not None:
            texts += [t.text for t in split_tunes(text)]
    return texts


@pytest.fixture(scope="module")
def profiles() -> dict:
    """The mode profiles of Ryan's Mammoth Collection (~1,000 tunes, ~5 s)."""
    learnt = mode_profiles(_collection("ryansMammoth"))
    assert learnt["dorian"]["tunes"] >= MIN_MODE_TUNES  # dorian is a candidate even when not asked
    return learnt


@pytest.fixture(scope="module")
def oneills() -> list[Piece]:
    return [read_piece(text) for text in _collection("oneills1850")]


@pytest.fixture(scope="module")
def dorian_tunes(oneills: list[Piece]) -> list[Piece]:
    tunes = [p for p in oneills if p.key is not None and p.key.mode == "dorian" and p.notes]
    assert len(tunes) >= 10, len(tunes)
    return tunes


def _minor_of(key_label: str) -> str:
    return key_label.split()[0] + "m"


def test_dorian_tunes_are_dorian_not_minor(profiles: dict, dorian_tunes: list[Piece]) -> None:
    """Every dorian tune of O'Neill's is heard as dorian on its tonic; asked as the minor key on the same
    tonic (one note apart: the sixth), it misses."""
    for piece in dorian_tunes:
        tonic = piece.key.tonic_semitone()
        assert estimate_mode(piece, profiles, tonic=tonic) == (tonic, "dorian"), piece.abc[:80]
        assert mode_adherence(piece, piece.key, profiles)["mode"], piece.abc[:80]
        assert not mode_adherence(piece, parse_key(_minor_of(piece.key.label)), profiles)["mode"], piece.abc[:80]
    # tonic and mode from the notes alone, over every tonic: most, not all (a dorian tune often lingers on
    # its relative major's tonic)
    exact = [mode_adherence(p, p.key, profiles)["exact"] for p in dorian_tunes]
    assert sum(exact) >= len(exact) / 2


def test_flattening_the_sixth_makes_a_dorian_tune_minor(profiles: dict, dorian_tunes: list[Piece]) -> None:
    """The same notes under the minor signature of the same tonic (``K:Ador`` -> ``K:Am``: every F# becomes F):
    a tune whose sixth takes a noticeable share of its time is now minor, and misses a dorian request."""
    flipped = 0
    for piece in dorian_tunes:
        tonic = piece.key.tonic_semitone()
        sixth = pitch_class_durations(piece)
        share = sixth[(tonic + 9) % 12] / sixth.sum()
        minor = read_piece(re.sub(r"^K:.*$", f"K:{_minor_of(piece.key.label)}", piece.abc, count=1, flags=re.M))
        if share >= 0.03:
            assert pitch_class_durations(minor)[(tonic + 8) % 12] > 0  # the sixth is flat now
            assert estimate_mode(minor, profiles, tonic=tonic) == (tonic, "minor"), piece.abc[:80]
            assert not mode_adherence(minor, piece.key, profiles)["mode"]
            assert mode_adherence(minor, parse_key(_minor_of(piece.key.label)), profiles)["mode"]
            flipped += 1
    assert flipped >= 10


@pytest.mark.parametrize("method", MODE_METHODS)
def test_a_transposed_tune_is_recognised_at_its_new_tonic(profiles: dict, oneills: list[Piece], method: str) -> None:
    """Transposition rotates the histogram and the requested tonic together: the estimate moves with it, and
    adherence is unchanged, for either score."""
    keyed = [p for p in oneills[:60] if p.key is not None and p.key.tonic and p.notes]
    recognised = 0
    for piece in keyed:
        before = mode_adherence(piece, piece.key, profiles, method)
        estimated = estimate_mode(piece, profiles, method=method)
        for shift in (2, 5, -3):
            moved = read_piece(transpose_abc(piece.abc, shift))
            assert moved.key.tonic_semitone() == (piece.key.tonic_semitone() + shift) % 12
            assert estimate_mode(moved, profiles, method=method) == ((estimated[0] + shift) % 12, estimated[1])
            assert mode_adherence(moved, moved.key, profiles, method) == before
        recognised += before["exact"]
    assert recognised >= 0.6 * len(keyed)  # most O'Neill's tunes are found at their own tonic and mode


def test_mode_adherence_edges(profiles: dict) -> None:
    silent = read_piece("X:1\nM:4/4\nL:1/4\nK:D\nz4|z4|]\n")
    assert mode_adherence(silent, parse_key("D"), profiles) == {"exact": False, "mode": False}
    assert estimate_mode(silent, profiles) is None
    tune = read_piece("X:1\nM:4/4\nL:1/8\nK:Ador\nA2BA GABd|e2dB A4|]\n")
    with pytest.raises(ConfigError, match="no tonic"):
        mode_adherence(tune, parse_key("none"), profiles)
    with pytest.raises(ConfigError, match="'cosine'"):
        mode_adherence(tune, parse_key("Ador"), profiles, method="cosine")
    # a corpus of major tunes only: a minor request has no profile, so it can never be matched
    majors = {"major": profiles["major"]}
    assert not mode_adherence(tune, parse_key("Am"), majors)["mode"]


def test_tempo_from_the_header(real_tunes: list[str]) -> None:
    """The tempo class is read as the corpus labeller reads it: Q: in quarter beats a minute, else its words;
    N: is not part of a normalised tune, in the corpus or here."""
    fast = read_piece("X:1\nM:6/8\nL:1/8\nQ:3/8=116\nK:D\nABA dfa|]\n")  # 174 quarter beats: fast
    assert tempo_class(fast) == "fast" and tempo_adherence(fast, "fast") and not tempo_adherence(fast, "slow")
    assert tempo_adherence(fast, " Fast ")  # spelt as the corpus spells it
    air = read_piece('X:1\nM:3/4\nL:1/4\nQ:"Slow"\nK:G\nG2 B|d3|]\n')
    assert tempo_class(air) == "slow" and tempo_adherence(air, "slow")
    noted = read_piece('X:1\nN:"Slow" "collected by F.O\'Neill"\nM:4/4\nL:1/8\nK:D\nABcd efga|]\n')
    assert tempo_class(noted) == "" and not tempo_adherence(noted, "slow")
    labelled = 0
    for text in real_tunes:  # Aird's tunes carry Q:, O'Neill's only N: words
        try:
            row = header_labels(normalise_tune(text))
        except AbcgenError:
            continue
        assert tempo_class(read_piece(text)) == row["tempo"], text[:80]
        labelled += bool(row["tempo"])
    assert labelled >= 40


def _requests_of(texts: list[str]) -> tuple[list[dict], list[dict]]:
    """What each real tune would be asked for (its own labels, as evaluation draws them), and its labels."""
    requests, labels = [], []
    for text in texts:
        row = header_labels(normalise_tune(text))  # as the corpus builder labels a tune
        labels.append(row)
        asked = {name: row[name] for name in ("key", "meter", "unit_length", "rhythm", "tempo", "composer")
                 if row.get(name)}
        asked["bars"] = bars_without_pickups(read_piece(text).check.report.bars)
        requests.append(asked)
    return requests, labels


@pytest.mark.slow
def test_report_has_one_row_per_requested_condition(real_tunes: list[str], tmp_path: Path) -> None:
    """A set scored against itself, each tune asked for its own labels: every requested condition appears
    once, in prefix order with mode after key, read from its metric row; the generated side equals the real
    ceiling (the same code on both sides); report.json and report.md carry it."""
    texts = [t for t in real_tunes[-60:] if re.search(r"^Q:", t, re.M) and read_piece(t).ok][:16]  # Aird's
    assert len(texts) == 16
    requests, labels = _requests_of(texts)
    scored = evaluate_texts(EvaluationInputs(generated=texts, real=texts, train=real_tunes[150:300],
                                             requests=requests, real_labels=labels),
                            n_resamples=20, abc2midi=False)
    summary = scored["adherence"]
    asked = {name for request in requests for name in request}
    expected = [n for n in condition_names() if n in asked]  # the prompt prefix's order
    assert list(summary) == [expected[0], "mode", *expected[1:]]
    rows = {m["name"]: m for m in scored["metrics"]}
    for name, entry in summary.items():
        if entry["metric"] is not None:
            assert entry["generated"] == rows[entry["metric"]]["generated"]["value"], name
        assert entry["asked"] == sum(bool(r.get("key" if name == "mode" else name)) for r in requests)
    assert {n for n, e in summary.items() if e["structural"]} == {"key", "mode", "meter", "unit_length", "bars"}
    assert summary["key"]["metric"] == "key_adherence_ks" and summary["mode"]["metric"] == "mode_adherence_exact"
    assert summary["tempo"]["metric"] == "tempo_adherence"
    assert summary["unit_length"]["metric"] is None and summary["unit_length"]["generated"] is None
    for name in ("key", "mode", "meter", "tempo"):  # generated = real: the same measure on the same tunes
        assert summary[name]["generated"] == pytest.approx(summary[name]["real"]), name
    assert summary["tempo"]["real"] == 100.0  # the labeller and the measure read the same Q:
    assert rows["mode_adherence_exact"]["tier"] == "F1"

    report = {**scored, "model": {"path": None}, "data": {"corpus": "music21", "split": "test"},
              "decoding": {"constrained": True}}
    write_report(report, tmp_path)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["adherence"]["mode"]["structural"] is True
    assert written["adherence"]["bars"]["real"] is None  # no ceiling: the request is the tune's own count
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split("## Adherence per condition")[1].split("\n## ")[0]
    table = [line for line in section.splitlines() if line.startswith("| ") and "(asked" in line]
    assert [line.split(" (asked")[0][2:] for line in table] == list(summary)
    mode_line = next(line for line in table if line.startswith("| mode "))
    assert "| mode_adherence_exact |" in mode_line and mode_line.count("[") == 2  # both sides with intervals
    assert "structural;" in mode_line and "unconstrained" not in section


def test_summary_without_training_tunes_or_requests(real_tunes: list[str]) -> None:
    """No training tunes: no mode profiles, so no mode rows and no mode entry; no requests: no summary and no
    section (``abcgen evaluate --abc``)."""
    texts = [t for t in real_tunes[-60:] if read_piece(t).ok][:6]
    requests, _ = _requests_of(texts)
    scored = evaluate_texts(EvaluationInputs(generated=texts, real=texts, requests=requests), n_resamples=10,
                            abc2midi=False)
    assert "mode" not in scored["adherence"] and "key" in scored["adherence"]
    assert not any(m["name"].startswith("mode_adherence") for m in scored["metrics"])
    assert all(entry["real"] is None for name, entry in scored["adherence"].items()
               if name not in ("key", "meter"))  # without real labels only K: and M: give a ceiling
    plain = evaluate_texts(EvaluationInputs(generated=texts, real=texts), n_resamples=10, abc2midi=False)
    assert plain["adherence"] == {}
    markdown = report_markdown({**plain, "model": {"path": None}, "data": {"corpus": "c", "split": "test"},
                                "decoding": None})
    assert "Adherence per condition" not in markdown
