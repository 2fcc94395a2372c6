"""abcgen.render on MIDI that did not come from ABC: the piano roll PNG and the audio of a MIDI file.

On a real tune with chord symbols (the Nottingham dataset's "Cuckoo's Nest", played by abc2midi as violin,
acoustic bass and piano chords) and a three-track file built with symusic (a 3/4 -> 4/4 change). Nothing
is skipped: a missing abc2midi, fluidsynth, soundfont or matplotlib fails the tests (scripts/install.sh).
"""

from __future__ import annotations

import wave
from pathlib import Path

import music21
import numpy as np
import pytest
import symusic
from PIL import Image

from abcgen import render
from abcgen.corpus.sources import read_text
from abcgen.errors import ConfigError, ConversionError
from abcgen.notation.remi import abc_to_midi
from abcgen.notation.tune import split_tunes
from abcgen.render import pianoroll

NOTTINGHAM = Path(music21.__file__).parent / "corpus" / "nottingham-dataset" / "reelsa-c.abc"
# abc2midi plays chord symbols as a bass and a chord track; these give each its own instrument, as the
# multi-track model's data has them (violin melody, acoustic bass, piano chords).
PROGRAMS = "%%MIDI program 40\n%%MIDI bassprog 32\n%%MIDI chordprog 0\n"
TPQ = 480  # ticks per quarter note of the symusic file
QPM = 120  # its tempo: a quarter note lasts 0.5 s


@pytest.fixture(scope="module")
def tune_midi(tmp_path_factory) -> Path:
    """The first tune of the Nottingham reels file (chord symbols "D", "Em", "A7" ...) as abc2midi's MIDI."""
    text, _ = read_text(NOTTINGHAM)
    abc = split_tunes(text)[0].text
    assert '"Em"' in abc and '"A7"' in abc
    abc = abc.replace("\nK:", "\n" + PROGRAMS + "K:", 1)
    path = tmp_path_factory.mktemp("tune") / "cuckoo.mid"
    abc_to_midi(abc, path)
    programs = {t.program for t in symusic.Score(str(path)).tracks if len(t.notes)}
    assert programs == {0, 32, 40}, programs
    return path


def _three_tracks(bars_34: int = 2, bars_44: int = 2) -> bytes:
    """Violin melody, acoustic bass and piano chords: ``bars_34`` bars of 3/4 then ``bars_44`` of 4/4,
    a melody note on every beat, the bass on each downbeat, a C major triad held through each bar."""
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.time_signatures.append(symusic.TimeSignature(bars_34 * 3 * TPQ, 4, 4))
    score.tempos.append(symusic.Tempo(0, qpm=QPM))
    melody, bass, chords = (symusic.Track(name=n, program=p) for n, p in (("violin", 40), ("bass", 32),
                                                                           ("piano", 0)))
    starts = [(i * 3 * TPQ, 3) for i in range(bars_34)] + [
        (bars_34 * 3 * TPQ + i * 4 * TPQ, 4) for i in range(bars_44)]
    scale = [72, 74, 76, 77, 79, 81, 83, 84]
    for bar, (start, beats) in enumerate(starts):
        for beat in range(beats):
            melody.notes.append(symusic.Note(start + beat * TPQ, TPQ, scale[(bar + beat) % len(scale)], 90))
        bass.notes.append(symusic.Note(start, beats * TPQ, 36, 90))
        for pitch in (60, 64, 67):
            chords.notes.append(symusic.Note(start, beats * TPQ, pitch, 70))
    score.tracks.extend([melody, bass, chords])
    return score.dumps_midi()


def _pixels_of(image: np.ndarray, colour: str, tolerance: float = 12.0) -> int:
    """How many pixels show a note of ``colour`` (a palette entry drawn at NOTE_ALPHA on white, where it
    overlaps nothing)."""
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    blended = pianoroll.NOTE_ALPHA * rgb + (1 - pianoroll.NOTE_ALPHA) * 255
    return int((np.abs(image - blended).max(axis=-1) <= tolerance).sum())


