"""abcgen.evaluation.midi on real music: O'Neill's tunes and a Bach chorale converted by abc2midi, a REMI round
trip, and hand-built files (symusic) for each way a generated file can fail the check."""

from __future__ import annotations

import math
import re
from pathlib import Path

import music21
import numpy as np
import pytest
import symusic

from abcgen.errors import ConfigError
from abcgen.evaluation import midi
from abcgen.notation.musicxml import musicxml_to_abc
from abcgen.notation.remi import MELODY_PROGRAM, VOICE_PROGRAMS, abc_to_midi, midi_to_remi, remi_to_midi
from abcgen.notation.tune import split_tunes

ONEILLS = Path(music21.__file__).parent / "corpus" / "oneills1850" / "0001-0050.abc"
TPQ = 480


def _field(abc: str, name: str) -> str:
    return re.search(rf"^{name}:(.*)$", abc, re.M).group(1).strip()


def _to_midi(abc: str, path: Path) -> bytes:
    abc_to_midi(abc, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def oneills(tmp_path_factory) -> list[tuple[str, bytes]]:
    """O'Neill's first 50 tunes as (ABC, MIDI) on the melody's program (the violin), about 0.2 s."""
    folder = tmp_path_factory.mktemp("oneills")
    tunes = [t.text for t in split_tunes(ONEILLS.read_text(encoding="latin-1"))]
    out = []
    for i, abc in enumerate(tunes):
        abc = re.sub(r"^(K:.*)$", rf"\1\n%%MIDI program {MELODY_PROGRAM}", abc, count=1, flags=re.M)
        out.append((abc, _to_midi(abc, folder / f"{i}.mid")))
    return out


@pytest.fixture(scope="module")
def chorale(tmp_path_factory) -> tuple[str, bytes]:
    """The first four-voice Bach chorale of music21's corpus (BWV 10.7), voices on ``VOICE_PROGRAMS``."""
    paths = sorted(p for p in map(Path, music21.corpus.getComposer("bach")) if p.suffix == ".mxl")
    for path in paths:
        head, _, body = musicxml_to_abc(path).partition("\nK:")
        if len(re.findall(r"^V:", head, re.M)) == 4:
            break
    body = re.sub(r"^V:(\d+)\s*$", lambda m: f"{m.group(0)}\n%%MIDI program {VOICE_PROGRAMS[int(m.group(1)) - 1]}",
                  body, flags=re.M)
    abc = head + "\nK:" + body
    return abc, _to_midi(abc, tmp_path_factory.mktemp("chorale") / "chorale.mid")


def _score(notes: list[tuple[int, int, int, int]], meters: list[tuple[int, int, int]] | None = None,
           drums: int = 0) -> bytes:
    """A MIDI file of (onset tick, duration ticks, pitch, program) notes, one track a program, at 480 a
    quarter, with time signatures (tick, numerator, denominator)."""
    score = symusic.Score(TPQ)
    for tick, numerator, denominator in meters or []:
        score.time_signatures.append(symusic.TimeSignature(tick, numerator, denominator))
    for program in sorted({n[3] for n in notes}):
        track = symusic.Track(f"program {program}", program, False)
        for onset, duration, pitch, p in notes:
            if p == program:
                track.notes.append(symusic.Note(onset, duration, pitch, 80))
        score.tracks.append(track)
    if drums:
        track = symusic.Track("drums", 0, True)
        for i in range(drums):
            track.notes.append(symusic.Note(i * TPQ, TPQ // 2, 36, 80))
        score.tracks.append(track)
    return score.dumps_midi()


def _jig_bars(bars: int, program: int = 40, pitch: int = 67) -> list[tuple[int, int, int, int]]:
    """``bars`` bars of 6/8 in eighth notes (240 ticks), filling every bar exactly."""
    return [(i * 240, 240, pitch + (i % 3) * 2, program) for i in range(6 * bars)]


def _transposed(data: bytes, semitones: int = 0, rng: np.random.Generator | None = None) -> bytes:
    """The file with every pitch moved by ``semitones``, or drawn at random from 55..90 with ``rng``."""
    score = symusic.Score.from_midi(data)
    for track in score.tracks:
        for note in track.notes:
            note.pitch = int(rng.integers(55, 91)) if rng is not None else note.pitch + semitones
    return score.dumps_midi()


# ---------------------------------------------------------------- reading


def test_read_gives_beats_ticks_meter_key_and_bars_of_a_converted_jig(tmp_path) -> None:
    abc = "X:1\nT:t\nM:6/8\nL:1/8\nK:D\n|:dfa dfa|g3 f2e:|\n"
    piece = midi.read_midi(_to_midi(abc, tmp_path / "jig.mid"))
    assert piece.meter == "6/8" and piece.ticks_per_quarter == TPQ and piece.bars == 4  # the repeat played
    assert piece.key is not None and piece.key.label == "D major"
    assert [n.pitch for n in piece.notes[:8]] == [74, 78, 81, 74, 78, 81, 79, 78]
    # a 6/8 beat is an eighth: onsets 0..6 beats (abc2midi starts each note a tick late, 1/240 of a beat)
    assert [round(n.onset) for n in piece.notes[:9]] == [0, 1, 2, 3, 4, 5, 6, 9, 11]
    assert piece.notes[6].duration == pytest.approx(3, abs=0.01)
    assert piece.notes[1].onset_ticks == 241 and piece.tempos[0][1] == pytest.approx(120)


def test_every_oneills_tune_reads_in_its_own_meter_and_checks_valid(oneills) -> None:
    for abc, data in oneills:
        piece = midi.read_midi(data)
        meter = {"C": "4/4", "C|": "2/2"}.get(_field(abc, "M"), _field(abc, "M"))
        assert piece.meter == meter and piece.programs == (MELODY_PROGRAM,)
        check = midi.check_midi(data, meter=_field(abc, "M"), bars=piece.bars, programs=str(MELODY_PROGRAM))
        assert check.valid and check.readable, (_field(abc, "T"), check.problems)


def test_meter_changes_give_beats_and_bars_per_segment() -> None:
    # two bars of 6/8 (beat: an eighth), then 3/4 (beat: a quarter) for one bar
    data = _score(_jig_bars(2) + [(2880, 1440, 72, 40)], meters=[(0, 6, 8), (2880, 3, 4)])
    piece = midi.read_midi(data)
    assert [ts.text for ts in piece.time_signatures] == ["6/8", "3/4"] and piece.bars == 3
    assert piece.notes[-1].onset == 12 and piece.notes[-1].duration == 3  # 12 eighths, then 3 quarters
    assert piece.bar_at(2880)[0] == 2 and piece.bar_end(3) == 4320


def test_a_chorale_has_four_programs_four_voices_sounding_and_the_soprano_as_melody(chorale) -> None:
    _, data = chorale
    piece = midi.read_midi(data)
    assert piece.programs == VOICE_PROGRAMS and piece.meter == "4/4"
    assert midi.check_midi(data, meter="4/4", bars=piece.bars, programs="40,41,42,43").valid
    values = midi.midi_values(piece)
    assert 3.5 <= values["polyphony"] <= 4.0  # four voices, a passing note now and then
    assert values["pitch_mean_program40"] > values["pitch_mean_program41"] > values["pitch_mean_program43"]
    soprano = [n for n in piece.notes if n.program == VOICE_PROGRAMS[0]]
    assert len(midi.midi_melody_symbols(piece)) == len(soprano)


def test_a_remi_round_trip_reads_back_valid_with_the_same_melody(oneills, tmp_path) -> None:
    abc, data = oneills[4]
    remi_to_midi(midi_to_remi(data), tmp_path / "decoded.mid")
    decoded, original = midi.read_midi(tmp_path / "decoded.mid"), midi.read_midi(data)
    assert decoded.bars == original.bars and decoded.programs == original.programs
    assert midi.midi_melody_symbols(decoded) == midi.midi_melody_symbols(original)
    assert midi.check_midi(tmp_path / "decoded.mid", meter=_field(abc, "M"), bars=original.bars, programs=[40]).valid


# ---------------------------------------------------------------- validity


def test_a_file_that_fills_its_bars_exactly_is_valid() -> None:
    check = midi.check_midi(_score(_jig_bars(2), meters=[(0, 6, 8)]), meter="6/8", bars=2, programs="40")
    assert check.valid and check.problems == [] and check.piece.bars == 2


def test_wrong_meter_is_named_with_its_bar() -> None:
    check = midi.check_midi(_score(_jig_bars(2), meters=[(0, 3, 4)]), meter="6/8")
    assert not check.valid and check.problems == ["meter: time signature 3/4 from bar 1 (tick 0); asked for 6/8 "
                                                  "throughout"]
    change = midi.check_midi(_score(_jig_bars(3), meters=[(0, 6, 8), (2880, 3, 4)]), meter="6/8")
    assert [p.split(";")[0] for p in change.problems] == ["meter: time signature 3/4 from bar 3 (tick 2880)"]
    unwritten = midi.check_midi(_score(_jig_bars(2)), meter="6/8")
    assert "none (MIDI's default 4/4)" in unwritten.problems[0]
    assert midi.check_midi(_score(_jig_bars(2)), meter="C").valid  # no time signature is 4/4


def test_a_note_past_the_last_bar_is_a_problem() -> None:
    notes = _jig_bars(2) + [(2880 - 240, 480, 72, 40)]  # the last eighth held into bar 3
    check = midi.check_midi(_score(notes, meters=[(0, 6, 8)]), meter="6/8", bars=2)
    assert not check.valid and check.problems[0].startswith("bars: the last note ends at tick 3120, in bar 3")


def test_unrequested_programs_drums_and_out_of_range_pitches_are_problems() -> None:
    notes = _jig_bars(1) + [(0, 1440, 45, 33), (0, 1440, 80, 32)]  # a program not asked; a bass too high
    check = midi.check_midi(_score(notes, meters=[(0, 6, 8)], drums=3), programs="40, 32")
    assert not check.valid
    assert check.problems == ["programs: 1 notes on program 33; asked only for 32, 40",
                              "drums: 3 notes on the drum channel; asked only for programs 32, 40",
                              "range: 1 notes of program 32 outside its range 28..67 (lowest 80, highest 80)"]


def test_garbage_empty_and_missing_files_are_invalid(tmp_path) -> None:
    garbage = midi.check_midi(b"these bytes are not a MIDI file")
    assert not garbage.valid and not garbage.readable and garbage.piece is None
    assert [p.split(":")[0] for p in garbage.problems] == ["mido", "pretty_midi", "symusic"]
    empty = midi.check_midi(_score([], meters=[(0, 4, 4)]))
    assert not empty.valid and empty.problems == ["no notes: the file has no pitched note; a piece needs at "
                                                  "least one"]
    missing = midi.check_midi(tmp_path / "never-written.mid")
    assert not missing.valid and missing.problems[0].startswith("file: cannot read MIDI file")


def test_an_unreadable_request_is_a_config_error() -> None:
    data = _score(_jig_bars(1), meters=[(0, 6, 8)])
    for request in ({"meter": "six-eight"}, {"bars": "more"}, {"programs": "200"}):
        with pytest.raises(ConfigError):
            midi.check_midi(data, **request)


# ---------------------------------------------------------------- descriptors and overlap


def test_real_against_real_overlaps_highly_and_random_pitches_do_not(oneills) -> None:
    first = [midi.read_midi(data) for _, data in oneills[:25]]
    second = [midi.read_midi(data) for _, data in oneills[25:]]
    rng = np.random.default_rng(0)
    shuffled = [midi.read_midi(_transposed(data, rng=rng)) for _, data in oneills[:25]]
    real, noise = midi.midi_overlap(first, second), midi.midi_overlap(shuffled, second)
    assert set(real) == set(midi.MIDI_FEATURES)
    assert np.mean([v["overlap"] for v in real.values()]) > 0.9
    assert real["pitch_class_duration_histogram"]["overlap"] > 0.85
    assert noise["pitch_class_duration_histogram"]["overlap"] < 0.2 and noise["pitch_mean"]["overlap"] < 0.8
    assert noise["duration_histogram"] == real["duration_histogram"]  # the rhythm was not touched
    same = midi.midi_overlap(first, first)  # a set against itself: each piece never against itself
    assert all(v["overlap"] > 0.999 and v["kl"] < 1e-6 for v in same.values() if not math.isnan(v["overlap"]))


def test_descriptors_of_a_hand_built_piece() -> None:
    # one bar of 6/8: a dotted quarter chord of three notes, then three eighths on the melody
    notes = [(0, 720, 67, 40), (0, 720, 55, 32), (0, 720, 60, 0), (720, 240, 69, 40), (960, 240, 71, 40),
             (1200, 240, 72, 40)]
    piece = midi.read_midi(_score(notes, meters=[(0, 6, 8)]))
    values = midi.midi_values(piece)
    assert values["pitch_range"] == 17 and values["notes_per_bar"] == 6 and values["polyphony"] == 1.5
    assert values["onsets_on_beats"] == 50  # 4 onsets; the 2 dotted-quarter beats of 6/8 have one each
    assert values["notes_per_bar_program40"] == 4 and values["pitch_mean_program32"] == 55
    features = midi.midi_features(piece)
    durations = dict(zip(map(str, midi.DURATION_CLASSES), features["duration_histogram"], strict=True))
    assert durations["3"] == pytest.approx(0.5) and durations["1"] == pytest.approx(0.5)
    assert features["ioi_histogram"][midi.DURATION_CLASSES.index(1)] == pytest.approx(2 / 3)
    assert features["pitch_class_duration_histogram"][7] == pytest.approx(0.5)  # G4 and G3: 1440 of 2880 ticks


# ---------------------------------------------------------------- the report


def test_a_d_major_tune_is_found_in_d_major(oneills) -> None:
    d_major = [data for abc, data in oneills if _field(abc, "K") == "D"][:4]
    assert len(d_major) == 4
    for request, exact, signature in (("D major", 100, 100), ("B minor", 0, 100), ("G major", 0, 0)):
        result = midi.evaluate_midi(d_major, [{"key": request}] * 4, [d for _, d in oneills[:8]], n_resamples=50)
        rows = {m["name"]: m for m in result["metrics"]}
        assert rows["key_adherence_ks"]["generated"]["value"] == exact, request
        assert rows["key_signature_adherence_ks"]["generated"]["value"] == signature, request


def test_a_transposed_training_tune_is_flagged_as_a_copy(oneills) -> None:
    train = [data for _, data in oneills[:30]]
    copy = _transposed(oneills[3][1], semitones=2)
    near = symusic.Score.from_midi(oneills[5][1])
    near.tracks[0].notes[10].pitch += 1  # one note changed: still a copy
    generated = [copy, near.dumps_midi(), oneills[40][1]]  # the last: a tune not in the training set
    result = midi.evaluate_midi(generated, None, [d for _, d in oneills[30:40]], train=train, n_resamples=50)
    similarity = result["similarities"]["generated"]
    assert similarity[0] == 1.0 and 0.9 < similarity[1] < 1.0 and similarity[2] < 0.85
    rows = {m["name"]: m for m in result["metrics"]}
    assert rows["exact_copies"]["generated"]["value"] == 1
    assert rows["copy_rate"]["generated"]["value"] == pytest.approx(200 / 3)
    assert rows["copy_rate"]["real"]["value"] == 0


def test_evaluate_midi_scores_every_tier_under_the_abc_reports_names(oneills, chorale) -> None:
    generated = [data for _, data in oneills[:12]] + [_score(_jig_bars(2), meters=[(0, 3, 4)]), b"not MIDI"]
    requests = [{"key": _field(abc, "K"), "meter": _field(abc, "M"), "bars": str(midi.read_midi(data).bars),
                 "programs": "40"} for abc, data in oneills[:12]]
    requests += [{"meter": "6/8", "bars": "2", "programs": "40"}, {"meter": "6/8", "programs": "40"}]
    result = midi.evaluate_midi(generated, requests, [d for _, d in oneills[20:36]] + [chorale[1]],
                                train=[d for _, d in oneills[36:]], n_resamples=100)
    assert set(result) == {"metrics", "adherence", "counts", "histograms", "overlap", "similarities", "problems"}
    rows = {m["name"]: m for m in result["metrics"]}
    for name in ("strict_validity", "overlap_mean", "kl_mean", "pitch_range", "nearest_neighbour_similarity",
                 "copy_rate", "exact_copies", "duplicates_within_set", "key_adherence_ks",
                 "key_signature_adherence_ks", "meter_adherence", "bars_adherence"):
        assert name in rows, name  # the ABC report's names
    assert rows["strict_validity"]["generated"]["value"] == pytest.approx(1200 / 14)  # the 3/4 one; not MIDI
    assert rows["strict_validity"]["generated"]["low"] < rows["strict_validity"]["generated"]["high"]
    assert rows["midi_readable"]["generated"]["value"] == pytest.approx(1300 / 14)
    assert rows["meter_adherence"]["generated"]["value"] == pytest.approx(1200 / 14)
    assert rows["bars_adherence"]["generated"]["value"] == 100  # 2 bars of 6/8 are 2 of 3/4; one not asked
    assert rows["programs_adherence"]["generated"]["value"] == pytest.approx(1300 / 14)
    assert rows["overlap_mean"]["generated"]["value"] > 0.8 and rows["overlap_mean"]["real"]["value"] > 0.8
    assert "pitch_mean_program43" in rows  # the chorale's bass, on the real side only
    assert list(result["adherence"]) == ["key", "meter", "bars", "programs"]
    assert result["adherence"]["programs"]["metric"] == "programs_adherence"
    assert result["counts"]["generated_unreadable"] == 1 and result["problems"] == {"meter": 1, "mido": 1}
    with pytest.raises(ValueError, match="2 requests for 14 generated"):
        midi.evaluate_midi(generated, requests[:2], [chorale[1]])


def test_two_models_share_one_table(oneills) -> None:
    real = [d for _, d in oneills[30:46]]
    abc_model = midi.evaluate_midi([d for _, d in oneills[:8]], None, real, n_resamples=50)
    rng = np.random.default_rng(1)
    remi_model = midi.evaluate_midi([_transposed(d, rng=rng) for _, d in oneills[8:16]], None, real, n_resamples=50)
    table = midi.format_midi_report({"abc": abc_model, "remi": remi_model})
    assert "| tier | metric | unit | abc | remi | real | meaning |" in table
    overlap = next(line for line in table.splitlines() if "| overlap_pitch_class_duration_histogram |" in line)
    abc_cell, remi_cell = (float(c) for c in overlap.split("|")[4:6])
    assert abc_cell > 0.8 > remi_cell
    assert midi.format_midi_report(abc_model).count("| generated |") == 1
