"""The prompt contract pinned: token ids of training examples and of every generation prompt, recorded
before the prompt assembly moved to ``abcgen.tokenization.prompt`` (``tests/data/prompt_golden.json``).

The same tune and conditions must give the same ids through every path (training examples, the pipeline,
plain sampling, the VAE's decoder prompt): a model trained before the move is prompted exactly as before.
Regenerate the file only for an intended change of format: ``ABCGEN_RECORD_PROMPT_GOLDEN=1 pytest ...``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from tiny_models import tiny_base_tokenizer, tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.controls import ControlVocabulary
from abcgen.corpus.labels import header_labels
from abcgen.notation.tune import normalise_abc, parse_tune
from abcgen.tokenization.extend import build_music_tokenizer
from abcgen.tokenization.units import load_default_spec
from abcgen.training.data import SplitStats, build_examples, tune_to_examples

GOLDEN = Path(__file__).parent / "data" / "prompt_golden.json"
RECORD = os.environ.get("ABCGEN_RECORD_PROMPT_GOLDEN") == "1"

# Condition sets asked of the pipeline: (melody prompt, keyword arguments).
PIPELINE_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("", {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 16}),
    ("", {"key": "Ador", "meter": "4/4"}),
    ("", {"meter": "3/4", "unit_length": "1/8", "rhythm": "waltz", "bars": 8}),
    ("", {"key": "G", "meter": "2/4", "voices": 2, "bars": 4}),
    ("dAF DFA|d2f e2d|", {"key": "D", "meter": "6/8", "bars": 8}),
    ("X:1\nT:Given\nM:4/4\nL:1/8\nK:Em\n|:EFGA B2e2|", {"rhythm": "reel", "pickup": None}),
]


def _check(name: str, value: Any, golden: dict[str, Any]) -> None:
    if RECORD:
        golden[name] = value
    else:
        assert value == golden[name], f"{name} changed"


@pytest.fixture(scope="module")
def golden() -> Any:
    data = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}
    yield data
    if RECORD:
        GOLDEN.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def rows(real_tunes: list[str]) -> list[dict[str, Any]]:
    out = []
    for text in real_tunes[::25]:
        try:
            abc = normalise_abc(text)
        except ValueError:
            continue
        out.append({"abc": abc, **header_labels(parse_tune(abc)), "num_bars": 16, "form": "AABB"})
    return out


@pytest.mark.parametrize("bos", [False, True])
def test_training_examples_keep_their_ids(rows, golden, bos: bool, tmp_path: Path) -> None:
    vocab = ControlVocabulary.from_rows(rows, min_count=1)
    tok = build_music_tokenizer(tiny_base_tokenizer(tmp_path / "base", bos=bos), load_default_spec(), vocab)
    examples, stats = build_examples(rows[:6], tok, vocab, max_length=512, condition_dropout=0.3, seed=1)
    _check(f"examples_bos{bos}", [[e.input_ids, e.labels] for e in examples], golden)
    _check(f"stats_bos{bos}", stats, golden)
    # a long tune split at bar lines (continuation chunks repeat BOS + prefix + header as context)
    split = tune_to_examples(rows[1]["abc"], {"key": rows[1]["key"], "meter": rows[1]["meter"]}, tok, vocab,
                             max_length=60, loss_on="all", stats=SplitStats())
    _check(f"split_bos{bos}", [[e.input_ids, e.labels] for e in split], golden)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from transformers import pipeline

    from abcgen.generation.pipeline import TASK

    return pipeline(TASK, model=str(tiny_music_model_folder(tmp_path_factory.mktemp("contract") / "model")))


def test_pipeline_prompts_keep_their_ids(pipe, golden) -> None:  # noqa: ANN001
    for i, (prompt, kwargs) in enumerate(PIPELINE_CALLS):
        preprocess, _, _ = pipe._sanitize_parameters(**kwargs)
        inputs = pipe.preprocess(prompt, **preprocess)
        _check(f"pipeline_{i}", {"input_ids": inputs["input_ids"][0].tolist(), "prefix_ids": inputs["prefix_ids"],
                                 "header": inputs["header"], "body": inputs["frame"]["body"],
                                 "labels": inputs["labels"], "max_new_tokens": inputs["max_new_tokens"]}, golden)


def test_free_sampled_tunes_for_a_fixed_seed_are_unchanged(pipe, golden) -> None:  # noqa: ANN001
    # Unconstrained, so the tunes pin the prompts alone (voice 2's prompt included), not the grammar's rules.
    # The output's T: and Q: lines are written after generation (generation.frame.page_header), not prompted.
    tunes = pipe(key="D", meter="6/8", rhythm="jig", num_return_sequences=2, seed=5, constrained=False,
                 max_new_tokens=30)
    assert all("\nT:Jig in D major\n" in t["abc"] and "\nQ:3/8=116\n" in t["abc"] for t in tunes)
    _check("free_single", [[_unpaged(t["abc"]), t["valid"], t["problems"]] for t in tunes], golden)
    tunes = pipe(key="G", meter="3/4", voices=2, num_return_sequences=2, seed=2, constrained=False, max_new_tokens=20)
    _check("free_voices", [[_unpaged(t["abc"]), t["valid"], t["problems"]] for t in tunes], golden)


def _unpaged(abc: str) -> str:
    return "".join(line for line in abc.splitlines(keepends=True) if not line.startswith(("T:", "Q:")))


def test_plain_sampling_and_vae_prompts_keep_their_ids(pipe, golden) -> None:  # noqa: ANN001
    from abcgen.generation.sampling import sample_tunes
    from abcgen.training.vae_data import TuneFrame, prompt_ids

    conditions = [{"key": "D major", "meter": "6/8", "rhythm": "jig"}, {}]
    samples = sample_tunes(pipe.model, pipe.tokenizer, pipe.vocabulary, conditions, max_new_tokens=24, seed=3)
    _check("sampled", [[s.abc, s.bar_check_ok, s.problems] for s in samples], golden)
    frame = TuneFrame.from_header("6/8", None, "D")
    _check("vae_prompt", [prompt_ids(pipe.tokenizer, pipe.vocabulary, c, frame.header) for c in conditions], golden)
    _check("vae_header", frame.header, golden)
    random.seed(0)  # nothing above may depend on the global random state
