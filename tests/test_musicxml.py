"""MusicXML <-> ABC on real Bach chorales from music21's bundled corpus."""

from __future__ import annotations

import zipfile
from pathlib import Path

import music21  # noqa: E402 -- a dependency: a missing install must fail, not skip
import pytest

from abcgen.errors import ConversionError
from abcgen.notation.musicxml import abc_to_musicxml, clean_xml2abc_output, musicxml_to_abc
from abcgen.notation.voices import split_bar_texts, split_voices

SAMPLE_SIZE = 10


def _chorale_paths() -> list[Path]:
    paths = [Path(p) for p in music21.corpus.getComposer("bach")]
    return sorted(p for p in paths if p.suffix == ".mxl")


@pytest.fixture(scope="module")
def satb_sample() -> list[tuple[Path, list[int]]]:
    """~10 four-part chorales spread over the corpus, with music21's measure count per part."""
    paths = _chorale_paths()
    assert len(paths) > 300, "music21's Bach chorales are missing"
    sample: list[tuple[Path, list[int]]] = []
    for path in paths[:: max(1, len(paths) // 25)]:
        score = music21.converter.parse(path)
        if len(score.parts) != 4:
            continue
        sample.append((path, [len(part.getElementsByClass("Measure")) for part in score.parts]))
        if len(sample) == SAMPLE_SIZE:
            break
    assert len(sample) == SAMPLE_SIZE
    return sample


def _header(abc: str) -> list[str]:
    lines = abc.splitlines()
    return lines[: next(i for i, line in enumerate(lines) if line.startswith("K:")) + 1]


@pytest.mark.slow
def test_satb_chorales_have_four_voices_and_key_last(satb_sample: list[tuple[Path, list[int]]]) -> None:
    for path, _ in satb_sample:
        abc = musicxml_to_abc(path)
        header = _header(abc)
        assert header[0].startswith("X:"), path.name
        assert header[-1].startswith("K:"), path.name
        assert [line[:2] for line in header if line.startswith("V:")] == ["V:"] * 4, path.name
        assert {line[:2] for line in header} <= {"X:", "T:", "C:", "L:", "M:", "Q:", "V:", "K:"}
        assert "L:1/8" in header
        body = abc.splitlines()[len(header) :]
        # One "V:n" line and one music line per voice.
        assert body[0::2] == ["V:1", "V:2", "V:3", "V:4"], path.name
        assert "%" not in abc and "w:" not in abc and "I:" not in abc


@pytest.mark.slow
def test_bars_per_voice_match_music21_measures(satb_sample: list[tuple[Path, list[int]]]) -> None:
    for path, measures in satb_sample:
        _, voices = split_voices(musicxml_to_abc(path))
        assert [len(split_bar_texts(body)) for body in voices.values()] == measures, path.name


def test_bytes_and_uncompressed_files_give_the_same_abc(tmp_path: Path) -> None:
    path = _chorale_paths()[0]
    expected = musicxml_to_abc(path)
    assert musicxml_to_abc(path.read_bytes()) == expected
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if not n.startswith("META") and n.endswith(".xml"))
        xml = archive.read(name)
    for suffix in (".musicxml", ".xml"):
        plain = tmp_path / f"score{suffix}"
        plain.write_bytes(xml)
        assert musicxml_to_abc(plain) == expected


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"this is not xml at all", "not a MusicXML score"),
        (b"<?xml version='1.0'?><score-partwise><part", "xml2abc could not convert"),
        (b"PK\x03\x04 truncated zip", "cannot unpack"),
        (b"<?xml version='1.0'?><score-partwise><part-list/></score-partwise>", "no notes"),
    ],
)
def test_bad_files_raise_conversion_error_naming_the_file(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "broken.mxl"
    path.write_bytes(content)
    with pytest.raises(ConversionError, match=fragment) as info:
        musicxml_to_abc(path)
    assert "broken.mxl" in str(info.value)


def test_missing_file_raises_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="nothere.xml"):
        musicxml_to_abc(tmp_path / "nothere.xml")


def test_clean_drops_comments_lyrics_and_layout() -> None:
    raw = (
        "X:1\nT:Title\nT:Title\n%%score [ 1 | 2 ]\nL:1/8\nM:3/4\nK:G\n"
        'V:1 treble nm="S"\nV:2 bass\nV:1\n G2 |"^50%" A2 B2 c2 | %2\nw: a- b c\n'
        "I:repbra 0\nV:2\n G,2 |A,2 B,2 C2 |] %2\n"
    )
    assert clean_xml2abc_output(raw) == (
        'X:1\nT:Title\nL:1/8\nM:3/4\nV:1 treble nm="S"\nV:2 bass\nK:G\n'
        'V:1\nG2 | "^50%" A2 B2 c2 |\nV:2\nG,2 | A,2 B,2 C2 |]\n'
    )


def test_abc_to_musicxml_round_trip_keeps_bars() -> None:
    abc = musicxml_to_abc(_chorale_paths()[3])
    xml = abc_to_musicxml(abc)
    assert xml.lstrip().startswith("<?xml") and "<score-partwise" in xml
    again = musicxml_to_abc(xml.encode("utf-8"))
    _, before = split_voices(abc)
    _, after = split_voices(again)
    assert [len(split_bar_texts(b)) for b in after.values()] == [len(split_bar_texts(b)) for b in before.values()]


def test_abc_to_musicxml_without_a_tune_raises() -> None:
    with pytest.raises(ConversionError, match="abc2xml"):
        abc_to_musicxml("")
