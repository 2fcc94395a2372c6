"""abcgen.render: MIDI, audio (WAV, FLAC, Ogg) and sheet music (SVG, PNG) from real tunes.

Nothing here is skipped: a missing abc2midi, fluidsynth, soundfont, verovio or cairosvg fails the tests
(scripts/install.sh installs them all).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import wave
from fractions import Fraction
from pathlib import Path

import music21
import numpy as np
import pytest
import symusic
from PIL import Image

from abcgen import render
from abcgen.corpus.sources import read_text, resolve_sources
from abcgen.errors import AbcParseError, ConfigError, ConversionError, ToolNotFoundError
from abcgen.notation.bars import bar_durations, events_by_voice
from abcgen.notation.musicxml import musicxml_to_abc
from abcgen.notation.tune import normalise_tune, split_tunes
from abcgen.render import audio, sheet

ALL = ("mid", "wav", "flac", "ogg", "svg", "png")
# A small valid tune, and one with an unterminated !decoration! that aborts verovio's ABC importer.
SMALL = "X:1\nT:Small\nM:6/8\nL:1/8\nK:D\n|:DFA dfa|gfe dcB:|\n"
CRASHES_VEROVIO = "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GA!Bc|\n"


def _first_oneill() -> str:
    text, _ = read_text(resolve_sources(["music21:oneills1850"])[0].path)
    return normalise_tune(split_tunes(text)[0].text).to_abc()


def _chorale() -> str:
    paths = sorted(p for p in map(Path, music21.corpus.getComposer("bach")) if p.suffix == ".mxl")
    return musicxml_to_abc(paths[0])  # BWV 1.6: horn + SATB, five voices


@pytest.fixture(scope="module")
def jig_abc() -> str:
    return _first_oneill()


@pytest.fixture(scope="module")
def chorale_abc() -> str:
    return _chorale()


@pytest.fixture(scope="module")
def jig(tmp_path_factory, jig_abc) -> dict[str, Path]:
    return render.render_abc(jig_abc, tmp_path_factory.mktemp("jig") / "tune", ALL)


@pytest.fixture(scope="module")
def chorale(tmp_path_factory, chorale_abc) -> dict[str, Path]:
    return render.render_abc(chorale_abc, tmp_path_factory.mktemp("chorale") / "chorale", ("mid", "wav", "svg", "png"))


def _wav(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        return frames, w.getframerate(), w.getnchannels()


def _staff_line_rows(png: Path) -> list[int]:
    """Top rows of the horizontal staff lines: runs of rows holding an unbroken dark segment at least
    15 % of the image wide (a short last system included; beams, ledger lines and text are shorter)."""
    dark = np.asarray(Image.open(png).convert("L"), dtype=np.int16) < 128
    min_run = 0.15 * dark.shape[1]

    def longest_run(row: np.ndarray) -> int:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0

    line = [longest_run(row) >= min_run for row in dark]
    return [y for y in range(len(line)) if line[y] and (y == 0 or not line[y - 1])]


@pytest.mark.slow
def test_outputs_named_after_the_stem_in_order(jig):
    assert list(jig) == list(ALL)
    for fmt, path in jig.items():
        assert path.name == f"tune.{fmt}"
        assert path.is_file() and path.stat().st_size > 0


@pytest.mark.slow
def test_midi_has_the_notes(jig, chorale, jig_abc, chorale_abc):
    jig_notes = sum(len(t.notes) for t in symusic.Score(str(jig["mid"])).tracks)
    assert jig_notes > 100
    tracks = [len(t.notes) for t in symusic.Score(str(chorale["mid"])).tracks if len(t.notes)]
    voices = len(events_by_voice(normalise_tune(chorale_abc).events()))
    assert voices == 5 and len(tracks) == voices and min(tracks) > 50


@pytest.mark.slow
def test_wav_is_audible_and_as_long_as_the_tune(jig, jig_abc):
    samples, rate, channels = _wav(jig["wav"])
    assert (rate, channels) == (44100, 2)
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 0.005, f"WAV nearly silent (RMS {rms:.5f})"
    assert np.abs(samples).max() < 0.99  # not clipped
    # The tune's own length: no Q: (abc2midi's default 1/4 = 120, a whole note = 2 s) and no repeats.
    tune = normalise_tune(jig_abc)
    assert tune.get("Q") is None and ":" not in re.sub(r'"[^"]*"', "", tune.body)
    whole_notes = sum(bar_durations(tune.events(), tune.unit_length, tune.meter), Fraction(0))
    expected = float(whole_notes) * 2.0
    audio_length = len(samples) / channels / rate  # musical length of the audio, not a run time
    midi_end = symusic.Score(str(jig["mid"]), ttype="second").end()
    assert abs(midi_end - expected) < 1.0, (midi_end, expected)
    assert expected - 0.5 <= audio_length <= expected + 5.0, (audio_length, expected)  # plus the release tail


@pytest.mark.slow
def test_chorale_wav(chorale):
    samples, rate, channels = _wav(chorale["wav"])
    assert float(np.sqrt(np.mean(samples**2))) > 0.005
    audio_length = len(samples) / channels / rate  # musical length of the audio, not a run time
    midi_end = symusic.Score(str(chorale["mid"]), ttype="second").end()
    assert midi_end - 0.5 <= audio_length <= midi_end + 5.0


@pytest.mark.slow
def test_compressed_audio(jig):
    wav_size = jig["wav"].stat().st_size
    flac, ogg = jig["flac"].read_bytes(), jig["ogg"].read_bytes()
    assert flac[:4] == b"fLaC" and ogg[:4] == b"OggS" and b"vorbis" in ogg[:200]
    assert len(ogg) < len(flac) < wav_size
    assert len(flac) > wav_size / 20  # silence would compress to almost nothing


@pytest.mark.slow
def test_svg_has_staves_and_notes(jig, chorale):
    for result, voices in ((jig, 1), (chorale, 5)):
        svg = result["svg"].read_text(encoding="utf-8")
        midi_notes = sum(len(t.notes) for t in symusic.Score(str(result["mid"])).tracks)
        measures = len(re.findall(r'class="measure\b', svg))
        staves = len(re.findall(r'class="staff\b', svg))
        notes = len(re.findall(r'class="note\b', svg))
        assert measures > 15 and staves == voices * measures  # every voice engraved in every bar
        assert 0.9 * midi_notes <= notes <= 1.2 * midi_notes


@pytest.mark.slow
def test_png_shows_staves(jig, chorale):
    for result, voices in ((jig, 1), (chorale, 5)):
        image = Image.open(result["png"])
        image.verify()
        image = Image.open(result["png"])
        assert image.format == "PNG" and image.width >= 1000 and image.height >= 300
        assert np.asarray(image.convert("L")).mean() > 200  # white page, black ink
        rows = _staff_line_rows(result["png"])
        svg = result["svg"].read_text(encoding="utf-8")
        systems = svg.count('class="system"')
        assert len(rows) == 5 * voices * systems, (len(rows), voices, systems)
        gaps = np.diff(rows[:5])  # the five lines of the first staff, evenly spaced
        assert gaps.min() > 5 and gaps.max() - gaps.min() <= 2


@pytest.mark.slow
def test_long_scores_stack_pages_into_one_svg(tmp_path, monkeypatch, chorale_abc):
    monkeypatch.setitem(sheet._VEROVIO_OPTIONS, "pageHeight", 1200)
    monkeypatch.setitem(sheet._VEROVIO_OPTIONS, "adjustPageHeight", False)
    svg = render.render_abc(chorale_abc, tmp_path / "c", ["svg"])["svg"].read_text(encoding="utf-8")
    pages = re.findall(r'<svg x="0" y="([\d.]+)"', svg)
    assert len(pages) >= 3 and [float(y) for y in pages] == sorted(float(y) for y in pages)
    assert float(re.search(r'height="([\d.]+)px"', svg).group(1)) > float(pages[-1])
    assert Image.open(io.BytesIO(_png_bytes(svg))).height > float(pages[-1])


def _png_bytes(svg: str) -> bytes:
    import cairosvg

    return cairosvg.svg2png(bytestring=svg.encode("utf-8"))


def test_render_file_with_several_tunes_and_the_command(tmp_path, capsys):
    source = tmp_path / "two.abc"
    source.write_text(SMALL + "\n" + SMALL.replace("X:1", "X:2").replace("Small", "Second"), encoding="utf-8")
    results = render.render_file(source, "mid,svg", tmp_path / "out")
    assert [sorted(p.name for p in r.values()) for r in results] == [
        ["two_01.mid", "two_01.svg"], ["two_02.mid", "two_02.svg"]]
    assert "Second" in results[1]["svg"].read_text(encoding="utf-8")

    one = tmp_path / "one.abc"
    one.write_text(SMALL, encoding="utf-8")
    parser = argparse.ArgumentParser()
    render.add_render_arguments(parser)
    args = parser.parse_args([str(one), "--to", "midi, svg"])
    assert args.func(args) == 0
    assert (tmp_path / "one.mid").is_file() and (tmp_path / "one.svg").is_file()
    assert str(tmp_path / "one.mid") in capsys.readouterr().out


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        render.render_abc(SMALL, tmp_path / "t", ["mid", "wavv"])
    message = str(info.value)
    assert "'wavv'" in message and "did you mean 'wav'" in message
    assert all(fmt in message for fmt in render.FORMATS)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError):
        render.parse_formats(" , ")
    assert render.parse_formats("MID,.png,mid") == ("mid", "png")


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="sample_rate"):
        render.render_abc(SMALL, tmp_path / "t", ["wav"], sample_rate=1000)
    with pytest.raises(ConfigError, match="not a file"):
        render.render_abc(SMALL, tmp_path / "t", ["wav"], soundfont=tmp_path / "none.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(ConfigError, match="not a SoundFont"):
        render.render_abc(SMALL, tmp_path / "t", ["wav"], soundfont=junk)
    with pytest.raises(AbcParseError, match="2 tunes"):
        render.render_abc(SMALL + "\n" + SMALL, tmp_path / "t", ["mid"])


def test_missing_abc2midi_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolNotFoundError, match="apt-get install abcmidi"):
        render.render_abc(SMALL, tmp_path / "t", ["mid"])


def test_missing_fluidsynth_names_the_package(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "abc2midi").symlink_to(shutil.which("abc2midi"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ToolNotFoundError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        render.render_abc(SMALL, tmp_path / "out" / "t", ["mid", "wav"])
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_missing_soundfont_names_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)
    monkeypatch.setattr(audio, "SOUNDFONT_CANDIDATES", (str(tmp_path / "nothere.sf2"),))
    with pytest.raises(ToolNotFoundError, match="apt-get install fluid-soundfont-gm"):
        render.render_abc(SMALL, tmp_path / "t", ["flac"])


@pytest.mark.parametrize(("module", "fmt"), [("verovio", "svg"), ("cairosvg", "png")])
def test_missing_python_package_names_it(tmp_path, monkeypatch, module, fmt):
    monkeypatch.setitem(sys.modules, module, None)  # importlib.util.find_spec then reports it missing
    with pytest.raises(ToolNotFoundError, match=rf"'{module}'.*pip install 'abcgen\[render\]'"):
        render.render_abc(SMALL, tmp_path / "t", [fmt])


def test_tool_failures_name_the_tune(tmp_path, monkeypatch):
    # fluidsynth that cannot read its input: the error names the tune and quotes fluidsynth.
    midi = tmp_path / "broken.mid"
    midi.write_bytes(b"not midi at all")
    with pytest.raises(ConversionError) as info:
        audio.render_audio(midi, tmp_path / "x.wav", "wav", audio.find_soundfont(), 44100, 0.5, "X:7 Broken")
    assert "X:7 Broken" in str(info.value) and "fluidsynth" in str(info.value)
    # verovio aborting (a C++ exception) in its child process is a ConversionError, not a dead test run.
    with pytest.raises(ConversionError, match="X:3 Crash.*exit status"):
        sheet._run_verovio(CRASHES_VEROVIO, "abc", "X:3 Crash")
    # render_abc reads the tune itself first and says where it is broken.
    with pytest.raises(AbcParseError, match="unterminated decoration.*column 8"):
        render.render_abc(CRASHES_VEROVIO, tmp_path / "t", ["svg"])
    # A body the normaliser drops entirely (it reads like prose) is an error, not a blank score.
    with pytest.raises(AbcParseError, match="no notes left to engrave"):
        render.render_abc(CRASHES_VEROVIO.replace("GA!Bc", "!trill GABc"), tmp_path / "t", ["svg"])


# --- long audio, bad inputs, outputs written whole (issue 11, items 9 and 10) ----------------------------------


def test_long_audio_is_refused_before_anything_is_written(tmp_path, jig_abc):
    with pytest.raises(ConfigError, match=r"plays for \d+ s \([\d.]+ minutes, a WAV of about \d+ MB\), more than max_audio_seconds=5: render mid/svg "
                                          r"only, or raise the limit"):
        render.render_abc(jig_abc, tmp_path / "tune", ("mid", "wav"), max_audio_seconds=5)
    assert list(tmp_path.iterdir()) == []  # not even the MIDI, and no temporary file
    with pytest.raises(ConfigError, match="max_audio_seconds -1"):
        render.render_abc(jig_abc, tmp_path / "tune", ("wav",), max_audio_seconds=-1)


def test_long_audio_is_logged(tmp_path, jig_abc, monkeypatch, caplog):
    monkeypatch.setattr(audio, "AUDIO_WARN_SECONDS", 1.0)
    with caplog.at_level("WARNING", logger="abcgen.render"):
        paths = render.render_abc(SMALL, tmp_path / "small", ("wav",))
    assert paths["wav"].is_file() and any("its audio will be large" in r.getMessage() for r in caplog.records)


def test_a_failing_format_leaves_the_previous_render_untouched(tmp_path, monkeypatch):
    first = render.render_abc(SMALL, tmp_path / "small", ("mid", "svg"))
    before = {fmt: path.read_bytes() for fmt, path in first.items()}

    def broken(*args):
        raise ConversionError("cairosvg broke")

    monkeypatch.setattr(sheet, "render_png", broken)
    with pytest.raises(ConversionError, match="cairosvg broke"):
        render.render_abc(SMALL.replace("DFA", "EGB"), tmp_path / "small", ("mid", "svg", "png"))
    assert {fmt: path.read_bytes() for fmt, path in first.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.mid", "small.svg"]


@pytest.mark.slow  # several real subprocesses
def test_bad_render_inputs_are_one_line_errors_before_any_work(tmp_path):
    good = tmp_path / "good.abc"
    good.write_text(SMALL, encoding="utf-8")
    binary = tmp_path / "binary.abc"
    binary.write_bytes(b"\x00\x01\x02MThd")
    no_tune = tmp_path / "words.abc"
    no_tune.write_text("just some words\n", encoding="utf-8")
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    cases = [
        ([str(tmp_path / "missing.abc")], None, "ABC file '.*missing.abc' does not exist"),
        ([str(binary)], None, "cannot read ABC file '.*binary.abc'"),
        ([str(no_tune)], None, "no ABC tune found"),
        ([str(good)], str(a_file), "is a file, not a folder"),
    ]
    for files, out, message in cases:
        result = subprocess.run([sys.executable, "-m", "abcgen", "render", *files, "--to", "mid",
                                 *(["--out", out] if out else [])], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert re.search(message, result.stderr) and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # one bad file among good ones: nothing is rendered
    with pytest.raises(ConfigError, match="missing.abc"):
        render.render_command(argparse.Namespace(files=[str(good), str(tmp_path / "missing.abc")], to="mid", out=None))
    assert not (tmp_path / "good.mid").exists()
