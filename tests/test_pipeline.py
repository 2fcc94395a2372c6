"""The abc-generation pipeline on a tiny untrained model saved to a folder: conditions, prompts, checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.errors import AbcParseError, ConfigError
from abcgen.generation.pipeline import TASK, GenerationBudgetError, UnknownConditionError
from abcgen.notation.lexer import parse_fraction
from abcgen.notation.remi import abc2midi_check
from abcgen.notation.tune import normalise_tune


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_music_model_folder(tmp_path_factory.mktemp("pipe") / "model")


@pytest.fixture(scope="module")
def pipe(model_dir: Path):  # noqa: ANN201
    from transformers import pipeline

    return pipeline(TASK, model=str(model_dir))


def test_constrained_tunes_are_valid_and_follow_the_request(pipe) -> None:  # noqa: ANN001
    tunes = pipe(key="G", meter="3/4", rhythm="waltz", bars=8, num_return_sequences=8, temperature=1.5, seed=3)
    assert len(tunes) == 8
    for tune in tunes:
        assert tune["valid"], (tune["problems"], tune["abc"])
        parsed = normalise_tune(tune["abc"])
        assert parsed.get("K") == "G" and parsed.get("M") == "3/4" and len(tune["bars"]) >= 8
        assert not [line for line in abc2midi_check(tune["abc"]) if "Error" in line]
        assert tune["conditions"] == {"key": "G major", "meter": "3/4", "rhythm": "waltz"}


def test_same_seed_same_tunes(pipe) -> None:  # noqa: ANN001
    first = pipe(key="D", meter="6/8", bars=8, num_return_sequences=2, seed=11)
    again = pipe(key="D", meter="6/8", bars=8, num_return_sequences=2, seed=11)
    assert [t["abc"] for t in first] == [t["abc"] for t in again]


def test_unconstrained_sampling_is_switchable(pipe) -> None:  # noqa: ANN001
    tunes = pipe(key="D", meter="6/8", num_return_sequences=4, seed=0, constrained=False, max_new_tokens=40,
                 temperature=1.5)
    assert all(t["constrained"] is False for t in tunes)
    assert not all(t["valid"] for t in tunes)  # an untrained model writes nonsense when free


def test_melody_prompt_is_continued(pipe) -> None:  # noqa: ANN001
    tunes = pipe("dAF DFA|d2f e2d|", key="D", meter="6/8", bars=8, num_return_sequences=2, seed=1)
    for tune in tunes:
        assert "K:D\ndAF DFA|d2f e2d|" in tune["abc"] and tune["valid"], tune["problems"]
        assert len(tune["bars"]) == 8
    # a prompt that stops inside a repeat: the constraint closes it
    for tune in pipe("|:dAF DFA|d2f e2d|", key="D", meter="6/8", bars=8, num_return_sequences=2, seed=2):
        # closed (a later ':|' may repeat implicitly, as O'Neill's writes its B parts)
        assert ":|" in tune["continuation"] and tune["valid"], tune["problems"]


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"rhythm": "hornpipe"}, UnknownConditionError, "valid values: jig"),
    ({"mood": "happy"}, UnknownConditionError, "unknown argument"),
    ({"meter": "6/8", "pickup": "7/8"}, ConfigError, "shorter than the bar"),
    ({"meter": "6/8", "bars": 40, "max_new_tokens": 30}, GenerationBudgetError, "max_new_tokens"),
    ({"form": "AABB", "bars": 10}, ConfigError, "cannot be split"),
])
def test_bad_requests_fail_before_generating(pipe, kwargs: dict, error: type, message: str) -> None:  # noqa: ANN001
    with pytest.raises(error, match=message):
        pipe(**kwargs)


def test_bad_prompts_say_what_and_where(pipe) -> None:  # noqa: ANN001
    with pytest.raises(AbcParseError, match="not valid ABC.*column"):
        pipe("abc # d|", key="D", meter="4/4")
    with pytest.raises(ConfigError, match="M:3/4 but meter='6/8'"):
        pipe("X:1\nM:3/4\nL:1/8\nK:D\nABc def|", meter="6/8")


def test_a_folder_without_control_vocabulary_is_refused(model_dir: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "control_vocabulary.json").unlink()
    with pytest.raises(ConfigError, match="no control_vocabulary.json"):
        pipeline(TASK, model=str(bare))


@pytest.mark.slow
def test_fresh_process_loads_the_folder_and_the_cli_writes_files(model_dir: Path, tmp_path: Path) -> None:
    code = ("import abcgen, json; from transformers import pipeline; "
            f"p = pipeline('abc-generation', model={str(model_dir)!r}); "
            "t = p(key='E minor', meter='2/4', bars=8, seed=0); print(json.dumps(t[0]['valid']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("true")
    out = tmp_path / "gen"
    result = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(model_dir), "--key", "D",
                             "--meter", "6/8", "--rhythm", "jig", "--bars", "8", "--num", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num"] == 2 and summary["valid"] == 2 and (out / "tune_00.abc").is_file()


def test_only_trained_conditions_become_prefix_tokens(model_dir: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    limited = tmp_path / "limited"
    shutil.copytree(model_dir, limited)
    (limited / "abcgen_train_config.yaml").write_text("data:\n  conditions: [key, meter]\n", encoding="utf-8")
    pipe = pipeline(TASK, model=str(limited))
    tune = pipe(key="D", meter="6/8", bars=8, seed=0)[0]  # bars: enforced, no token needed
    assert tune["valid"] and tune["conditions"] == {"key": "D major", "meter": "6/8"}
    with pytest.raises(UnknownConditionError, match="trained without 'rhythm'"):
        pipe(key="D", meter="6/8", rhythm="jig")


def test_infilling_rewrites_only_the_requested_bars(pipe) -> None:  # noqa: ANN001
    abc = "X:1\nT:Fill\nM:6/8\nL:1/8\nK:D\ndAF DFA|d2f e2d|cBA GFE|D3 D3|fed cBA|B3 A3|]\n"
    result = pipe.infill(abc, 3, 4, seed=0)
    assert result["valid"], result["problems"]
    body = result["abc"].split("K:D\n", 1)[1]
    assert body.startswith("dAF DFA|d2f e2d|") and body.rstrip().endswith("fed cBA|B3 A3|]")
    assert len(result["bars"]) == 6
    with pytest.raises(ConfigError, match="not within the tune's 6 bars"):
        pipe.infill(abc, 5, 9)


# --- several voices ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def form_pipe(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The tiny model trained (so its config says) on key and meter only: form is then enforced by the
    constraint alone (the tiny control vocabulary has no form values)."""
    from transformers import pipeline

    folder = tmp_path_factory.mktemp("voices") / "model"
    shutil.copytree(model_dir, folder)
    (folder / "abcgen_train_config.yaml").write_text("data:\n  conditions: [key, meter]\n", encoding="utf-8")
    return pipeline(TASK, model=str(folder))


