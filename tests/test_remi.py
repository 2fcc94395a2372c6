"""abc2midi conversion/checking and multi-track miditok REMI, on real tunes of music21's corpus: O'Neill's 1850,
Bach chorales (MusicXML -> ABC, four voices) and a Nottingham reel (the corpus's tunes with real chord symbols)."""

from __future__ import annotations

import re
import shutil
import statistics
from pathlib import Path

import music21  # a dependency: a missing install must fail, not skip
import pytest
import symusic

from abcgen.corpus.sources import read_text
from abcgen.errors import ConversionError, ToolNotFoundError
from abcgen.notation import abc2midi
from abcgen.notation.musicxml import musicxml_to_abc
from abcgen.notation.remi import (
    BASS_PROGRAM,
    CHORD_PROGRAM,
    MELODY_PROGRAM,
    PROGRAM_RANGES,
    REASON_LONG,
    REASON_ONSET,
    REASON_OVERLAP,
    REASON_TIME_SIGNATURE,
    VOICE_PROGRAMS,
    abc2midi_check,
    abc_to_midi,
    abc_to_remi,
    midi_to_remi,
    quantisation_loss,
    remi_round_trip,
    remi_to_midi,
)
from abcgen.notation.tune import normalise_abc, split_tunes

# abc2midi is installed by scripts/install.sh: a missing tool fails the suite instead of skipping it.
assert shutil.which("abc2midi"), "abc2midi not found: apt-get install abcmidi (scripts/install.sh does it)"

SIMPLE = "X:1\nT:Simple\nM:4/4\nL:1/8\nK:G\nGABc dedB | [GBd]4 z4 |]\n"
CORPUS = Path(music21.__file__).parent / "corpus"


def _oneills(name: str = "0001-0050.abc") -> list[str]:
    """The tunes of one O'Neill's 1850 file (split on the blank lines before ``X:``)."""
    text = (CORPUS / "oneills1850" / name).read_text(encoding="latin-1")
    return [t.strip() + "\n" for t in re.split(r"\n\s*\n(?=X:)", text) if t.lstrip().startswith("X:")]


@pytest.fixture(scope="module")
def oneills_tunes() -> list[str]:
    """The first eight tunes of O'Neill's 1850: 0 and 1 have grace notes off REMI's grid, 2-7 fit it."""
    tunes = _oneills()[:8]
    assert len(tunes) == 8
    return tunes


def _chorale(name: str) -> str:
    return normalise_abc(musicxml_to_abc(CORPUS / "bach" / name))


def _tracks(text: str, tmp_path: Path) -> dict[int, list[int]]:
    """program -> pitches of the MIDI that REMI text decodes to."""
    remi_to_midi(text, tmp_path / "decoded.mid")
    score = symusic.Score(str(tmp_path / "decoded.mid"))
    return {track.program: [n.pitch for n in track.notes] for track in score.tracks}


def _bars(text: str) -> list[list[str]]:
    """The tokens of each REMI bar, ``Bar_None`` left out."""
    return [bar.split() for bar in text.split("Bar_None")[1:]]


def _notes(path: Path) -> list[tuple[int, int]]:
    """(onset in quarter notes * 96, pitch) of every note, in order: independent of ticks per quarter."""
    score = symusic.Score(str(path))
    tpq = score.ticks_per_quarter
    return sorted((round(n.time * 96 / tpq), n.pitch) for track in score.tracks for n in track.notes)


# --- programs per track -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bwv227.1.mxl", "bwv276.mxl"])  # tenor in treble-8; "^Alleluja" annotations
def test_chorale_voices_get_the_string_quartet_in_range(name: str, tmp_path: Path) -> None:
    abc = _chorale(name)
    trip = remi_round_trip(abc)
    assert trip.exact, trip.difference
    assert trip.programs == VOICE_PROGRAMS  # no accompaniment: the chorales' quoted strings are annotations
    tracks = _tracks(trip.remi, tmp_path)
    for program, pitches in tracks.items():
        low, high = PROGRAM_RANGES[program]
        assert low <= min(pitches) and max(pitches) <= high, (program, min(pitches), max(pitches))
    # soprano above alto above tenor above bass: a tenor in treble-8 sounds an octave below its notes
    medians = [statistics.median(tracks[p]) for p in VOICE_PROGRAMS]
    assert medians == sorted(medians, reverse=True), medians


def test_more_voices_than_programs_are_refused() -> None:
    abc = _chorale("bwv227.3.mxl")  # SSATB: five voices
    with pytest.raises(ConversionError, match="more voices than REMI programs: 5 voices"):
        abc_to_remi(abc)


