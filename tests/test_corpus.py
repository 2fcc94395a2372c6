"""The corpus builder on crafted broken input and on real collections: nothing crashes, nothing is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from abcgen.controls import ControlVocabulary
from abcgen.corpus import sources
from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus, split_of
from abcgen.corpus.labels import normalise_origin, normalise_rhythm, tempo_bpm
from abcgen.errors import ConfigError
from abcgen.notation.transpose import transpose_abc
from abcgen.notation.tune import normalise_abc

GOOD = [
    "X:1\nT:Good One\nR:Double Jig.\nM:6/8\nL:1/8\nK:D\n|:A|dAF DFA|d2f e2d|cBA GFE|1 D3 D2:|2 D3 D2||\n",
    "X:2\nT:Good Two\nR:reel\nM:C\nL:1/8\nK:G\n|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA:|\n",
    "X:3\nT:Good Three\nO:Europa, Mitteleuropa, Österreich\nM:3/4\nL:1/4\nK:Am\nA B c|d2 e|c B A|A3|]\n",
]
NO_KEY = "X:4\nT:No Key\nM:4/4\nL:1/8\nabcd efga|\n"
TRUNCATED = "X:5\nT:Cut Off\nM:4/4\nL:1/8\nK:D\nabcd efga|bagf edcB|cdef g"
UNBALANCED = "X:6\nT:Open Repeat\nM:4/4\nL:1/8\nK:D\n|:abcd efga|bagf edcB|\n|:cdef gabc|bagf edcB:|\n"


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.abc").write_text("\n".join(GOOD), encoding="utf-8")
    # Latin-1 bytes (not UTF-8) in a title, with a broken tune between two good ones.
    latin = f"X:10\nT:Schöne Müllerin\nM:2/4\nL:1/8\nK:F\nFA cA|Bd cA|G4|]\n\n{NO_KEY}\n{GOOD[1].replace('X:2', 'X:11').replace('Good Two', 'Latin Reel').replace('GABc', 'GABd')}"
    (folder / "latin.abc").write_bytes(latin.encode("latin-1"))
    (folder / "broken.abc").write_text(f"{TRUNCATED}\n\n{UNBALANCED}\n\n{GOOD[2].replace('X:3', 'X:12').replace('A3|]', 'A2 c|]')}",
                                       encoding="utf-8")
    (folder / "empty.abc").write_bytes(b"")
    (folder / "binary.abc").write_bytes(bytes(range(256)) * 8)
    (folder / "prose.abc").write_text("Nothing here is music.\n", encoding="utf-8")
    # A transposed copy of a good tune in another file: a duplicate, whatever its key.
    (folder / "sub" / "dupe.abc").write_text(transpose_abc(normalise_abc(GOOD[0]), 2), encoding="utf-8")
    # A 10 MB file: a good tune, a tune with a 10 MB line of prose for a body, another good tune.
    big = ("X:20\nT:Big Good\nM:4/4\nL:1/8\nK:C\nCDEF GABc|c8|]\n\nX:21\nT:Huge\nM:4/4\nL:1/8\nK:C\n"
           + "lorem ipsum dolor sit amet " * 400_000
           + "\n\nX:22\nT:Big Good Two\nM:4/4\nL:1/8\nK:C\ncBAG FEDC|C8|]\n")
    (folder / "big.abc").write_text(big, encoding="utf-8")
    # A symlink loop: sub/loop -> .. ; the walk must not follow it.
    os.symlink(folder, folder / "sub" / "loop")
    (folder / "notes.txt").write_text("not a source suffix", encoding="utf-8")
    return folder


def test_build_rejects_exactly_the_broken_tunes(messy_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    report = build_corpus(BuildConfig(sources=[str(messy_folder)], out=out, workers=1), progress=False)
    t = report["tunes"]
    assert t["in"] == t["accepted"] + t["rejected"] + t["duplicates"]
    reasons = {(Path(r["file"]).name, r["title"] or r["tune_index"]): r["reason"] for r in report["rejected"]}
    assert any("no K: field" in reason for (name, _), reason in reasons.items() if name == "latin.abc")
    assert reasons[("broken.abc", "Cut Off")].startswith("truncated")
    assert reasons[("broken.abc", "Open Repeat")].startswith("unbalanced repeats")
    assert reasons[("big.abc", "Huge")].startswith("no music")
    assert t["rejected"] == 4 and t["duplicates"] == 1
    dupe = report["duplicates"][0]
    assert dupe["file"].endswith("dupe.abc") and dupe["duplicate_of"]["file"].endswith("good.abc")
    rejected_files = {Path(f["file"]).name: f["reason"] for f in report["files"]["rejected_files"]}
    assert rejected_files["empty.abc"] == "empty file" and "binary" in rejected_files["binary.abc"]
    assert "no tunes" in rejected_files["prose.abc"]

    corpus = load_corpus(out)
    rows = [row for split in corpus.values() for row in split]
    titles = {row["title"] for row in rows}
    # every good tune of every file is kept, including those beside broken ones
    assert titles == {"Good One", "Good Two", "Good Three", "Schöne Müllerin", "Latin Reel", "Big Good", "Big Good Two"}
    assert sum(report["splits"].values()) == t["accepted"] == len(rows)
    one = next(row for row in rows if row["title"] == "Good One")
    assert (one["rhythm"], one["key"], one["meter"], one["form"], one["num_bars"]) == ("jig", "D major", "6/8", "AA", 5)
    three = next(row for row in rows if row["title"] == "Good Three")
    assert three["origin"] == "osterreich"
    assert one["abc"].startswith("X:1\nT:Good One\nR:Double Jig.\nM:6/8\nL:1/8\nK:D\n")
    assert (out / "report.json").exists() and json.loads((out / "report.json").read_text())["tunes"] == t
    assert ControlVocabulary.load(out).values["key"]


def test_file_size_limit_is_a_reported_rejection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.abc").write_text(GOOD[0], encoding="utf-8")
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", len(GOOD[1].encode()) + 1)
    (tmp_path / "in" / "b.abc").write_text(GOOD[1], encoding="utf-8")  # under the limit: the corpus is not empty
    report = build_corpus(BuildConfig(sources=[str(tmp_path / "in")], out=tmp_path / "c", workers=1), progress=False)
    assert "limit" in report["files"]["rejected_files"][0]["reason"] and report["tunes"]["in"] == 1
    # Sources that yield no tune at all are an error naming the reason, and nothing is written.
    (tmp_path / "in" / "b.abc").unlink()
    with pytest.raises(ConfigError, match="limit"):
        build_corpus(BuildConfig(sources=[str(tmp_path / "in")], out=tmp_path / "d", workers=1), progress=False)
    assert not (tmp_path / "d").exists()


def test_split_is_deterministic_and_augmentation_is_train_only(tmp_path: Path) -> None:
    config = dict(sources=["music21:miscFolk"], workers=2, transpose_augment=(-2, 3), validation_fraction=0.1,
                  test_fraction=0.1)
    first = build_corpus(BuildConfig(out=tmp_path / "a", **config), progress=False)
    second = build_corpus(BuildConfig(out=tmp_path / "b", **config), progress=False)
    assert first["splits"] == second["splits"]
    a, b = load_corpus(tmp_path / "a"), load_corpus(tmp_path / "b")
    for split in ("train", "validation", "test"):
        assert a[split]["fingerprint"] == b[split]["fingerprint"]
        assert a[split]["abc"] == b[split]["abc"]
    assert set(a["validation"]["transposition"]) == {0} and set(a["test"]["transposition"]) == {0}
    assert {-2, 3} <= set(a["train"]["transposition"])
    # no melody (in any key) sits in two splits
    train, val, test = (set(a[s]["fingerprint"]) for s in ("train", "validation", "test"))
    assert not (train & val or train & test or val & test)
    assert first["tunes"]["augmented"] == sum(1 for x in a["train"]["transposition"] if x)


def test_split_of_is_stable() -> None:
    config = BuildConfig(sources=[], out=Path("unused"))
    assert [split_of(f"{i:024x}", config) for i in range(5)] == [split_of(f"{i:024x}", config) for i in range(5)]
    shares = [split_of(f"{i:024x}", config) for i in range(4000)]
    assert 0.03 < shares.count("test") / 4000 < 0.07


def test_bad_config_and_sources_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="music21:NAME"):
        build_corpus(BuildConfig(sources=[str(tmp_path / "missing")], out=tmp_path / "c"), progress=False)
    with pytest.raises(ConfigError, match="valid: essenFolksong"):
        build_corpus(BuildConfig(sources=["music21:nope"], out=tmp_path / "c"), progress=False)
    with pytest.raises(ConfigError, match="bar_check"):
        BuildConfig(sources=[], out=tmp_path, bar_check="maybe")
    with pytest.raises(ConfigError, match="not a corpus folder"):
        load_corpus(tmp_path)


def test_real_collection_with_chorales_and_remi(tmp_path: Path) -> None:
    # Chorales go MusicXML -> ABC (multi-voice); REMI goes ABC -> abc2midi -> miditok.
    chorales = sources.resolve_sources(["music21:bach"])[:6]  # sorted by the walk
    folder = tmp_path / "bach"
    folder.mkdir()
    for f in chorales:
        (folder / f.path.name).write_bytes(f.path.read_bytes())
    report = build_corpus(BuildConfig(sources=[str(folder)], out=tmp_path / "c", remi=True, workers=1,
                                      validation_fraction=0.0, test_fraction=0.0), progress=False)
    assert report["tunes"]["in"] == 6 and report["tunes"]["accepted"] >= 5
    rows = list(load_corpus(tmp_path / "c")["train"])
    assert all(row["num_voices"] >= 4 for row in rows)
    assert all("\nV:1\n" in row["abc"] for row in rows)
    # Four voices: one program each (40-43). More voices than that (bwv1.6 has a horn): no REMI text, and
    # the report says why; every accepted tune is counted once.
    remi = report["remi"]
    assert remi["tunes"] == report["tunes"]["accepted"] == len(rows)
    assert remi["tunes"] == remi["exact"] + sum(remi["not_exact"].values()) + sum(remi["failed"].values())
    assert remi["failed"] == {"more voices than REMI programs": 1}
    assert [Path(r["file"]).name for r in report["remi_failures"]] == ["bwv1.6.mxl"]
    for row in rows:
        if row["num_voices"] == 4:
            assert {t for t in row["remi"].split() if t.startswith("Program_")} == {
                "Program_40", "Program_41", "Program_42", "Program_43"}
        else:
            assert row["remi"] == ""


def test_remi_column_report_and_transpositions(tmp_path: Path) -> None:
    """``--remi`` on O'Neill's: every row (transpositions too) gets REMI text; the report's REMI section adds
    up, lists the tunes that do not come back exactly with their reason, and the console table says so."""
    from abcgen.corpus.build import format_report
    from abcgen.notation.remi import REASON_ONSET

    folder = tmp_path / "in"
    folder.mkdir()
    text = (sources.music21_corpus_dir() / "oneills1850" / "0001-0050.abc").read_bytes()
    (folder / "oneills.abc").write_bytes(text[: text.index(b"X: 9\n")])  # tunes 1-8: 3 rejected by the build
    report = build_corpus(BuildConfig(sources=[str(folder)], out=tmp_path / "c", remi=True, workers=1,
                                      transpose_augment=(2,), validation_fraction=0.0, test_fraction=0.0),
                          progress=False)
    remi = report["remi"]
    assert remi["tunes"] == report["tunes"]["accepted"] == 5
    assert (remi["exact"], remi["not_exact"], remi["failed"]) == (4, {REASON_ONSET: 1}, {})
    assert [r["title"] for r in report["remi_not_exact"]] == ["Fare You Well"]  # grace notes of a 1/64 note
    assert remi["transpositions"] == {"rows": 5, "exact": 4, "not_exact": {REASON_ONSET: 1}, "failed": {}}
    rows = list(load_corpus(tmp_path / "c")["train"])
    assert len(rows) == 10 and all(row["remi"].startswith("Bar_None TimeSig_") for row in rows)
    assert "REMI: 4 of 5 tunes exact" in format_report(report)
    # without --remi: no section, empty column
    plain = build_corpus(BuildConfig(sources=[str(folder)], out=tmp_path / "d", workers=1), progress=False)
    assert plain["remi"] is None and not any(row["remi"] for s in load_corpus(tmp_path / "d").values() for row in s)


@pytest.mark.parametrize(("value", "expected"), [
    ("Double Jig.", "jig"), ("REEL", "reel"), ("Slip-jig", "slip jig"), ("Hornpipe; then reel", "hornpipe"),
    ("slipjig", "slip jig"), ("SlipJig", "slip jig"), ("slip_jig", "slip jig"), ("Slip Jigs", "slip jig"),
    ("setdance", "set dance"), ("Set-Dance", "set dance"), ("set dances", "set dance"), ("Reels", "reel"),
    ("highlandfling", "fling"), ("Walk-around", "walkaround"), ("Barn Dances", "barndance"),
    ("Wuge, Shuichuan qu. Xin minge]", "wuge"), ("", ""),
])
def test_rhythm_labels(value: str, expected: str) -> None:
    assert normalise_rhythm(value) == expected


def test_origin_and_tempo_labels() -> None:
    assert normalise_origin("Europa, Mitteleuropa, Deutschland") == "deutschland"
    assert normalise_origin("China, Shaanxi, Zizhou") == "china"
    assert tempo_bpm("1/4=120") == 120 and tempo_bpm("3/8=80") == 120 and tempo_bpm("") == 0


def test_midi_and_kern_sources_become_abc(tmp_path: Path) -> None:
    from abcgen.notation.remi import abc_to_midi

    folder = tmp_path / "in"
    folder.mkdir()
    abc_to_midi("X:1\nT:Mid\nM:6/8\nL:1/8\nK:G\n|:GAB cde|d2B G3|GAB cde|d3 d3:|\n", folder / "tune.mid")
    kern = next(f.path for f in sources._walk(sources.music21_corpus_dir() / "bach", "x") if f.path.suffix == ".krn")
    (folder / kern.name).write_bytes(kern.read_bytes())
    report = build_corpus(BuildConfig(sources=[str(folder)], out=tmp_path / "c", workers=1,
                                      validation_fraction=0.0, test_fraction=0.0), progress=False)
    assert report["tunes"]["in"] == 2 and report["tunes"]["accepted"] + report["tunes"]["rejected"] == 2
    rows = {Path(row["file"]).name: row for row in load_corpus(tmp_path / "c")["train"]}
    midi_row = rows["tune.mid"]
    assert midi_row["title"] == "tune" and midi_row["meter"] == "6/8" and midi_row["num_bars"] == 8
    assert "GAB cde" in midi_row["abc"] and "Music21" not in midi_row["abc"]
    # the kern chorale is either accepted or rejected with a reason, never lost
    assert kern.name in rows or any(r["file"].endswith(kern.name) and r["reason"] for r in report["rejected"])


# --- issue 11: one spelling per label, no empty corpus, reasons printed whole, legal ABC kept --------------

def test_slipjig_and_slip_jig_are_one_rhythm_class(tmp_path: Path) -> None:
    """Ryan's Mammoth writes 'R: slip jig' and 'R:slipjig'; both must be one class in the corpus, the
    vocabulary and a look-up of either spelling."""
    import re

    from abcgen.controls import control_token
    from abcgen.generation.pipeline import _label  # the pipeline's condition check

    corpus = sources.music21_corpus_dir() / "ryansMammoth"
    spelling: dict[str, str] = {}  # file name -> how its R: line spells the rhythm
    for path in sorted(corpus.glob("*.abc")):
        m = re.search(r"^R:\s*(slip ?jig)\s*$", path.read_text(encoding="latin-1"), re.MULTILINE | re.IGNORECASE)
        if m:
            spelling[path.name] = m.group(1).lower()
    assert set(spelling.values()) == {"slip jig", "slipjig"}  # the corpus really spells it both ways
    folder = tmp_path / "in"
    folder.mkdir()
    for name in spelling:
        (folder / name).write_bytes((corpus / name).read_bytes())
    report = build_corpus(BuildConfig(sources=[str(folder)], out=tmp_path / "c", workers=1, min_label_count=1,
                                      validation_fraction=0.0, test_fraction=0.0), progress=False)
    rows = load_corpus(tmp_path / "c")["train"]
    kept = {spelling[Path(name).name] for name in rows["file"]}
    assert kept == {"slip jig", "slipjig"}  # tunes of both spellings are in the corpus ...
    assert set(rows["rhythm"]) == {"slip jig"} and report["labels"]["rhythm"] == {"slip jig": len(rows)}  # ... as one
    vocabulary = ControlVocabulary.load(tmp_path / "c")
    assert list(vocabulary.values["rhythm"]) == ["slip jig"]
    assert vocabulary.normalise("rhythm", "slipjig") == vocabulary.normalise("rhythm", "Slip-Jig") == "slip jig"
    assert control_token("rhythm", vocabulary.normalise("rhythm", "slipjig")) == "<rhythm=slip_jig>"
    assert _label("rhythm", "SlipJig") == _label("rhythm", "slip-jig") == "slip jig"


def test_an_empty_source_folder_is_an_error_not_an_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"'.*empty' holds no tune files"):
        build_corpus(BuildConfig(sources=[str(tmp_path / "empty")], out=tmp_path / "c"), progress=False)
    (tmp_path / "prose").mkdir()
    (tmp_path / "prose" / "notes.abc").write_text("Nothing here is music.\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"none of its 1 files holds a tune .*no tunes"):
        build_corpus(BuildConfig(sources=[str(tmp_path / "prose")], out=tmp_path / "c"), progress=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cut.abc").write_text(TRUNCATED, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"all 1 tunes were rejected \(truncated: 1"):
        build_corpus(BuildConfig(sources=[str(tmp_path / "broken")], out=tmp_path / "c"), progress=False)
    assert not (tmp_path / "c").exists()


def test_rejection_summary_prints_the_reason_whole(tmp_path: Path) -> None:
    """A reason quoting ':' was cut at that colon ("stray '"); and legal ABC 2.1 (a backslash continuation
    before a field line, O'Neill's X:631) is kept, not rejected."""
    from abcgen.corpus.build import format_report, reason_kind

    folder = tmp_path / "in"
    folder.mkdir()
    oneills = sources.music21_corpus_dir() / "oneills1850" / "0626-0635.abc"
    (folder / oneills.name).write_bytes(oneills.read_bytes())
    (folder / "stray.abc").write_text("X:1\nT:Stray\nM:4/4\nL:1/8\nK:D\nABcd efga|:bagf| :edcB|]\n", encoding="utf-8")
    report = build_corpus(BuildConfig(sources=[str(folder)], out=tmp_path / "c", workers=1), progress=False)
    rejected = {r["title"]: r["reason"] for r in report["rejected"]}
    assert rejected["Stray"].startswith("stray ':'")
    assert "stray ':'" in report["rejection_reasons"] and "stray '" not in report["rejection_reasons"]
    assert "stray ':' 1" in format_report(report)
    titles = {row["title"] for split in load_corpus(tmp_path / "c").values() for row in split}
    assert "O'Carolan's Devotion" in titles  # X:631 and its inline [L:] changes
    assert reason_kind("bar length: bar 3 (line 1, column 17): 3 of a whole note is longer") == "bar length"
    assert reason_kind("the header has no K: field (K: must end the header) (tune 'X:1 A', line 5)") == \
        "the header has no K: field (K: must end the header)"
    assert reason_kind("chord [A2f\n2] must contain only notes (tune 'X:1 A', bar 6)") == \
        "chord [A2f 2] must contain only notes"