def _check_png(path: Path, instruments: int) -> None:
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    assert image.size == (pianoroll.WIDTH_PX, pianoroll.HEIGHT_PX)
    grey = np.asarray(image.convert("L"))
    assert (grey < 250).mean() > 0.02  # notes, axes and labels on the white background
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    counts = [_pixels_of(rgb, colour) for colour in pianoroll._COLOURS[:instruments + 1]]
    assert min(counts[:instruments]) > 200, counts  # one colour per instrument ...
    assert counts[instruments] < 20, counts  # ... and no other instrument's


def _wav(path: Path) -> tuple[np.ndarray, float]:
    """The samples (-1..1, channels interleaved) and the length in seconds of a 16-bit WAV."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        return samples, w.getnframes() / w.getframerate()


def test_pianoroll_of_a_real_tune(tune_midi, tmp_path):
    out = render.render_pianoroll(tune_midi, tmp_path / "roll" / "cuckoo.png", title="Cuckoo's Nest")
    assert out == tmp_path / "roll" / "cuckoo.png"
    _check_png(out, instruments=3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cuckoo.png"]  # no temporary sibling left


def test_pianoroll_first_bars_and_replacement(tune_midi, tmp_path):
    out = tmp_path / "roll.png"
    out.write_bytes(b"an older render")
    render.render_pianoroll(tune_midi.read_bytes(), out, bars=4)
    _check_png(out, instruments=3)


def test_pianoroll_of_three_tracks(tmp_path):
    out = render.render_pianoroll(_three_tracks(), str(tmp_path / "three.png"))
    _check_png(out, instruments=3)


def test_bars_follow_the_time_signatures():
    score = symusic.Score.from_midi(_three_tracks(bars_34=2, bars_44=3))
    ticks, bars = pianoroll._bar_map(score, int(score.end()))
    bar_starts = [0, 3, 6, 10, 14, 18]  # in quarter notes: two 3/4 bars, then three 4/4 bars
    assert np.interp([q * TPQ for q in bar_starts], ticks, bars).tolist() == [0, 1, 2, 3, 4, 5]


def test_a_time_signature_change_mid_bar_starts_a_new_bar():
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(2 * TPQ, 3, 4))  # half a 4/4 bar, then 3/4
    ticks, bars = pianoroll._bar_map(score, 8 * TPQ)
    assert np.interp([2 * TPQ, 5 * TPQ, 8 * TPQ], ticks, bars).tolist() == [1, 2, 3]


def test_names():
    assert [pianoroll.instrument_name(p) for p in (40, 32, 0, 41, 42, 43, 73)] == [
        "violin", "acoustic bass", "acoustic grand piano", "viola", "cello", "contrabass", "program 73"]
    assert pianoroll.instrument_name(0, drum=True) == "drums"
    assert [pianoroll.pitch_name(p) for p in (60, 61, 21, 108)] == ["C4", "C#4", "A0", "C8"]


def _no_notes() -> bytes:
    score = symusic.Score(TPQ)
    score.tracks.append(symusic.Track(name="empty", program=40))
    return score.dumps_midi()


def test_pianoroll_bad_input(tmp_path):
    out = tmp_path / "roll.png"
    text = tmp_path / "tune.abc"
    text.write_text("X:1\nT:not MIDI\nK:C\nCDEF|\n", encoding="utf-8")
    for midi in (b"", b"MThd" + b"x" * 40, text):
        with pytest.raises(ConversionError, match=r"^cannot read .* as MIDI \(.*\): give a Standard MIDI File$"):
            render.render_pianoroll(midi, out)
    with pytest.raises(ConversionError, match="the MIDI data holds no notes: nothing to draw"):
        render.render_pianoroll(_no_notes(), out)
    with pytest.raises(ConfigError, match="does not exist"):
        render.render_pianoroll(tmp_path / "missing.mid", out)
    with pytest.raises(ConfigError, match="give a MIDI file's bytes or its path"):
        render.render_pianoroll(42, out)  # type: ignore[arg-type]
    for bars in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match=f"bars {bars!r}: give a whole number"):
            render.render_pianoroll(_three_tracks(), out, bars=bars)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"does not end in \.png"):
        render.render_pianoroll(_three_tracks(), tmp_path / "roll.jpg")
    assert list(tmp_path.iterdir()) == [text]  # nothing written


def test_pianoroll_refuses_bars_without_notes(tmp_path):
    score = symusic.Score(TPQ)
    track = symusic.Track(name="late", program=40)
    track.notes.append(symusic.Note(8 * 4 * TPQ, TPQ, 72, 90))  # the only note is in bar 9
    score.tracks.append(track)
    with pytest.raises(ConversionError, match="no notes in its first 4 bars"):
        render.render_pianoroll(score.dumps_midi(), tmp_path / "roll.png", bars=4)
    _check_png(render.render_pianoroll(score.dumps_midi(), tmp_path / "roll.png"), instruments=1)


def test_audio_of_three_tracks(tmp_path):
    data = _three_tracks()
    out = render.render_midi_audio(data, tmp_path / "three.wav")
    assert out == tmp_path / "three.wav"
    samples, audio_length = _wav(out)  # the length of the music in the file (seconds of audio), not a timing
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 0.005, f"WAV nearly silent (RMS {rms:.5f})"
    assert np.abs(samples).max() < 0.99  # not clipped
    expected = (2 * 3 + 2 * 4) * 60 / QPM  # 14 quarter notes
    assert expected - 0.5 <= audio_length <= expected + 5.0, (audio_length, expected)  # plus the release tail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.wav"]  # no temporary sibling left


def test_audio_of_a_real_tune_from_its_path(tune_midi, tmp_path):
    out = render.render_midi_audio(tune_midi, tmp_path / "cuckoo.ogg", fmt="ogg")
    assert out.read_bytes()[:4] == b"OggS"
    out = render.render_midi_audio(tune_midi, tmp_path / "cuckoo.wav", max_audio_seconds=None)
    samples, audio_length = _wav(out)  # seconds of audio in the file, not a timing
    assert float(np.sqrt(np.mean(samples**2))) > 0.005
    midi_end = symusic.Score(str(tune_midi), ttype="second").end()
    assert midi_end > 30  # two 8-bar parts, each repeated, at 120 quarter notes a minute
    assert midi_end - 0.5 <= audio_length <= midi_end + 5.0, (audio_length, midi_end)


def test_audio_bad_input(tmp_path, tune_midi):
    out = tmp_path / "out.wav"
    with pytest.raises(ConfigError, match="audio format 'mp3': give one of wav, flac, ogg"):
        render.render_midi_audio(tune_midi, tmp_path / "out.mp3", fmt="mp3")
    with pytest.raises(ConfigError, match=r"ends in \.flac but fmt is 'wav'"):
        render.render_midi_audio(tune_midi, tmp_path / "out.flac")
    with pytest.raises(ConversionError, match="cannot read the MIDI data as MIDI"):
        render.render_midi_audio(b"MThd" + b"x" * 40, out)
    with pytest.raises(ConversionError, match="holds no notes: there is nothing to play"):
        render.render_midi_audio(_no_notes(), out)
    with pytest.raises(ConfigError, match="more than max_audio_seconds=5"):
        render.render_midi_audio(tune_midi, out, max_audio_seconds=5)
    with pytest.raises(ConfigError, match="sample_rate 1000"):
        render.render_midi_audio(tune_midi, out, sample_rate=1000)
    with pytest.raises(ConfigError, match="is not a file"):
        render.render_midi_audio(tune_midi, out, soundfont=tmp_path / "missing.sf2")
    assert list(tmp_path.iterdir()) == []  # nothing written