def _bar_lines(text: str) -> list[str]:
    """The bar lines (and endings) of one voice's body, in order, as the lexer reads them (a chord's
    brackets are not bar lines); two written together (':|' '|:') joined."""
    from fractions import Fraction

    from abcgen.notation import events as ev
    from abcgen.notation.lexer import lex_body

    out: list[str] = []
    previous = None
    for event in lex_body(text, Fraction(1, 8), None):
        if event.kind in (ev.BAR, ev.ENDING):
            if previous in (ev.BAR, ev.ENDING) and out:
                out[-1] += event.text.strip()
            else:
                out.append(event.text.strip())
        if event.kind not in (ev.SPACE, ev.NEWLINE):
            previous = event.kind
    return out


@pytest.mark.parametrize(("voices", "meter", "pickup", "form", "seed"), [
    (2, "4/4", None, None, 0),
    (2, "3/4", "1/8", "AABB", 1),
    (4, "4/4", "1/4", "AABB", 2),
    (4, "3/4", None, None, 3),
    (3, "6/8", "1/8", None, 4),
])
@pytest.mark.slow
def test_voices_stay_in_step_bar_by_bar(form_pipe, voices: int, meter: str, pickup, form, seed: int) -> None:  # noqa: ANN001
    from abcgen.notation.voices import check_voices_in_step, split_voices, voice_bar_durations

    # with a form, bars are played bars: AABB at bars=16 writes 8
    tunes = form_pipe(key="D", meter=meter, bars=16 if form == "AABB" else 8, pickup=pickup, form=form,
                      voices=voices, num_return_sequences=8, temperature=1.5, seed=seed)
    assert len(tunes) == 8
    for tune in tunes:
        abc = tune["abc"]
        assert tune["valid"], (tune["problems"], abc)
        assert check_voices_in_step(abc) == [], abc
        assert abc2midi_check(abc) == [], abc  # no error (nor warning) line
        header, bodies = split_voices(abc)
        assert list(bodies) == [str(k) for k in range(1, voices + 1)] and tune["voices"] == voices
        assert header[-1] == "K:D" and [h for h in header if h.startswith("V:")] == [f"V:{k}" for k in bodies]
        durations = voice_bar_durations(abc)
        for voice_durations in durations.values():  # 8 full bars (and the pickup with its complement)
            full = [d for d in voice_durations if d == parse_fraction(meter)]
            assert len(full) == 8 and voice_durations == durations["1"], abc
        lines = [_bar_lines(text) for text in bodies.values()]
        assert all(found == lines[0] for found in lines), abc  # the same repeats and endings in every voice
        if form == "AABB":
            assert lines[0][-1] in (":|", ":||") and ("::" in lines[0] or ":|" in lines[0][:-1])


