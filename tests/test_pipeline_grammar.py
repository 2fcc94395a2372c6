"""The pipeline's grammar option (issue 13): ``grammar="idiom"`` (the default: the folk idiom of the model's
corpus, beams, a cadence, recurrence) or ``"legacy"`` (plain notes and bar lines), on a tiny untrained model; and the
``idioms.json`` training writes beside the weights, which the idiom grammar reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from tiny_models import tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.errors import ConfigError
from abcgen.generation.pipeline import TASK
from abcgen.grammar.idioms import IDIOMS, STRUCTURES, idioms_in_corpus, tune_idioms
from abcgen.model_idioms import IDIOMS_FILE, read_model_idioms, write_model_idioms
from abcgen.notation.lexer import lex_body
from abcgen.notation.remi import abc2midi_check
from abcgen.notation.tune import normalise_tune

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, trained (so its config says) on key and meter only: form is then enforced by the
    constraint alone; no ``idioms.json`` (an older folder)."""
    folder = tiny_music_model_folder(tmp_path_factory.mktemp("grammar") / "model")
    (folder / "abcgen_train_config.yaml").write_text("data:\n  conditions: [key, meter]\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pipe(model_dir: Path):  # noqa: ANN201
    from transformers import pipeline

    return pipeline(TASK, model=str(model_dir))


def _last_note(abc: str) -> str:
    tune = normalise_tune(abc)
    body = tune.body.split("V:2")[0]  # voice 1 (the tune) when there are several
    notes = [e for e in lex_body(body, tune.unit_length, Fraction(1)) if e.kind == "note"]
    return notes[-1].pitch.letter


@pytest.mark.parametrize(("key", "meter", "form", "voices", "seed"), [
    ("D", "6/8", None, 1, 0),
    ("G", "4/4", "AABB", 1, 1),
    ("Ador", "3/4", None, 1, 2),
    ("D", "4/4", "AB", 2, 3),
])
def test_idiom_grammar_tunes_pass_our_checks_and_abc2midi(pipe, key: str, meter: str, form, voices: int,  # noqa: ANN001
                                                          seed: int) -> None:
    tunes = pipe(key=key, meter=meter, bars=8, form=form, voices=voices, num_return_sequences=6,
                 temperature=1.5, seed=seed, grammar="idiom")
    used: set[str] = set()
    for tune in tunes:
        abc = tune["abc"]
        assert tune["valid"], (tune["problems"], abc)
        assert not [line for line in abc2midi_check(abc) if "Error" in line], abc
        # bars=8 are played bars: AABB writes 2 sections of 2 bars, each played twice
        assert normalise_tune(abc).get("M") == meter and len(tune["bars"]) == (4 if form == "AABB" else 8)
        assert _last_note(abc) == key[0], abc  # the forced cadence: the tune ends on the tonic
        used |= tune_idioms(abc)
    assert used, "an untrained model at temperature 1.5 uses some idiom when the grammar offers them"


def test_the_default_is_the_idiom_grammar_and_legacy_differs(pipe) -> None:  # noqa: ANN001
    request = {"key": "D", "meter": "6/8", "bars": 8, "num_return_sequences": 4, "temperature": 1.5, "seed": 7}
    default, idiom = pipe(**request), pipe(**request, grammar="idiom")
    assert [t["abc"] for t in default] == [t["abc"] for t in idiom]
    legacy = pipe(**request, grammar="legacy")
    assert not any(tune_idioms(t["abc"]) for t in legacy)  # the legacy grammar has no idiom
    assert [t["abc"] for t in idiom] != [t["abc"] for t in legacy]


def test_idioms_and_weighted_cadence_are_followed(pipe) -> None:  # noqa: ANN001
    tunes = pipe(key="G", meter="4/4", bars=8, num_return_sequences=6, temperature=1.5, seed=4, grammar="idiom",
                 idioms={"broken"}, cadence="weighted")
    assert all(t["valid"] for t in tunes)
    assert all(tune_idioms(t["abc"]) <= {"broken"} for t in tunes)
    assert any(tune_idioms(t["abc"]) for t in tunes)
    plain = pipe(key="G", meter="4/4", bars=8, num_return_sequences=4, temperature=1.5, seed=4, grammar="idiom",
                 idioms=set())
    assert all(t["valid"] and not tune_idioms(t["abc"]) for t in plain)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"grammar": "fancy"}, "grammar='fancy'"),
    ({"grammar": None}, "grammar=None"),
    ({"cadence": "forced", "grammar": "legacy"}, "needs grammar='idiom'"),
    ({"idioms": {"broken"}, "grammar": "legacy"}, "needs grammar='idiom'"),
    ({"grammar": "idiom", "cadence": "sometimes"}, "cadence='sometimes'"),
    ({"grammar": "idiom", "idioms": {"broken", "trills"}}, "'trills' is not an idiom"),
    ({"grammar": "idiom", "idioms": "broken"}, "give a set of idiom names"),
])
def test_bad_grammar_options_are_one_line_errors(pipe, kwargs: dict, words: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        pipe(key="D", meter="6/8", bars=4, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


# --- idioms.json: written by training, read by the pipeline -----------------------------------------------


def test_training_writes_the_corpus_idioms(tmp_path: Path, model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus
    from abcgen.corpus.sources import music21_corpus_dir
    from abcgen.training.config import TrainConfig
    from abcgen.training.outputs import write_run_files

    source = tmp_path / "source"
    source.mkdir()
    shutil.copyfile(music21_corpus_dir() / "oneills1850/0001-0050.abc", source / "tunes.abc")  # 50 real tunes
    corpus = tmp_path / "corpus"
    build_corpus(BuildConfig(sources=[str(source)], out=corpus, workers=1), progress=False)
    cfg = TrainConfig()
    cfg.data.corpus = str(corpus)
    final = tmp_path / "final"
    final.mkdir()
    write_run_files(final, cfg, AutoTokenizer.from_pretrained(model_dir), {"run_fingerprint": "x"})
    shares = read_model_idioms(final / IDIOMS_FILE)
    assert shares == idioms_in_corpus(load_corpus(corpus)["train"]["abc"])
    assert set(shares) == {*IDIOMS, *STRUCTURES} and shares["grace"] > 0 and shares["chord_symbols"] == 0
    assert json.loads((final / IDIOMS_FILE).read_text())["tunes"] == len(load_corpus(corpus)["train"])


def test_the_pipeline_keeps_the_idioms_of_the_model_folder(tmp_path: Path, model_dir: Path, pipe) -> None:  # noqa: ANN001
    from transformers import pipeline

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    # as a corpus with triplets and ties only (and a trace of grace notes, under MIN_IDIOM_SHARE)
    shares = {**dict.fromkeys(IDIOMS, 0.0), "tuplets": 0.3, "ties": 0.1, "grace": 0.005}
    write_model_idioms(folder, shares, tunes=100)  # the file as training writes it
    request = {"key": "D", "meter": "4/4", "bars": 8, "num_return_sequences": 6, "temperature": 1.5, "seed": 5,
               "grammar": "idiom"}
    tunes = pipeline(TASK, model=str(folder))(**request)
    used = set().union(*(tune_idioms(t["abc"]) for t in tunes))
    assert all(t["valid"] for t in tunes) and used and used <= {"tuplets", "ties"}
    # the old folder (no idioms.json) loads and allows every idiom the tokenizer has
    assert not (model_dir / IDIOMS_FILE).exists()
    everything = set().union(*(tune_idioms(t["abc"]) for t in pipe(**request)))
    assert everything - {"tuplets", "ties"}
    (folder / IDIOMS_FILE).write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        pipeline(TASK, model=str(folder))(**request)


@pytest.mark.slow
def test_cli_generate_with_the_idiom_grammar(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(model_dir), "--key", "D",
                          "--meter", "6/8", "--bars", "8", "--num", "3", "--grammar", "idiom", "--cadence", "weighted",
                          "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["valid"] == 3
    bad = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(model_dir), "--key", "D",
                          "--grammar", "fancy", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         env=ENV, timeout=600)
    assert bad.returncode == 2 and "grammar='fancy'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_form_bars_are_played_bars_and_endings_are_an_option(pipe) -> None:  # noqa: ANN001
    """bars=16 with AABB: two 4-bar parts written, each played twice; endings=True adds |1 <bar> :|2 <bar>."""
    plain = pipe(key="D", meter="6/8", bars=16, form="AABB", seed=3, endings=False, num_return_sequences=2)
    for tune in plain:
        assert tune["valid"] and len(tune["bars"]) == 8 and tune["abc"].count("|1") == 0, tune["abc"]
    with_endings = pipe(key="D", meter="6/8", bars=16, form="AABB", seed=3, endings=True, num_return_sequences=2)
    for tune in with_endings:
        assert tune["valid"] and len(tune["bars"]) == 10, tune["abc"]
        assert tune["abc"].count("|1") + tune["abc"].count("|[1") == 2 and not abc2midi_check(tune["abc"])
        assert "T:Tune in D major" in tune["abc"]
    with pytest.raises(ConfigError, match="endings="):
        pipe(key="D", bars=16, form="AABB", endings="yes")