def test_clef_octave_is_played_even_before_a_voice_name(tmp_path: Path) -> None:
    # abc2midi 4.84 ignores "treble-8" when a name follows it; abc_to_midi makes the octave explicit.
    tune = 'X:1\nT:t\nM:4/4\nL:1/8\nV:1 treble\nV:2 treble-8 nm="Tenor" snm="T."\nK:G\nV:1\nA8|]\nV:2\nA8|]\n'
    abc_to_midi(tune, tmp_path / "t.mid")
    assert sorted(p for _, p in _notes(tmp_path / "t.mid")) == [57, 69]


def test_chord_symbols_give_bass_and_chords_under_the_melody(tmp_path: Path) -> None:
    # O'Neill's and Ryan's quoted strings are fingerings, dynamics and "D.C.", not chords (see below); music21's
    # Nottingham reels carry real ones ("D", "Em", "A7").
    text, _ = read_text(CORPUS / "nottingham-dataset" / "reelsa-c.abc")
    reel = normalise_abc(split_tunes(text)[0].text)
    assert '"A7"' in reel
    trip = remi_round_trip(reel)
    assert trip.exact, trip.difference
    assert set(trip.programs) == {MELODY_PROGRAM, BASS_PROGRAM, CHORD_PROGRAM}
    tracks = _tracks(trip.remi, tmp_path)
    melody, bass, chords = tracks[MELODY_PROGRAM], tracks[BASS_PROGRAM], tracks[CHORD_PROGRAM]
    assert max(bass) < min(melody)
    assert statistics.median(chords) < statistics.median(melody) and len(chords) > len(bass) > 20


def test_text_in_quotes_is_not_played_as_a_chord() -> None:
    # "f", "p", "pp" (dynamics): abc2midi alone plays "f" as an F bass note.
    tune = next(t for t in _oneills("0051-0100.abc") if "WILL THEY EVER RETURN" in t)
    assert '"f"' in tune and '"pp"' in tune
    assert remi_round_trip(normalise_abc(tune)).programs == (MELODY_PROGRAM,)


# --- bars -------------------------------------------------------------------------------------------------

def test_pickup_ends_bar_one_and_the_first_full_bar_starts_bar_two(oneills_tunes: list[str]) -> None:
    # "The Little Girl of my Heart", 4/4: pickup F-G (two eighths), then |A-dd>-c ...
    reel = _bars(abc_to_remi(oneills_tunes[3]))
    assert reel[0][:1] == ["TimeSig_4/4"]
    assert [t for t in reel[0] if t.startswith(("Position", "Pitch"))][-4:] == [
        "Position_72", "Pitch_66", "Position_84", "Pitch_67"]
    assert reel[1][:4] == ["TimeSig_4/4", "Position_0", "Program_40", "Pitch_69"]
    # "The Little Fair Child", 6/8: pickup G (one eighth = 24 positions before the bar line of 144)
    jig = _bars(abc_to_remi(oneills_tunes[6]))
    assert [t for t in jig[0] if t.startswith(("Position", "Pitch"))] == ["Position_0", "Position_120", "Pitch_67"]
    assert jig[1][:4] == ["TimeSig_6/8", "Position_0", "Program_40", "Pitch_69"]
    # Without a pickup, bar 1 starts at Position_0 (abc2midi's one tick late start is gone).
    plain = _bars(abc_to_remi(SIMPLE))
    assert plain[0][:5] == ["TimeSig_4/4", "Position_0", "Tempo_122.99", "Program_40", "Pitch_67"]


# --- the round trip ---------------------------------------------------------------------------------------

def test_round_trip_is_exact_on_real_tunes(oneills_tunes: list[str]) -> None:
    for tune in oneills_tunes[2:]:
        trip = remi_round_trip(normalise_abc(tune))
        assert trip.exact and trip.reason == "" and trip.difference == "", trip.difference
        assert trip.programs == (MELODY_PROGRAM,) and trip.notes > 40
        assert trip.tokens == len(trip.remi.split()) and trip.remi.count("Pitch_") == trip.notes


def test_grace_notes_off_the_grid_are_reported(oneills_tunes: list[str]) -> None:
    # "The Enchanted Valley": L:1/16 in 2/4, grace notes {d}: abc2midi gives them 1/64 notes, off the grid.
    trip = remi_round_trip(normalise_abc(oneills_tunes[0]))
    assert not trip.exact and trip.reason == REASON_ONSET
    assert "first lost" in trip.difference
    assert trip.remi.startswith("Bar_None")  # the text is still written: lossy, not missing


