"""abc2midi conversion/checking and miditok REMI, on tunes from O'Neill's 1850 in music21's corpus."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import music21  # a dependency: a missing install must fail, not skip
import pytest
import symusic

from abcgen.errors import ConversionError, ToolNotFoundError
from abcgen.notation import abc2midi
from abcgen.notation.remi import abc2midi_check, abc_to_midi, abc_to_remi, midi_to_remi, remi_to_midi

# abc2midi is installed by scripts/install.sh: a missing tool fails the suite instead of skipping it.
assert shutil.which("abc2midi"), "abc2midi not found: apt-get install abcmidi (scripts/install.sh does it)"

SIMPLE = "X:1\nT:Simple\nM:4/4\nL:1/8\nK:G\nGABc dedB | [GBd]4 z4 |]\n"


@pytest.fixture(scope="module")
def oneills_tunes() -> list[str]:
    """The first five tunes of O'Neill's 1850 (split on the blank lines before ``X:``)."""
    corpus_dir = Path(music21.__file__).parent / "corpus" / "oneills1850"
    text = (corpus_dir / "0001-0050.abc").read_text(encoding="latin-1")
    tunes = [t.strip() + "\n" for t in re.split(r"\n\s*\n(?=X:)", text) if t.lstrip().startswith("X:")]
    assert len(tunes) >= 5
    return tunes[:5]


def _notes(path: Path) -> list[tuple[int, int]]:
    """(onset in quarter notes * 96, pitch) of every note, in order: independent of ticks per quarter."""
    score = symusic.Score(str(path))
    tpq = score.ticks_per_quarter
    return sorted((round(n.time * 96 / tpq), n.pitch) for track in score.tracks for n in track.notes)


def test_midi_remi_midi_keeps_pitches_exactly(oneills_tunes: list[str], tmp_path: Path) -> None:
    for i, tune in enumerate(oneills_tunes):
        original = tmp_path / f"tune{i}.mid"
        abc_to_midi(tune, original)
        text = midi_to_remi(original)
        assert text.startswith("Bar_None"), text[:40]
        decoded = tmp_path / f"decoded{i}.mid"
        remi_to_midi(text, decoded)
        before, after = _notes(original), _notes(decoded)
        assert len(before) > 20
        # The same notes, pitch for pitch. Onsets are quantised to 1/8 beat (grace notes and tuplets
        # move), which can reorder notes that start almost together, so compare as multisets plus onsets.
        assert sorted(p for _, p in after) == sorted(p for _, p in before), f"tune {i}"
        assert all(abs(a[0] - b[0]) <= 12 for a, b in zip(sorted(after), sorted(before), strict=True))
        assert midi_to_remi(original.read_bytes()) == text


def test_abc_to_remi_note_count(oneills_tunes: list[str], tmp_path: Path) -> None:
    text = abc_to_remi(SIMPLE)
    pitches = [int(tok.split("_")[1]) for tok in text.split() if tok.startswith("Pitch_")]
    assert pitches[:8] == [67, 69, 71, 72, 74, 76, 74, 71]  # G A B c d e d B
    assert sorted(pitches[8:]) == [67, 71, 74]  # the [GBd] chord
    # Repeats are played out by abc2midi, so the notes are counted twice.
    repeated = abc_to_remi(SIMPLE.replace("GABc", "|: GABc").replace("z4 |]", "z4 :|"))
    assert repeated.count("Pitch_") == 22
    for i, tune in enumerate(oneills_tunes):
        midi = tmp_path / f"t{i}.mid"
        abc_to_midi(tune, midi)
        assert abc_to_remi(tune).count("Pitch_") == len(_notes(midi)), f"tune {i}"


def test_abc2midi_check_reports_errors_and_passes_clean_tunes() -> None:
    assert abc2midi_check(SIMPLE) == []
    broken = "X:1\nT:Broken\nM:4/4\nL:1/8\nK:G\nabc d | c2 [ceg d2 | GABc dedB |]\n"
    messages = abc2midi_check(broken)
    assert any(m.startswith("Error") for m in messages), messages
    assert any("time units while the time signature" in m for m in messages), messages
    # -quiet hides the bar-length warnings but keeps the errors.
    quiet = abc2midi_check(broken, quiet=True)
    assert any(m.startswith("Error") for m in quiet)
    assert not any("time units" in m for m in quiet)


def test_abc_to_midi_returns_warnings_and_fails_without_output(tmp_path: Path) -> None:
    short_bar = "X:1\nT:Short\nM:4/4\nL:1/8\nK:C\nCDEF GABc | CDE | CDEF GABc |]\n"
    warnings = abc_to_midi(short_bar, tmp_path / "short.mid")
    assert (tmp_path / "short.mid").stat().st_size > 0
    assert any("Bar" in w for w in warnings), warnings
    with pytest.raises(ConversionError, match="K: field"):
        abc_to_midi("X:1\nT:No key\n", tmp_path / "none.mid")
    assert not (tmp_path / "none.mid").exists()


def test_missing_abc2midi_raises_tool_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(abc2midi.shutil, "which", lambda name: None)
    with pytest.raises(ToolNotFoundError, match="apt-get install abcmidi"):
        abc2midi_check(SIMPLE)


def test_bad_inputs_raise_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot read MIDI"):
        midi_to_remi(b"not a midi file")
    with pytest.raises(ConversionError, match="outside the vocabulary"):
        remi_to_midi("Bar_None Position_0 Pitch_67 Banana_1", tmp_path / "x.mid")
    with pytest.raises(ConversionError, match="empty"):
        remi_to_midi("  ", tmp_path / "x.mid")
