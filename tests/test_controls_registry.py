"""The condition registry: a condition declared once (``abcgen.controls.register``) reaches the corpus build,
the control vocabulary and prompt prefix, the pipeline, the ``abcgen generate`` flags and evaluation's draws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_models import tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.controls import (
    CONTROL_NAMES,
    Condition,
    ControlVocabulary,
    condition_names,
    get_condition,
    register,
    registered,
    row_controls,
)
from abcgen.corpus.labels import tempo_bpm
from abcgen.errors import ConfigError


def _tempo_class(tune: Any) -> str:
    """A toy condition: ``lively`` at 100 bpm or more, ``calm`` below, ``""`` without a ``Q:``."""
    bpm = tempo_bpm(tune.get("Q"))
    return "" if not bpm else "lively" if bpm >= 100 else "calm"


TEMPO_CLASS = Condition("tempo_class", help="toy tempo class from Q:", example="lively", derive=_tempo_class,
                        adherence="tempo_class_adherence")

TUNES = [
    "X:1\nT:Quick One\nR:jig\nQ:3/8=120\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|d2f e2d|cBA GFE|D3 D3:|\n",
    "X:2\nT:Quick Two\nR:reel\nQ:1/4=180\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA:|\n",
    "X:3\nT:Slow Three\nR:waltz\nQ:1/4=60\nM:3/4\nL:1/8\nK:Am\nA2 B2 c2|d4 e2|c2 B2 A2|A6|]\n",
    "X:4\nT:Slow Four\nR:waltz\nQ:1/4=70\nM:3/4\nL:1/8\nK:D\nd2 e2 f2|g4 a2|f2 e2 d2|d6|]\n",
]


@pytest.fixture
def tempo_class():  # noqa: ANN201
    with registered(TEMPO_CLASS) as condition:
        yield condition
    assert "tempo_class" not in condition_names()


def test_builtin_registry_order_is_the_prefix_order() -> None:
    assert condition_names() == CONTROL_NAMES == ("key", "meter", "unit_length", "rhythm", "origin", "composer",
                                                  "form", "bars", "tempo")
    assert get_condition("unit_length").flag == "--unit-length"
    assert get_condition("bars").label_of_row({"num_bars": 17}) == "24"
    assert get_condition("key").label_of_request("Ador") == "A dorian"
    assert get_condition("rhythm").label_of_request("Slip-Jig") == "slip jig"
    with pytest.raises(ConfigError, match="unknown condition 'tempo_class'"):
        get_condition("tempo_class")
    with pytest.raises(ConfigError, match="already registered"):
        register(Condition("key"))


def test_a_registered_condition_reaches_the_corpus_and_the_vocabulary(tempo_class, tmp_path: Path) -> None:
    from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tunes.abc").write_text("\n".join(TUNES), encoding="utf-8")
    report = build_corpus(BuildConfig(sources=[str(tmp_path / "in")], out=tmp_path / "corpus", workers=1,
                                      validation_fraction=0.0, test_fraction=0.0, min_label_count=1),
                          progress=False)
    rows = [dict(row) for row in load_corpus(tmp_path / "corpus")["train"]]
    assert sorted(row["tempo_class"] for row in rows) == ["calm", "calm", "lively", "lively"]
    assert report["labels"]["tempo_class"] == {"calm": 2, "lively": 2}
    vocab = ControlVocabulary.load(tmp_path / "corpus")
    assert vocab.values["tempo_class"] == {"calm": 2, "lively": 2}
    assert "<tempo_class=lively>" in vocab.tokens()
    labels = row_controls(next(row for row in rows if row["title"] == "Quick One"))
    assert labels["tempo_class"] == "lively"
    # after the built-in conditions in the prefix, as registered
    assert vocab.prefix(labels) == "<key=D_major><meter=6/8><unit_length=1/8><rhythm=jig><form=AA><bars=8><tempo=fast>" \
                                   "<tempo_class=lively>\n"


def test_a_registered_condition_reaches_the_pipeline(tempo_class, tmp_path: Path) -> None:
    from transformers import pipeline

    from abcgen.generation.pipeline import TASK, UnknownConditionError

    folder = tiny_music_model_folder(tmp_path / "model", extra_labels={"tempo_class": "lively"})
    pipe = pipeline(TASK, model=str(folder))
    assert pipe.tokenizer.convert_tokens_to_ids("<tempo_class=lively>") != pipe.tokenizer.unk_token_id
    preprocess, _, _ = pipe._sanitize_parameters(key="D", meter="6/8", tempo_class=" lively ")
    inputs = pipe.preprocess("", **preprocess)
    assert inputs["labels"]["tempo_class"] == "lively"
    assert pipe.tokenizer.decode(inputs["prefix_ids"]).startswith("<key=D_major><meter=6/8><tempo_class=lively>")
    tunes = pipe(key="D", meter="6/8", tempo_class="lively", bars=2, num_return_sequences=1, seed=0)
    assert tunes[0]["conditions"]["tempo_class"] == "lively"
    with pytest.raises(UnknownConditionError, match="tempo_class='calm'"):
        pipe(tempo_class="calm")
    with pytest.raises(ConfigError, match="tempo_class=3: give it as text"):
        pipe(tempo_class=3)


def test_a_registered_condition_is_a_cli_flag(tempo_class, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import abcgen.generation.pipeline as pipeline_module
    from abcgen.cli import build_parser

    seen: dict[str, Any] = {}

    def fake_generate(model: str, out: Path, prompt: Any, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        return {"valid": 0, "num": 0}

    monkeypatch.setattr(pipeline_module, "generate_to_folder", fake_generate)
    parser = build_parser()
    assert "toy tempo class from Q:" in parser._subparsers._group_actions[0].choices["generate"].format_help()
    args = parser.parse_args(["generate", "--model", "no-such-model", "--out", "out", "--tempo-class", "lively",
                              "--bars", "8"])
    assert args.func(args) == 0
    assert seen["tempo_class"] == "lively" and seen["bars"] == 8 and "rhythm" not in seen


def test_a_registered_condition_is_drawn_by_evaluation(tempo_class) -> None:
    from abcgen.evaluation.generate import draw_requests

    rows = [{"key": "D major", "meter": "6/8", "unit_length": "1/8", "num_bars": 8, "tempo_class": value}
            for value in ("lively", "calm", "")]
    vocab = ControlVocabulary.from_rows(rows, min_count=1)
    requests = draw_requests(rows, vocab, condition_names(), 12, seed=0)
    drawn = {r.source_row: r.conditions.get("tempo_class") for r in requests}
    assert drawn == {0: "lively", 1: "calm", 2: None}
    # not trained with it: recorded as skipped, never silently dropped
    untrained = draw_requests(rows[:1], vocab, CONTROL_NAMES, 1, seed=0)[0]
    assert "tempo_class" not in untrained.conditions
    assert untrained.skipped["tempo_class"] == "the model was not trained with this condition"
    assert json.dumps(untrained.conditions)  # plain values, as the report stores them