@pytest.mark.slow
def test_voices_are_seeded_and_checked(pipe) -> None:  # noqa: ANN001
    first = pipe(key="G", meter="4/4", bars=8, voices=2, num_return_sequences=2, seed=5)
    again = pipe(key="G", meter="4/4", bars=8, voices=2, num_return_sequences=2, seed=5)
    assert [t["abc"] for t in first] == [t["abc"] for t in again]
    assert all(t["abc"].count("\nV:2\n") == 2 for t in first)  # a definition and the voice's body
    free = pipe(key="G", meter="4/4", voices=2, num_return_sequences=2, seed=5, constrained=False,
                max_new_tokens=40, temperature=1.5)
    assert all(t["constrained"] is False and "\nV:2\n" in t["abc"] for t in free)


@pytest.mark.parametrize(("prompt", "kwargs", "message"), [
    (None, {"voices": 0}, "voices=0"),
    (None, {"voices": "2"}, "voices='2'"),
    ("dAF DFA|d2f e2d|", {"voices": 2}, "cannot be combined with a melody prompt"),
])
def test_bad_voice_requests_fail_before_generating(pipe, prompt, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message):
        pipe(prompt, key="D", meter="6/8", bars=8, **kwargs)


# --- bar counts (issue 11, item 3): one count everywhere, a pickup is not bar 1 ------------------------------


def _castle_of_dromore() -> str:
    """A real 16-bar jig with a pickup (O'Neill's 1850, "The Castle of Dromore")."""
    from abcgen.corpus.sources import read_text, resolve_sources
    from abcgen.notation.tune import split_tunes

    source = next(s for s in resolve_sources(["music21:oneills1850"]) if s.path.name == "0051-0100.abc")
    tune = next(t for t in split_tunes(read_text(source.path)[0]) if "CASTLE OF DROMORE" in t.text)
    return normalise_tune(tune.text).to_abc()


def _num_bars(abc: str) -> int:
    from abcgen.notation.checks import check_tune

    return check_tune(normalise_tune(abc)).report.num_bars


@pytest.mark.parametrize("prompt", ["|:dAF DFA|d2f e2d|", "A|dAF DFA|d2f e2d|", "dAF DFA|d2f e2d||"])
def test_a_continued_prompt_has_the_requested_bars(pipe, prompt: str) -> None:  # noqa: ANN001
    """The README's example (an opening repeat sign), a pickup and a double bar: the prompt's bars are
    counted with the bar check, not by counting '|' characters (which gave 7 bars for 8)."""
    for tune in pipe(prompt, key="D", meter="6/8", bars=8, num_return_sequences=3, seed=2):
        assert _num_bars(tune["abc"]) == 8, tune["abc"]
        assert tune["valid"], (tune["problems"], tune["abc"])


def test_valid_means_the_requested_number_of_bars() -> None:
    from abcgen.generation.sampling import check_sample

    abc = _castle_of_dromore()
    assert _num_bars(abc) == 16 and check_sample(abc, num_bars=16).problems == []
    check = check_sample(abc, num_bars=17)
    assert not check.valid and check.problems == ["16 bars, not the 17 requested (a leading pickup is not counted)"]


