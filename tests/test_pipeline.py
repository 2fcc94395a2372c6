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
        assert tune["abc"].count("|:") == tune["abc"].count(":|") and tune["valid"], tune["problems"]


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
    """The bar lines of one voice's body, in order (note texts never hold | : [ ])."""
    import re

    return re.findall(r"[|:\[\]]+[0-9]*", text)


@pytest.mark.parametrize(("voices", "meter", "pickup", "form", "seed"), [
    (2, "4/4", None, None, 0),
    (2, "3/4", "1/8", "AABB", 1),
    (4, "4/4", "1/4", "AABB", 2),
    (4, "3/4", None, None, 3),
    (3, "6/8", "1/8", None, 4),
])
def test_voices_stay_in_step_bar_by_bar(form_pipe, voices: int, meter: str, pickup, form, seed: int) -> None:  # noqa: ANN001
    from abcgen.notation.voices import check_voices_in_step, split_voices, voice_bar_durations

    tunes = form_pipe(key="D", meter=meter, bars=8, pickup=pickup, form=form, voices=voices,
                      num_return_sequences=8, temperature=1.5, seed=seed)
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