@pytest.mark.parametrize(("body", "reason"), [
    ("M:4/8\nL:1/8\nK:C\nCDEF|GABc|]\n", REASON_TIME_SIGNATURE),  # 4/8 is not in REMI_CONFIG
    ("M:4/4\nL:1/4\nK:C\nC16|]\n", REASON_LONG),  # 16 beats, REMI's longest is 12
    ("M:2/4\nL:1/8\nK:C\n(5CDEFG AB|c4|]\n", REASON_ONSET),  # a quintuplet
])
def test_round_trip_names_what_remi_loses(body: str, reason: str) -> None:
    trip = remi_round_trip(f"X:1\nT:t\n{body}")
    assert (trip.exact, trip.reason) == (False, reason)


def test_quantisation_loss_sees_same_pitch_overlaps() -> None:
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("violin", program=40)
    track.notes.extend([symusic.Note(0, 960, 67, 80), symusic.Note(480, 480, 67, 80)])
    score.tracks.append(track)
    assert quantisation_loss(score) == REASON_OVERLAP
    track.notes[1].time = 960
    assert quantisation_loss(score) == ""


# --- MIDI <-> REMI ----------------------------------------------------------------------------------------

def test_midi_to_remi_keeps_programs_apart_and_drops_drums(tmp_path: Path) -> None:
    score = symusic.Score(480)
    for program, pitch in ((40, 67), (0, 67), (32, 43)):  # the same pitch on two programs stays twice
        track = symusic.Track(f"p{program}", program=program)
        track.notes.append(symusic.Note(0, 480, pitch, 80))
        score.tracks.append(track)
    drums = symusic.Track("drums", program=0, is_drum=True)
    drums.notes.append(symusic.Note(0, 480, 36, 80))
    score.tracks.append(drums)
    score.dump_midi(str(tmp_path / "in.mid"))
    text = midi_to_remi(tmp_path / "in.mid")
    assert {t for t in text.split() if t.startswith("Program_")} == {"Program_0", "Program_32", "Program_40"}
    assert _tracks(text, tmp_path) == {0: [67], 32: [43], 40: [67]}


def test_raw_abc2midi_midi_to_remi_and_back_keeps_pitches(oneills_tunes: list[str], tmp_path: Path) -> None:
    for i, tune in enumerate(oneills_tunes[:5]):
        original = tmp_path / f"tune{i}.mid"
        abc_to_midi(tune, original)
        text = midi_to_remi(original)
        assert text.startswith("Bar_None"), text[:40]
        decoded = tmp_path / f"decoded{i}.mid"
        remi_to_midi(text, decoded)
        before, after = _notes(original), _notes(decoded)
        assert len(before) > 20
        # The same notes, pitch for pitch. Onsets move to the 1/24-beat grid (abc2midi's late tick, grace
        # notes), which can reorder notes that start almost together: compare as multisets plus onsets.
        assert sorted(p for _, p in after) == sorted(p for _, p in before), f"tune {i}"
        assert all(abs(a[0] - b[0]) <= 4 for a, b in zip(sorted(after), sorted(before), strict=True))
        assert midi_to_remi(original.read_bytes()) == text


def test_abc_to_remi_note_count(oneills_tunes: list[str], tmp_path: Path) -> None:
    text = abc_to_remi(SIMPLE)
    pitches = [int(tok.split("_")[1]) for tok in text.split() if tok.startswith("Pitch_")]
    assert pitches[:8] == [67, 69, 71, 72, 74, 76, 74, 71]  # G A B c d e d B
    assert sorted(pitches[8:]) == [67, 71, 74]  # the [GBd] chord
    # Repeats are played out by abc2midi, so the notes are counted twice.
    repeated = abc_to_remi(SIMPLE.replace("GABc", "|: GABc").replace("z4 |]", "z4 :|"))
    assert repeated.count("Pitch_") == 22
    for i, tune in enumerate(oneills_tunes[:5]):
        midi = tmp_path / f"t{i}.mid"
        abc_to_midi(tune, midi)
        assert abc_to_remi(tune).count("Pitch_") == len(_notes(midi)), f"tune {i}"


# --- abc2midi and bad input -------------------------------------------------------------------------------

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
    empty = symusic.Score(480)
    empty.dump_midi(str(tmp_path / "empty.mid"))
    with pytest.raises(ConversionError, match="no \\(non-drum\\) notes"):
        midi_to_remi(tmp_path / "empty.mid")
    with pytest.raises(ConversionError, match="outside the vocabulary"):
        remi_to_midi("Bar_None Position_0 Pitch_67 Banana_1", tmp_path / "x.mid")
    with pytest.raises(ConversionError, match="empty"):
        remi_to_midi("  ", tmp_path / "x.mid")
    with pytest.raises(ConversionError, match="cannot read the tune's bars.*K: field"):
        abc_to_remi("X:1\nT:No key\nabc|\n")
    with pytest.raises(ConversionError, match="cannot read the tune's bars"):
        remi_round_trip("X:1\nT:Bad\nM:4/4\nL:1/8\nK:C\nabc ]]] d|\n")