def test_infilling_numbers_bars_after_the_pickup(pipe) -> None:  # noqa: ANN001
    abc = _castle_of_dromore()
    body = abc.split("K:D\n", 1)[1]
    # bars 5-6 are "d2D D2D | E2D (DE).F": the pickup (F/G/) is not bar 1
    head, tail = body.split("| d2D D2D | E2D (DE).F |", 1)
    result = pipe.infill(abc, 5, 6, seed=0)
    assert result["valid"], result["problems"]
    new_body = result["abc"].split("K:D\n", 1)[1]
    assert new_body.startswith(head.rstrip()) and new_body.rstrip().endswith(tail.strip())
    assert "A3- A2(B/c/) |" in new_body  # bar 4 kept (the old count replaced it)
    assert _num_bars(result["abc"]) == 16
    with pytest.raises(ConfigError, match="not within the tune's 16 bars"):
        pipe.infill(abc, 16, 17)


# --- the pipeline's Python arguments (item 6) and the model's positions (item 9) -----------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bars": 8.5}, "bars=8.5: give a whole number 1 or more"),
    ({"bars": True}, "bars=True: give a whole number 1 or more"),
    ({"bars": 0}, "bars=0: give a whole number 1 or more"),
    ({"bars": "8"}, "bars='8': give a whole number"),
    ({"top_p": 2}, r"top_p=2: give a number above 0 and at most 1"),
    ({"top_p": 0.0}, r"top_p=0.0: give a number above 0"),
    ({"temperature": 0}, "temperature=0: give a number above 0"),
    ({"temperature": -1.0}, "temperature=-1.0: give a number above 0"),
    ({"temperature": float("nan")}, "temperature=nan: give a number above 0"),
    ({"temperature": True}, "temperature=True: give a number above 0"),
    ({"num_return_sequences": 0}, "num_return_sequences=0: give a whole number 1 or more"),
    ({"num_return_sequences": 2.0}, "num_return_sequences=2.0: give a whole number"),
    ({"seed": -1}, "seed=-1: give a whole number from 0"),
    ({"seed": "7"}, "seed='7': give a whole number from 0"),
    ({"seed": 2**70}, f"seed={2**70}: give a whole number from 0"),
    ({"max_new_tokens": 0}, "max_new_tokens=0: give a whole number 1 or more"),
    ({"max_new_tokens": False}, "max_new_tokens=False: give a whole number 1 or more"),
    ({"voices": True}, "voices=True: give a whole number 1 or more"),
    ({"constrained": "yes"}, "constrained='yes': give True or False"),
    ({"key": 5}, "key=5: give it as text"),
    ({"pickup": 0.125}, "pickup=0.125: give it as text"),
])
def test_bad_arguments_name_the_value_and_the_range(pipe, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message) as info:
        pipe(**{"key": "D", "meter": "6/8", "bars": 8, **kwargs})
    assert "\n" not in str(info.value)


def test_a_prompt_must_be_text(pipe) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=r"prompt=\['dAF'\]: give the opening bars as ABC text"):
        pipe(["dAF"], key="D", meter="6/8")


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((0, 2), {}, r"bars 0..2 are not within the tune's 4 bars \(numbered from 1"),
    ((True, 2), {}, "first_bar=True: give a whole number"),
    ((1, 2.0), {}, "last_bar=2.0: give a whole number"),
    ((1, 2), {"attempts": 0}, "attempts=0: give a whole number 1 or more"),
    ((1, 2), {"seed": -3}, "seed=-3: give a whole number from 0"),
    ((3, 2), {}, "bars 3..2 are not within"),
])
def test_bad_infill_arguments(pipe, args: tuple, kwargs: dict, message: str) -> None:  # noqa: ANN001
    abc = "X:1\nM:6/8\nL:1/8\nK:D\ndAF DFA|d2f e2d|cBA GFE|D3 D3|]\n"
    with pytest.raises(ConfigError, match=message):
        pipe.infill(abc, *args, **kwargs)


def test_a_request_beyond_the_models_positions_is_refused_at_once(pipe) -> None:  # noqa: ANN001
    import time

    start = time.perf_counter()
    with pytest.raises(GenerationBudgetError,
                       match=r"bars=100000 needs about 1200\d{3} tokens .* at most 2048 \(config.max_position_embeddings\)"
                             r": ask for at most 1\d\d bars"):
        pipe(key="D", meter="6/8", bars=100000)
    with pytest.raises(GenerationBudgetError, match=r"max_new_tokens=3000 needs .* give max_new_tokens <= \d+"):
        pipe(key="D", meter="6/8", max_new_tokens=3000)
    with pytest.raises(GenerationBudgetError, match=r"bars=80 needs .* x 3 voices"):
        pipe(key="D", meter="6/8", bars=80, voices=3)
    assert time.perf_counter() - start < 5
    assert pipe(key="D", meter="6/8", bars=100, seed=0)[0]["valid"]  # under the limit: generated


