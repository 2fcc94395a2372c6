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
