"""The REMI path: tokens in the tokenizer, the REMI prompt format, and the ``midi-generation`` pipeline on a
tiny random model (valid MIDI every time, accompaniment that keeps the melody, continuation, bad input)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import mido
import music21
import pretty_midi
import pytest
from transformers import pipeline

import abcgen  # noqa: F401  (registers the pipeline tasks)
from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.generation.midi_pipeline import (
    forced_notes,
    generate_midi_to_folder,
    load_midi_pipeline,
    remi_bars,
    remi_of,
    remi_programs,
)
from abcgen.notation.remi import abc_to_remi
from abcgen.tokenization.embeddings import new_token_texts
from abcgen.tokenization.prompt import IGNORE_INDEX, RemiPromptFormat, SplitStats
from abcgen.tokenization.remi import add_remi_tokens, remi_token_text, remi_vocabulary

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import tiny_base_tokenizer, tiny_music_model_folder  # noqa: E402

JIG = "X:1\nT:Test jig\nM:6/8\nL:1/8\nK:D\nd2e f2g|a2f d3|e2f g2e|d6|]\n"


def _oneills(count: int) -> list[str]:
    text = (Path(music21.__file__).parent / "corpus" / "oneills1850" / "0001-0050.abc").read_text(encoding="latin-1")
    tunes = [t.strip() + "\n" for t in re.split(r"\n\s*\n(?=X:)", text) if t.lstrip().startswith("X:")]
    return tunes[:count]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_music_model_folder(tmp_path_factory.mktemp("remi-model"), remi=True)


@pytest.fixture(scope="module")
def pipe(model_dir: Path):  # noqa: ANN201
    return pipeline("midi-generation", model=str(model_dir))


def test_remi_tokens_are_whole_tokens_with_readable_starting_texts(tmp_path: Path) -> None:
    base = tiny_base_tokenizer(tmp_path / "base")
    music = tiny_base_tokenizer(tmp_path / "music")
    added = add_remi_tokens(music)
    assert added == len(remi_vocabulary()) > 500
    assert add_remi_tokens(music) == 0  # adding twice adds nothing
    texts = new_token_texts(music, base)
    by_token = {music.convert_ids_to_tokens(i): text for i, text in texts.items()}
    assert by_token["Pitch_67"] == "note G4"
    assert by_token["Program_40"] == "violin"
    assert by_token["Duration_1.12.24"] == "duration 1.5 beats"
    assert by_token["TimeSig_6/8"] == "time signature 6/8"
    assert remi_token_text("Bar_None") == "bar line" and remi_token_text("X:1") is None


def test_remi_prompt_format_round_trips_real_tunes_and_splits_long_ones(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    fmt = RemiPromptFormat(tokenizer, ControlVocabulary.load(model_dir))
    for tune in _oneills(6):
        remi = abc_to_remi(tune)
        ids = fmt.text_ids(remi)
        assert len(ids) == len(remi.split())  # one id a REMI token
        assert fmt.decode(ids) == remi  # decode(encode(x)) == x
        labels = {"key": "D major", "meter": "6/8"}
        whole = fmt.encode_example(remi, labels, max_length=100_000)
        assert len(whole) == 1 and whole[0].input_ids[-1] == tokenizer.eos_token_id
        header = fmt.tune_header(remi)
        assert whole[0].input_ids == fmt.prompt_ids(labels, f"{header} {remi}") + [tokenizer.eos_token_id]
        stats = SplitStats()
        chunks = fmt.encode_example(remi, labels, max_length=160, stats=stats)
        assert stats.split_tunes == 1 and len(chunks) > 1 and all(len(c) <= 160 for c in chunks)
        context = fmt.context_ids(labels) + fmt.text_ids(header)
        bar = fmt.token_ids["Bar_None"]
        trained = []
        for i, chunk in enumerate(chunks):
            if i:  # continuation chunks: the context + track list again, label-free, then whole bars
                assert chunk.input_ids[: len(context)] == context
                assert set(chunk.labels[: len(context)]) == {IGNORE_INDEX}
                assert chunk.input_ids[len(context)] == bar or stats.cut_bars
            trained += [t for t, lab in zip(chunk.input_ids, chunk.labels, strict=True) if lab != IGNORE_INDEX]
        # every token of the track list and body is trained exactly once, EOS at the end
        assert trained == fmt.text_ids(header)[1:] + ids + [tokenizer.eos_token_id] or \
            trained == fmt.text_ids(header) + ids + [tokenizer.eos_token_id]
    with pytest.raises(ConfigError, match="not a REMI token"):
        fmt.text_ids("Bar_None Banana_3")


def test_pipeline_writes_valid_midi_of_the_requested_shape(pipe) -> None:  # noqa: ANN001
    pieces = pipe(key="D", meter="6/8", rhythm="jig", programs=[0, 32, 40], bars=4, num_return_sequences=4, seed=0)
    assert len(pieces) == 4
    for piece in pieces:
        assert piece["valid"], piece["problems"]
        midi = pretty_midi.PrettyMIDI(io.BytesIO(piece["midi"]))
        mido.MidiFile(file=io.BytesIO(piece["midi"]))
        assert {i.program for i in midi.instruments} <= {0, 32, 40}
        assert remi_bars(piece["remi"]) == 4
        assert [(t.numerator, t.denominator) for t in midi.time_signature_changes] == [(6, 8)]
    again = pipe(key="D", meter="6/8", rhythm="jig", programs=[0, 32, 40], bars=4, num_return_sequences=4, seed=0)
    assert [p["remi"] for p in again] == [p["remi"] for p in pieces]  # seeded


def test_accompaniment_keeps_every_melody_note(pipe) -> None:  # noqa: ANN001
    melody = remi_of(JIG, "melody")
    program = remi_programs(melody)[0]
    pieces = pipe(melody=JIG, programs=[0, 32], key="D", num_return_sequences=3, seed=1)
    for piece in pieces:
        assert piece["valid"], piece["problems"]
        assert forced_notes(piece["remi"], program) == forced_notes(melody, program)
        assert remi_bars(piece["remi"]) == remi_bars(melody)
        assert set(remi_programs(piece["remi"])) <= {0, 32, program}
    # the melody as MIDI bytes works the same way
    midi = pipe(melody=JIG, programs=[0, 32], seed=1)[0]["midi"]
    assert pipe(melody=midi, melody_program=program, programs=[32], seed=2)[0]["valid"]


def test_continuation_keeps_the_prompt(pipe) -> None:  # noqa: ANN001
    prompt = remi_of(JIG, "prompt")
    piece = pipe(JIG, bars=remi_bars(prompt) + 2, seed=3)[0]
    assert piece["valid"], piece["problems"]
    assert piece["remi"].startswith(prompt + " ")
    assert remi_bars(piece["remi"]) == remi_bars(prompt) + 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"programs": [200]}, r"programs=\[200\]: give a list of General MIDI programs"),
    ({"programs": 40}, "programs=40: give a list"),
    ({"bars": 0}, "bars=0"),
    ({"meter": "11/8"}, "has no REMI time signature"),
    ({"bpm": 5}, "bpm=5"),
    ({"colour": "red"}, r"unknown argument\(s\) \['colour'\]"),
    ({"key": "H"}, "cannot read key 'H'"),
    ({"melody": "not music"}, "neither ABC"),
    ({"melody": JIG, "programs": [40]}, "name the accompanying instruments"),
    ({"max_new_tokens": 5, "bars": 8}, "max_new_tokens=5 cannot hold 8 bars"),
])
def test_bad_requests_are_one_line_errors(pipe, kwargs, message) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message) as info:
        pipe(**kwargs)
    assert "\n" not in str(info.value)


def test_abc_models_are_refused_and_pieces_are_written_to_a_folder(model_dir: Path, tmp_path: Path) -> None:
    abc_model = tiny_music_model_folder(tmp_path / "abc-model")
    with pytest.raises(ConfigError, match="trained on ABC, not REMI"):
        load_midi_pipeline(abc_model)
    with pytest.raises(ConfigError, match="trained on REMI"):
        pipeline("abc-generation", model=str(model_dir))
    summary = generate_midi_to_folder(model_dir, tmp_path / "out", meter="3/4", bars=3, programs=[40, 42],
                                      num_return_sequences=2, seed=4, render=("png",))
    assert summary["valid"] == summary["num"] == 2
    for name in ("piece_00.mid", "piece_00.png", "piece_01.remi", "summary.json"):
        assert (tmp_path / "out" / name).is_file(), name
    with pytest.raises(ConfigError, match="already holds files"):
        generate_midi_to_folder(model_dir, tmp_path / "out", bars=2)


def test_cli_generates_midi_from_a_remi_model(model_dir: Path, tmp_path: Path) -> None:
    import os
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    abcgen_cli = [sys.executable, "-m", "abcgen"]
    out = tmp_path / "cli"
    run = subprocess.run([*abcgen_cli, "generate", "--model", str(model_dir), "--meter", "6/8", "--bars", "2",
                          "--programs", "0,32,40", "--num", "2", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 of 2 pieces valid" in run.stdout
    assert (out / "piece_01.mid").is_file() and (out / "piece_01.png").is_file()
    bad = subprocess.run([*abcgen_cli, "generate", "--model", str(model_dir), "--pickup", "1/8", "--out",
                          str(tmp_path / "bad")], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--pickup is an ABC option" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_evaluate_scores_a_remi_model_from_its_notes(model_dir: Path, tmp_path: Path) -> None:
    """``abcgen evaluate`` on a REMI model: MIDI generated for held-out requests, scored note by note."""
    import os
    import subprocess

    from abcgen.corpus.build import BuildConfig, build_corpus

    corpus = tmp_path / "corpus"
    build_corpus(BuildConfig(sources=["music21:miscFolk"], out=corpus, workers=1, remi=True, test_fraction=0.2),
                 progress=False)
    out = tmp_path / "eval"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "abcgen", "evaluate", "--model", str(model_dir), "--data", str(corpus),
                          "--num-samples", "3", "--seeds", "1", "--perplexity-tunes", "4", "--bootstrap", "50",
                          "--quiet", "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "strict_validity" in run.stdout
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["representation"] == "remi" and report["num_generated"] == 3 and report["valid"] == 3
    rows = {m["name"]: m for m in report["metrics"]}
    assert rows["strict_validity"]["generated"]["value"] == 100.0
    assert rows["meter_adherence"]["generated"]["value"] == 100.0
    assert report["perplexity"]["nll_per_note"] > 0
    assert len(list((out / "midi").glob("piece_*.mid"))) == 3
    assert "| F2 | meter_adherence" in (out / "report.md").read_text()
    # MIDI files from any generator: every tier but adherence and perplexity
    files = sorted((out / "midi").glob("piece_*.mid"))
    run = subprocess.run([sys.executable, "-m", "abcgen", "evaluate", "--midi", *map(str, files), "--data",
                          str(corpus), "--bootstrap", "50", "--out", str(tmp_path / "files")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    files_report = json.loads((tmp_path / "files" / "report.json").read_text())
    assert files_report["counts"]["generated"] == 3 and files_report["perplexity"] is None
    both = subprocess.run([sys.executable, "-m", "abcgen", "evaluate", "--model", str(model_dir), "--midi",
                           str(files[0]), "--data", str(corpus), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert both.returncode != 0 and "give one of --model" in both.stderr