def test_a_model_without_positions_gets_abcgens_limit() -> None:
    from types import SimpleNamespace

    from abcgen.generation.sampling import TOKEN_LIMIT_WITHOUT_POSITIONS, position_limit
    from abcgen.models.lstm_config import MusicLSTMConfig

    assert position_limit(SimpleNamespace(config=MusicLSTMConfig()))[0] == TOKEN_LIMIT_WITHOUT_POSITIONS
    assert position_limit(SimpleNamespace(config=SimpleNamespace(n_positions=1024))) == (1024, "config.n_positions")


# --- model folders and outputs (item 10) ----------------------------------------------------------------------


def test_broken_model_folders_are_one_line_errors(model_dir: Path, tmp_path: Path) -> None:
    from abcgen.generation.pipeline import load_pipeline

    with pytest.raises(ConfigError, match=r"model folder '.*/nowhere/final' does not exist: give the folder"):
        load_pipeline(tmp_path / "nowhere" / "final")
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(model_dir, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match="no tokenizer .* save it with tokenizer.save_pretrained"):
        load_pipeline(no_tokenizer)
    truncated = tmp_path / "truncated"
    shutil.copytree(model_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ConfigError, match="model.safetensors is truncated"):
        load_pipeline(truncated)


def _abcgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abcgen", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # several real subprocesses
def test_generate_checks_the_request_and_the_output_before_generating(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    (out / "tune_00.abc").write_text("X:1\nK:C\nCDEF|]\n", encoding="utf-8")
    before = (out / "tune_00.abc").read_bytes()
    used = _abcgen("generate", "--model", str(model_dir), "--key", "D", "--meter", "6/8", "--bars", "8", "--num", "1",
                   "--out", str(out))
    assert used.returncode == 2 and "--overwrite" in used.stderr and "Traceback" not in used.stderr
    huge = _abcgen("generate", "--model", str(model_dir), "--key", "D", "--meter", "6/8", "--bars", "100000",
                   "--out", str(tmp_path / "huge"))
    assert huge.returncode == 2 and "bars=100000 needs about" in huge.stderr and "Traceback" not in huge.stderr
    missing = _abcgen("generate", "--model", str(tmp_path / "runs" / "x" / "final"), "--out", str(tmp_path / "m"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad_prompt = _abcgen("generate", "--model", str(model_dir), "--prompt", str(tmp_path / "nope.abc"),
                         "--out", str(tmp_path / "p"))
    assert bad_prompt.returncode == 2 and "prompt file" in bad_prompt.stderr
    assert (out / "tune_00.abc").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["tune_00.abc"]
    assert not (tmp_path / "huge").exists() and not (tmp_path / "m").exists()
    replaced = _abcgen("generate", "--model", str(model_dir), "--key", "D", "--meter", "6/8", "--bars", "8",
                       "--num", "2", "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["num"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gen.")]  # no temporary sibling left


def test_sample_to_folder_checks_first_and_writes_whole(model_dir: Path, tmp_path: Path) -> None:
    from abcgen.generation.sampling import sample_to_folder

    with pytest.raises(ConfigError, match="rhythm='hornpipe' is not in the model's vocabulary"):
        sample_to_folder(model_dir, tmp_path / "s", {"rhythm": "hornpipe"})
    with pytest.raises(ConfigError, match="unknown condition 'mood'"):
        sample_to_folder(model_dir, tmp_path / "s", {"mood": "sad"})
    with pytest.raises(ConfigError, match="max_new_tokens=5000 needs .* at most 2048"):
        sample_to_folder(model_dir, tmp_path / "s", {}, max_new_tokens=5000)
    with pytest.raises(ConfigError, match="num=0"):
        sample_to_folder(model_dir, tmp_path / "s", {}, num=0)
    assert not (tmp_path / "s").exists()
    summary = sample_to_folder(model_dir, tmp_path / "s", {"rhythm": "jig"}, num=2, max_new_tokens=24)
    assert summary["num"] == 2 and sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "samples.json", "tune_00.abc", "tune_01.abc"]
