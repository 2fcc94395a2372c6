"""Training examples and packing on real tunes: label masks, bar-line splits, isolation of packed tunes."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_base_tokenizer

from abcgen.controls import ControlVocabulary
from abcgen.corpus.labels import header_labels
from abcgen.errors import ConfigError
from abcgen.notation.tune import normalise_abc, parse_tune
from abcgen.tokenization.extend import abc_to_ids, build_music_tokenizer
from abcgen.tokenization.units import load_default_spec
from abcgen.training.data import (
    IGNORE_INDEX,
    EpochSampler,
    Example,
    PackedDataset,
    SplitStats,
    _body_cuts,
    bos_ids,
    build_examples,
    collate_packed,
    epoch_order,
    forward_kwargs,
    make_row,
    pack_examples,
    packing_stats,
    tune_to_examples,
)
from abcgen.training.loss import token_sum_cross_entropy

CONDITIONS = ("key", "meter", "rhythm")


@pytest.fixture(scope="module")
def rows(real_tunes: list[str]) -> list[dict[str, object]]:
    """Normalised real tunes (O'Neill's, Ryan's, Essen, Aird's) as corpus-like rows."""
    out = []
    for text in real_tunes[::4]:
        try:
            abc = normalise_abc(text)
        except ValueError:
            continue
        out.append({"abc": abc, **header_labels(parse_tune(abc))})
    assert len(out) > 100
    return out


@pytest.fixture(scope="module")
def vocab(rows) -> ControlVocabulary:
    return ControlVocabulary.from_rows(rows, min_count=2)


@pytest.fixture(scope="module")
def tok(rows, vocab, tmp_path_factory: pytest.TempPathFactory):
    return build_music_tokenizer(tiny_base_tokenizer(tmp_path_factory.mktemp("base")), load_default_spec(), vocab)


def _labels(row) -> dict[str, str]:
    from abcgen.controls import row_controls

    return {k: v for k, v in row_controls(row).items() if k in CONDITIONS}


def _context_len(tok, vocab, labels) -> int:
    return len(bos_ids(tok)) + len(abc_to_ids(tok, vocab.prefix(labels)))


# --- examples ------------------------------------------------------------------------------------------


def test_prefix_masked_with_loss_on_tune_not_with_all(rows, tok, vocab) -> None:
    row = rows[0]
    labels = _labels(row)
    n = _context_len(tok, vocab, labels)
    assert n >= 3  # at least two control tokens and the newline
    (tune,) = tune_to_examples(row["abc"], labels, tok, vocab, max_length=4096, loss_on="tune")
    (every,) = tune_to_examples(row["abc"], labels, tok, vocab, max_length=4096, loss_on="all")
    assert tune.input_ids == every.input_ids
    assert tok.decode(tune.input_ids[:n]) == vocab.prefix(labels)
    assert tune.input_ids[n:-1] == abc_to_ids(tok, row["abc"]) and tune.input_ids[-1] == tok.eos_token_id
    assert tune.labels[:n] == [IGNORE_INDEX] * n and tune.labels[n:] == tune.input_ids[n:]
    # "all" trains the prefix too, except the first token, which nothing in the example predicts
    assert every.labels[0] == IGNORE_INDEX and every.labels[1:] == every.input_ids[1:]
    with pytest.raises(ConfigError, match="loss_on"):
        tune_to_examples(row["abc"], labels, tok, vocab, max_length=4096, loss_on="prefix")


def test_bos_added_only_when_the_tokenizer_adds_one(rows, vocab, tmp_path: Path) -> None:
    tok = build_music_tokenizer(tiny_base_tokenizer(tmp_path, bos=True), load_default_spec(), vocab)
    assert bos_ids(tok) == [tok.bos_token_id]
    (example,) = tune_to_examples(rows[0]["abc"], _labels(rows[0]), tok, vocab, max_length=4096)
    assert example.input_ids[0] == tok.bos_token_id and example.labels[0] == IGNORE_INDEX


def test_condition_dropout_is_seeded(rows, tok, vocab) -> None:
    kwargs = dict(max_length=4096, conditions=CONDITIONS)
    none, stats_none = build_examples(rows[:40], tok, vocab, condition_dropout=1.0, seed=0, **kwargs)
    nl = abc_to_ids(tok, "\n")
    assert all(e.input_ids[:len(nl)] == nl for e in none)  # every condition dropped: prefix is "\n"
    assert stats_none["conditions_dropped"] == sum(len(_labels(r)) for r in rows[:40])
    a, stats_a = build_examples(rows[:40], tok, vocab, condition_dropout=0.5, seed=3, **kwargs)
    b, _ = build_examples(rows[:40], tok, vocab, condition_dropout=0.5, seed=3, **kwargs)
    c, _ = build_examples(rows[:40], tok, vocab, condition_dropout=0.5, seed=4, **kwargs)
    assert a == b and a != c and 0 < stats_a["conditions_dropped"] < stats_none["conditions_dropped"]
    with pytest.raises(ConfigError, match="unknown conditions"):
        build_examples(rows[:2], tok, vocab, max_length=512, conditions=("rythm",))


def test_long_tunes_split_at_bar_lines_with_prefix_and_header(rows, tok, vocab) -> None:
    num_split = 0
    for row in rows:
        labels = _labels(row)
        tune = parse_tune(row["abc"])
        header = row["abc"][: len(row["abc"]) - len(tune.body)]
        context = bos_ids(tok) + abc_to_ids(tok, vocab.prefix(labels))
        header_ids = abc_to_ids(tok, header)
        n = len(context) + len(header_ids)
        max_length = max(2 * n, n + 48)  # room for a few bars after the (tiny tokenizer's long) header
        stats = SplitStats()
        examples = tune_to_examples(row["abc"], labels, tok, vocab, max_length=max_length, stats=stats)
        assert examples and all(len(e) <= max_length for e in examples)
        if len(examples) == 1:
            continue
        num_split += 1
        assert stats.split_tunes == 1 and stats.cut_bars == 0 and stats.examples == len(examples)
        cuts = set(_body_cuts(tune.body, tune.events()))
        body_parts = []
        for i, example in enumerate(examples):
            ids = example.input_ids
            assert ids[:n] == context + header_ids  # every chunk: prefix + header ...
            last = i == len(examples) - 1
            body_ids = ids[n:-1] if last else ids[n:]
            assert (ids[-1] == tok.eos_token_id) == last  # only the last chunk ends the tune
            body_parts.append(tok.decode(body_ids, clean_up_tokenization_spaces=False))
            # ... + whole bars: the chunk ends at a cut point (after a bar line and its whitespace)
            assert sum(len(p) for p in body_parts) in cuts
            if not last:
                assert body_parts[-1].rstrip()[-1] in "|]:0123456789", body_parts[-1]
            # labels: the header is trained once (first chunk); continuation chunks train the body only
            masked = len(context) if i == 0 else n
            assert example.labels[:masked] == [IGNORE_INDEX] * masked
            assert example.labels[masked:] == ids[masked:]
        assert "".join(body_parts) == tune.body  # nothing lost, nothing repeated
    assert num_split >= 50


def test_build_examples_accounts_for_every_tune(rows, tok, vocab) -> None:
    stats = SplitStats()
    per_tune = [tune_to_examples(row["abc"], _labels(row), tok, vocab, max_length=160, stats=stats) for row in rows]
    examples, counted = build_examples(rows, tok, vocab, max_length=160, conditions=CONDITIONS)
    assert counted == stats.as_dict() and examples == [e for chunk in per_tune for e in chunk]
    assert counted["tunes"] == len(rows) == sum(1 for chunk in per_tune if chunk) + counted["dropped_tunes"]
    assert counted["split_tunes"] == sum(1 for chunk in per_tune if len(chunk) > 1) > 0
    assert counted["examples"] == len(examples) and counted["tokens"] == sum(len(e) for e in examples)
    assert counted["label_tokens"] == sum(sum(x != IGNORE_INDEX for x in e.labels) for e in examples)


def test_a_bar_longer_than_a_chunk_is_cut_and_counted(tok, vocab) -> None:
    abc = normalise_abc("X:1\nT:One endless bar\nM:4/4\nL:1/8\nK:D\n|:" + "ABcd efge " * 30 + ":|\n| d8 |]\n")
    stats = SplitStats()
    examples = tune_to_examples(abc, {"key": "D major"}, tok, vocab, max_length=96, stats=stats)
    assert stats.cut_bars == 1 and stats.split_tunes == 1 and len(examples) > 3
    n = len(abc_to_ids(tok, vocab.prefix({"key": "D major"}))) + len(abc_to_ids(tok, abc[: abc.index("|:")]))
    body = [x for e in examples for x in e.input_ids[n:]][:-1]
    assert tok.decode(body, clean_up_tokenization_spaces=False) == parse_tune(abc).body


def test_multi_voice_continuation_chunks_name_their_voice(tok, vocab) -> None:
    abc = normalise_abc("X:1\nT:Two voices\nM:4/4\nL:1/8\nV:1\nV:2 clef=bass\nK:C\nV:1\n"
                        + "abcd efga|bagf edcB|" * 6 + "\nV:2\n" + "C,D,E,F, G,A,B,C|DEFG ABcd|" * 6 + "]\n")
    tune = parse_tune(abc)
    header = abc[: len(abc) - len(tune.body)]
    prefix_and_header = vocab.prefix({"key": "C major"}) + header
    examples = tune_to_examples(abc, {"key": "C major"}, tok, vocab, max_length=130)
    assert len(examples) >= 3
    body = ""
    voiced = Counter()
    for i, example in enumerate(examples):
        n = sum(x == IGNORE_INDEX for x in example.labels)  # the context of a continuation chunk
        context = tok.decode(example.input_ids[:n], clean_up_tokenization_spaces=False)
        part = tok.decode([x for x in example.input_ids[n:] if x != tok.eos_token_id], clean_up_tokenization_spaces=False)
        if i == 0:
            assert context == vocab.prefix({"key": "C major"})
        else:
            voice = "V:2" if "V:2" in body else "V:1"  # the voice sounding where the chunk starts
            assert context == prefix_and_header + ("" if part.startswith("V:") else voice + "\n"), (context, part)
            voiced[context[len(prefix_and_header):]] += 1
        body += part if i else part[len(header):]
    assert body == tune.body
    assert voiced["V:1\n"] and voiced["V:2\n"], voiced  # both voices resumed mid-way


def test_a_tune_whose_header_fills_the_context_is_dropped_and_counted(rows, tok, vocab, caplog) -> None:
    stats = SplitStats()
    with caplog.at_level(logging.WARNING, logger="abcgen.training.data"):
        assert tune_to_examples(rows[0]["abc"], _labels(rows[0]), tok, vocab, max_length=40, stats=stats) == []
    assert stats.tunes == 1 and stats.dropped_tunes == 1 and stats.examples == 0 and "dropped" in caplog.text


# --- packing ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(rows, tok, vocab) -> list[Example]:
    examples, _ = build_examples(rows, tok, vocab, max_length=128, conditions=CONDITIONS)
    return examples


def _segments(row) -> list[tuple[int, ...]]:
    out, start = [], 0
    for n in row.seq_lens:
        assert row.position_ids[start:start + n].tolist() == list(range(n))  # positions restart per segment
        out.append(tuple(row.input_ids[start:start + n].tolist()))
        start += n
    return out[:-1] if row.num_pad else out


def test_packing_is_complete_deterministic_and_reports_padding(examples, tok) -> None:
    rows = pack_examples(examples, 256, seed=0, pad_id=tok.pad_token_id)
    assert all(r.input_ids.shape == (256,) and sum(r.seq_lens) == 256 for r in rows)
    packed = Counter(s for r in rows for s in _segments(r))
    assert packed == Counter(tuple(e.input_ids) for e in examples)  # every example exactly once
    for r in rows:
        if r.num_pad:
            assert set(r.input_ids[-r.num_pad:].tolist()) == {tok.pad_token_id}
            assert set(r.labels[-r.num_pad:].tolist()) == {IGNORE_INDEX}
    stats = packing_stats(rows)
    assert stats["examples"] == len(examples) and stats["tokens"] == 256 * len(rows)
    assert stats["pad_tokens"] == sum(r.num_pad for r in rows)
    assert 0.0 < stats["padding_share"] < 0.1, stats  # best-fit decreasing leaves little room
    assert stats["label_tokens"] == sum(sum(x != IGNORE_INDEX for x in e.labels) for e in examples)
    again = pack_examples(examples, 256, seed=0, pad_id=tok.pad_token_id)
    assert all(torch.equal(a.input_ids, b.input_ids) and a.seq_lens == b.seq_lens for a, b in zip(rows, again, strict=True))
    other = pack_examples(examples, 256, seed=1, pad_id=tok.pad_token_id)
    assert [r.input_ids.tolist() for r in other] != [r.input_ids.tolist() for r in rows]
    with pytest.raises(ConfigError, match="row_length"):
        pack_examples(examples, 64, seed=0)


def test_collate_and_epoch_order_resume(examples, tok) -> None:
    from accelerate.data_loader import skip_first_batches

    rows = pack_examples(examples, 256, seed=0, pad_id=tok.pad_token_id)
    batch = collate_packed(rows[:3])
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (3, 256) for k in ("input_ids", "labels", "position_ids")}
    assert collate_packed(rows[:2], attention="mask")["attention_mask"].shape == (2, 1, 256, 256)
    assert forward_kwargs(batch)["use_cache"] is False and "labels" not in forward_kwargs(batch)
    empty = make_row([Example([1, 2, 3], [IGNORE_INDEX] * 3)], 8)
    with pytest.raises(ValueError, match="no label tokens"):
        collate_packed([empty])

    assert sorted(epoch_order(50, 7, 2)) == list(range(50)) and epoch_order(50, 7, 2) == epoch_order(50, 7, 2)
    assert epoch_order(50, 7, 2) != epoch_order(50, 7, 3)
    sampler = EpochSampler(len(rows), seed=7)
    loader = torch.utils.data.DataLoader(PackedDataset(rows), batch_size=4, sampler=sampler, collate_fn=collate_packed)
    sampler.set_epoch(1)
    full = [b["input_ids"] for b in loader]
    resumed = [b["input_ids"] for b in skip_first_batches(loader, 3)]  # data position (epoch 1, batch 3)
    assert len(resumed) == len(full) - 3 and all(torch.equal(a, b) for a, b in zip(full[3:], resumed, strict=True))


# --- isolation: a tune's logits do not depend on what shares its row -------------------------------------


def _tiny_llama(vocab_size: int, impl: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    model = LlamaForCausalLM(config).eval()
    model.config._attn_implementation = impl
    return model


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_tunes_do_not_attend_to_each_other(examples, tok, impl: str) -> None:
    model = _tiny_llama(len(tok), impl)
    a, b, c = examples[0], examples[5], examples[9]
    length = len(a) + len(b) + len(c) + 7
    pad = tok.pad_token_id
    rows = {"alone": (make_row([a], length, pad_id=pad), 0), "after": (make_row([b, a], length, pad_id=pad), len(b)),
            "before": (make_row([a, c], length, pad_id=pad), 0), "middle": (make_row([b, a, c], length, pad_id=pad), len(b))}
    with torch.no_grad():
        ref = model(torch.tensor([a.input_ids])).logits[0]  # (len(a), V): the tune on its own
        pad_ref = model(torch.full((1, 7 + len(b) + len(c)), pad)).logits[0]
        for attention in ("position_ids", "mask"):
            for name, (row, start) in rows.items():
                batch = collate_packed([row], attention=attention)
                logits = model(**forward_kwargs(batch)).logits[0]
                torch.testing.assert_close(logits[start:start + len(a)], ref, atol=1e-5, rtol=0, msg=f"{attention} {name}")
                if name == "alone":  # the pad segment sees only pads: nothing real leaks into it either
                    torch.testing.assert_close(logits[len(a):], pad_ref, atol=1e-5, rtol=0)
        # The trap this module documents: without use_cache=False, transformers 5.24 builds a cache,
        # skips packed-sequence detection, and the tunes attend to each other.
        batch = collate_packed([rows["after"][0]])
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        assert (leaky[len(b):len(b) + len(a)] - ref).abs().max() > 1e-3
        # ... while the 4D mask is honoured whatever use_cache is
        masked = collate_packed([rows["after"][0]], attention="mask")
        honoured = model(input_ids=masked["input_ids"], position_ids=masked["position_ids"],
                         attention_mask=masked["attention_mask"]).logits[0]
        torch.testing.assert_close(honoured[len(b):len(b) + len(a)], ref, atol=1e-5, rtol=0)

        # The loss of a packed row is the sum of its tunes' losses on their own.
        def alone_loss(example: Example) -> torch.Tensor:
            return token_sum_cross_entropy(model(torch.tensor([example.input_ids])).logits,
                                           torch.tensor([example.labels]))[0]

        batch = collate_packed([rows["middle"][0]])
        packed_sum, packed_count = token_sum_cross_entropy(model(**forward_kwargs(batch)).logits, batch["labels"])
        expected = alone_loss(a) + alone_loss(b) + alone_loss(c)
        torch.testing.assert_close(packed_sum, expected, atol=1e-4, rtol=1e-6)
        assert int(packed_count) == sum(sum(x != IGNORE_INDEX for x in e.labels) for e in (a, b, c))


def test_varlen_offsets_keep_packed_tunes_apart(examples, tok) -> None:
    """``attention="varlen"`` with ``torch_varlen``: no mask, the tunes' offsets in the flattened batch. A tune
    between two others, or alone with padding, gives the logits it has on its own."""
    from abcgen.training.attention import register_torch_varlen

    register_torch_varlen()
    model = _tiny_llama(len(tok), "torch_varlen")
    a, b, c = examples[0], examples[5], examples[9]
    length = len(a) + len(b) + len(c) + 7
    pad = tok.pad_token_id
    batch = collate_packed([make_row([b, a, c], length, pad_id=pad), make_row([a], length, pad_id=pad)],
                           attention="varlen")
    assert "attention_mask" not in batch and batch["cu_seq_lens_q"].tolist()[-1] == 2 * length
    with torch.no_grad():
        ref = model(torch.tensor([a.input_ids])).logits[0]
        logits = model(**forward_kwargs(batch)).logits
    torch.testing.assert_close(logits[0, len(b):len(b) + len(a)], ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1, :len(a)], ref, atol=1e-5, rtol=0)
