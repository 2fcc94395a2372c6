"""Unconditional dropout (``data.unconditional_dropout``) and the whole-tune length statistics of training.

Unconditional dropout drops every condition of a tune at once, so the prompt classifier-free guidance
contrasts with (``AbcPromptFormat.unconditional_prompt_ids``) is trained on, not left to the product of
independent per-condition drops. The length statistics say how many tunes ``data.max_length`` keeps whole.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from tiny_models import tiny_base_tokenizer

from abcgen.controls import ControlVocabulary, row_controls
from abcgen.corpus.labels import header_labels
from abcgen.errors import ConfigError
from abcgen.notation.tune import normalise_abc, parse_tune
from abcgen.tokenization.extend import abc_to_ids, build_music_tokenizer
from abcgen.tokenization.prompt import AbcPromptFormat
from abcgen.tokenization.units import load_default_spec
from abcgen.training.config import format_help, load_config
from abcgen.training.data import TrainingStats, build_examples, length_stats, tune_to_examples

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ("rhythm", "key", "meter")
SHORT = "X:1\nT:Short\nR:jig\nM:6/8\nL:1/8\nK:D\ndAF DFA|d2f e2d|]\n"
SHORT_LABELS = {"rhythm": "jig", "key": "D major", "meter": "6/8"}


@pytest.fixture(scope="module")
def rows(real_tunes: list[str]) -> list[dict[str, object]]:
    out = []
    for text in real_tunes[::12]:
        try:
            abc = normalise_abc(text)
        except ValueError:
            continue
        out.append({"abc": abc, **header_labels(parse_tune(abc))})
    assert len(out) > 40
    return out


@pytest.fixture(scope="module", params=[False, True], ids=["no-bos", "bos"])
def tok(request: pytest.FixtureRequest, rows, tmp_path_factory: pytest.TempPathFactory):
    vocab = ControlVocabulary.from_rows([*rows, SHORT_LABELS], min_count=1)
    base = tiny_base_tokenizer(tmp_path_factory.mktemp("base"), bos=request.param)
    return build_music_tokenizer(base, load_default_spec(), vocab), vocab


def _labels(row) -> dict[str, str]:
    return {k: v for k, v in row_controls(row).items() if k in CONDITIONS}


def _control_ids(tok) -> dict[int, str]:
    """Every control token of the tokenizer (``<key=D_major>``, ...) by id."""
    return {i: t for t, i in tok.get_vocab().items() if t.startswith("<") and "=" in t}


def _reference(rows, tok, vocab, *, condition_dropout: float, unconditional_dropout: float, seed: int,
               max_length: int) -> list:
    """The dropout written out by hand: per tune one draw for the whole prompt (only when p > 0), then one
    per condition (only when the tune was not dropped whole and p > 0) -- the examples built undropped."""
    rng, out = random.Random(seed), []
    for row in rows:
        labels = _labels(row)
        if unconditional_dropout > 0 and rng.random() < unconditional_dropout:
            kept = {}
        elif condition_dropout > 0:
            kept = {name: value for name, value in labels.items() if not rng.random() < condition_dropout}
        else:
            kept = labels
        out += tune_to_examples(str(row["abc"]), kept, tok, vocab, max_length=max_length)
    return out


# --- unconditional dropout ---------------------------------------------------------------------------------------


def test_every_tune_dropped_whole_gets_exactly_the_unconditional_prompt_of_guidance(rows, tok) -> None:
    tok, vocab = tok
    fmt = AbcPromptFormat(tok, vocab)
    examples, stats = build_examples(rows, tok, vocab, max_length=4096, conditions=CONDITIONS, condition_dropout=0.3,
                                     unconditional_dropout=1.0, seed=0, detailed=True)
    assert len(examples) == len(rows) and stats["split_tunes"] == 0
    for row, example in zip(rows, examples, strict=True):
        labels, abc = _labels(row), str(row["abc"])
        assert labels  # the conditional prompt had a prefix to drop
        conditional = fmt.prompt_ids(labels, abc)
        assert example.input_ids == fmt.unconditional_prompt_ids(conditional, labels) + [fmt.end_id]
    assert stats["unconditional_drops"] == stats["tunes"] == len(rows)
    assert stats["unconditional_examples"] == stats["examples"]
    assert stats["conditions_dropped"] == sum(len(_labels(r)) for r in rows)


def test_chunks_of_a_long_tune_dropped_whole_all_start_with_the_empty_prefix(rows, tok) -> None:
    tok, vocab = tok
    empty, controls = AbcPromptFormat(tok, vocab).context_ids({}), set(_control_ids(tok))
    examples, stats = build_examples(rows, tok, vocab, max_length=120, conditions=CONDITIONS,
                                     unconditional_dropout=1.0, seed=0, detailed=True)
    assert stats["split_tunes"] > 0 and stats["unconditional_examples"] == len(examples) > len(rows)
    assert all(e.input_ids[: len(empty)] == empty and not controls & set(e.input_ids) for e in examples)


def test_at_zero_the_examples_are_those_of_per_condition_dropout_alone(rows, tok) -> None:
    tok, vocab = tok
    for seed in (1, 7):
        examples, stats = build_examples(rows, tok, vocab, max_length=160, conditions=CONDITIONS,
                                         condition_dropout=0.3, unconditional_dropout=0.0, seed=seed)
        assert examples == _reference(rows, tok, vocab, condition_dropout=0.3, unconditional_dropout=0.0, seed=seed,
                                      max_length=160)
        assert "unconditional_drops" not in stats  # the pinned SplitStats dict unless detailed=True
        default, _ = build_examples(rows, tok, vocab, max_length=160, conditions=CONDITIONS, condition_dropout=0.3,
                                    seed=seed)
        assert default == examples


def test_the_whole_prompt_draw_comes_first_from_the_same_seeded_rng(rows, tok) -> None:
    tok, vocab = tok
    kwargs = dict(max_length=160, conditions=CONDITIONS, condition_dropout=0.3, unconditional_dropout=0.25)
    a, stats = build_examples(rows, tok, vocab, seed=3, detailed=True, **kwargs)
    assert a == _reference(rows, tok, vocab, condition_dropout=0.3, unconditional_dropout=0.25, seed=3,
                           max_length=160)
    assert a == build_examples(rows, tok, vocab, seed=3, **kwargs)[0] != build_examples(rows, tok, vocab, seed=4,
                                                                                        **kwargs)[0]
    assert 0 < stats["unconditional_drops"] < len(rows)
    assert stats["unconditional_examples"] >= stats["unconditional_drops"]  # chunks, and all-three per-condition drops


def test_per_condition_dropout_still_drops_each_condition_independently(tok) -> None:
    """Whole drops at 0.3, then each of three conditions at 0.5: the empty prefix 0.3 + 0.7/8, every other
    subset of kept conditions 0.7/8 -- the per-condition draws are still independent of each other."""
    tok, vocab = tok
    controls = _control_ids(tok)
    rng, stats, n = random.Random(0), TrainingStats(max_length=256), 2400
    kept = Counter()
    for _ in range(n):
        (example,) = tune_to_examples(SHORT, SHORT_LABELS, tok, vocab, max_length=256, condition_dropout=0.5,
                                      unconditional_dropout=0.3, rng=rng, stats=stats)
        kept[tuple(sorted(controls[i] for i in example.input_ids if i in controls))] += 1
    assert len(kept) == 8 and 0.35 < kept[()] / n < 0.43, kept
    assert all(0.065 < count / n < 0.11 for subset, count in kept.items() if subset), kept
    assert 0.27 < stats.unconditional_drops / n < 0.33 and stats.unconditional_examples == kept[()]
    assert stats.conditions_dropped == sum(3 - len(subset) for subset in kept.elements())


def test_dropout_needs_an_rng_and_a_share(rows, tok) -> None:
    tok, vocab = tok
    with pytest.raises(ConfigError, match="unconditional_dropout > 0 needs an rng"):
        tune_to_examples(SHORT, SHORT_LABELS, tok, vocab, max_length=256, unconditional_dropout=0.1)
    with pytest.raises(ConfigError, match="unconditional_dropout=1.5 must be between 0 and 1"):
        build_examples(rows[:2], tok, vocab, max_length=256, unconditional_dropout=1.5)


# --- the config key ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_a_bad_share_is_a_one_line_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.method=scratch", "model.tokenizer=tok", "data.corpus=corpus",
                           f"data.unconditional_dropout={value}"])
    message = str(info.value)
    assert f"data.unconditional_dropout={float(value)!r} must be in [0, 1]" in message and "\n" not in message


def test_default_off_and_on_in_the_lora_configs(capsys: pytest.CaptureFixture[str]) -> None:
    base = load_config(ROOT / "train/configs/quickstart-base.yaml")
    assert base.data.unconditional_dropout == 0.0  # existing configs: behaviour unchanged
    for name in ("quickstart-lora.yaml", "qwen2.5-0.5b-lora.yaml", "llama-3.2-1b-lora.yaml"):
        text = (ROOT / "train/configs" / name).read_text()
        assert load_config(ROOT / "train/configs" / name).data.unconditional_dropout == 0.1, name
        assert "unconditional_dropout: 0.1 " in text and "guidance" in text.split("unconditional_dropout:")[1].split("\n")[0]
    print(format_help())
    assert "data.unconditional_dropout" in capsys.readouterr().out


def test_the_share_is_part_of_the_run_identity(tmp_path: Path) -> None:
    from abcgen.training.config import TrainConfig
    from abcgen.training.run import identity_differences, run_identity

    cfg = TrainConfig()
    cfg.data.corpus = str(tmp_path)  # the identity fingerprints the corpus folder's files: none here
    before = run_identity(cfg, None)
    cfg.data.unconditional_dropout = 0.1
    after = run_identity(cfg, None)
    assert after["keys"]["data.unconditional_dropout"] == 0.1
    assert [d.split(":")[0] for d in identity_differences(before, after)] == ["data.unconditional_dropout"]


# --- whole-tune lengths ------------------------------------------------------------------------------------------


def test_length_quantiles_are_nearest_rank_and_rounded_up_to_64() -> None:
    stats = length_stats(list(range(100, 0, -1)), 64)  # 1..100, any order
    assert {k: stats[k] for k in ("length_p50", "length_p90", "length_p95", "length_p98", "length_p99",
                                  "length_max")} == {"length_p50": 50, "length_p90": 90, "length_p95": 95,
                                                     "length_p98": 98, "length_p99": 99, "length_max": 100}
    assert stats["whole_at_max_length"] == 64.0 and stats["max_length_98"] == 128
    skewed = length_stats([10] * 49 + [300], 256)  # one long tune in fifty: 98 % are whole at 64
    assert (skewed["length_p98"], skewed["length_p99"], skewed["whole_at_max_length"], skewed["max_length_98"]) == (
        10, 300, 98.0, 64)
    assert length_stats([128], 128)["max_length_98"] == 128 and length_stats([129], 128)["max_length_98"] == 192
    assert length_stats([], 256)["whole_at_max_length"] is None


def test_training_stats_count_whole_lengths_of_a_hand_made_corpus(tok) -> None:
    tok, vocab = tok
    fmt = AbcPromptFormat(tok, vocab)
    bar = "dAF DFA|d2f e2d|"
    rows = [{"abc": f"X:{n}\nT:Tune {n}\nR:jig\nM:6/8\nL:1/8\nK:D\n" + bar * n + "]\n", "rhythm": "jig",
             "key": "D major", "meter": "6/8"} for n in (1, 2, 3, 5, 8, 13, 21, 34)]
    lengths = [len(fmt.context_ids(_labels(r))) + len(abc_to_ids(tok, r["abc"])) + 1 for r in rows]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    max_length = (lengths[4] + lengths[5]) // 2  # five tunes fit whole, three are split
    examples, stats = build_examples(rows, tok, vocab, max_length=max_length, conditions=CONDITIONS, detailed=True)
    assert stats["split_tunes"] == 3 and stats["dropped_tunes"] == 0 and len(examples) > len(rows)
    assert stats["whole_at_max_length"] == 62.5  # 5 of 8
    assert (stats["length_p50"], stats["length_p90"], stats["length_max"]) == (lengths[3], lengths[7], lengths[7])
    assert stats["max_length_98"] == -(-lengths[7] // 64) * 64
    assert stats["unconditional_examples"] == 0 and stats["unconditional_drops"] == 0
