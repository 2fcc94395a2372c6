"""MusicLSTM: packing without cross-talk, the recurrent cache, save/load, Auto classes, the training entry point
and the abc-generation pipeline, on tiny models built here (offline, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from tiny_models import tiny_base_tokenizer

import abcgen  # noqa: F401  -- registers the LSTM with the Auto classes and the pipeline task
from abcgen.errors import ConfigError
from abcgen.models.lstm import MusicLSTM, MusicLSTMConfig
from abcgen.notation.remi import abc2midi_check
from abcgen.notation.tune import normalise_tune
from abcgen.training.config import load_config, parse_args
from abcgen.training.data import ATTENTION, Example, collate_packed, forward_kwargs, make_row
from abcgen.training.loss import model_token_loss, token_sum_cross_entropy

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
VOCAB = 96


def tiny_lstm(seed: int = 0, **overrides: object) -> MusicLSTM:
    """A 2-layer LSTM, hidden 24, embeddings 16 (so the tied head goes through the projection), in eval mode.
    ``initializer_range`` 0.3 gives logits of order 1, and random LSTM biases make even a zero input move the
    state, so that a wrong state shows in the comparisons."""
    torch.manual_seed(seed)
    settings = dict(vocab_size=VOCAB, embedding_size=16, hidden_size=24, num_hidden_layers=2, dropout=0.0,
                    initializer_range=0.3, pad_token_id=0, eos_token_id=1)
    settings.update(overrides)
    model = MusicLSTM(MusicLSTMConfig(**settings)).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.bias_hh_l0.normal_(0.0, 0.3)
    return model


def ids(seed: int, length: int) -> torch.Tensor:
    """``(1, length)`` random token ids that avoid pad (0) and EOS (1)."""
    return torch.randint(2, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tune_ids(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]) -> list[list[int]]:
    """Token ids of the openings (60 tokens) of real tunes under a tiny byte-level BPE."""
    tokenizer = tiny_base_tokenizer(tmp_path_factory.mktemp("tok"))
    return [tokenizer(text)["input_ids"][:60] for text in real_tunes[:12]]


def packed_batch(tunes: list[list[int]], row_length: int, attention: str = "position_ids") -> dict[str, torch.Tensor]:
    """Two tunes per row (then padding), as train/finetune.py's collator gives them."""
    rows = [make_row([Example(a, [-100] + a[1:]), Example(b, [-100] + b[1:])], row_length)
            for a, b in zip(tunes[::2], tunes[1::2], strict=True)]
    return collate_packed(rows, attention=attention)


def test_loss_decreases_on_a_fixed_batch(tune_ids: list[list[int]]) -> None:
    model = tiny_lstm(vocab_size=704, dropout=0.1).train()
    batch = packed_batch(tune_ids, 128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        total, count = token_sum_cross_entropy(model(**forward_kwargs(batch)).logits, batch["labels"])
        loss = total / count
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses  # ln(704) = 6.6 at the start


def test_a_tune_gives_the_same_logits_alone_and_packed() -> None:
    model = tiny_lstm()
    first, second = ids(1, 9), ids(2, 6)
    row = torch.cat([first, second, torch.zeros(1, 5, dtype=torch.long)], dim=1)  # 2 tunes + a pad segment
    restart = torch.cat([torch.arange(9), torch.arange(6), torch.arange(5)]).unsqueeze(0)
    with torch.no_grad():
        packed = model(row, position_ids=restart, use_cache=False).logits
        alone = model(second, use_cache=False).logits
        torch.testing.assert_close(packed[:, 9:15], alone)
        torch.testing.assert_close(packed[:, :9], model(first, use_cache=False).logits)
        layers_packed = model(row, position_ids=restart, output_hidden_states=True).hidden_states
        layers_alone = model(second, output_hidden_states=True).hidden_states
        assert [tuple(h.shape) for h in layers_alone] == [(1, 6, 16), (1, 6, 24), (1, 6, 24)]  # embeddings, 2 layers
        for packed_layer, alone_layer in zip(layers_packed, layers_alone, strict=True):
            torch.testing.assert_close(packed_layer[:, 9:15], alone_layer)
        # The same row without restarts carries the first tune into the second: the comparison can fail.
        carried = model(row, position_ids=torch.arange(20).unsqueeze(0), use_cache=False).logits
        assert (carried[:, 9:15] - alone).abs().max() > 1e-2


def test_the_state_after_a_packed_row_is_its_last_tunes_state() -> None:
    # Two rows whose second tunes differ in length: the cache keeps each row's state after its last tune,
    # so that decoding continues that tune as if it had been alone.
    model = tiny_lstm()
    tunes = [ids(1, 9), ids(2, 6), ids(3, 4), ids(4, 11)]
    rows = torch.cat([torch.cat(tunes[:2], dim=1), torch.cat(tunes[2:], dim=1)])
    positions = torch.stack([torch.cat([torch.arange(9), torch.arange(6)]), torch.cat([torch.arange(4), torch.arange(11)])])
    next_tokens = torch.tensor([[5], [7]])
    with torch.no_grad():
        cache = model(rows, position_ids=positions, use_cache=True).cache
        step = model(next_tokens, cache=cache, position_ids=torch.tensor([[6], [11]])).logits[:, 0]
        for row, last in enumerate((tunes[1], tunes[3])):
            alone = model(torch.cat([last, next_tokens[row:row + 1]], dim=1), use_cache=False).logits[0, -1]
            torch.testing.assert_close(step[row], alone)


def test_packed_rows_from_the_collator_match_tunes_alone_in_every_attention_form(tune_ids: list[list[int]]) -> None:
    model = tiny_lstm(vocab_size=704)
    tunes = [t[:40] for t in tune_ids[:4]]
    with torch.no_grad():
        for attention in ATTENTION:  # whatever the collator adds (a 4-D mask, varlen offsets), tunes stay apart
            kwargs = forward_kwargs(packed_batch(tunes, 96, attention=attention))
            variants = [kwargs]
            if "attention_mask" in kwargs:  # the 4-D block mask alone must mark the tune boundaries too
                variants.append({key: value for key, value in kwargs.items() if key != "position_ids"})
            for variant in variants:
                logits = model(**variant).logits
                for row, (a, b) in enumerate(zip(tunes[::2], tunes[1::2], strict=True)):
                    torch.testing.assert_close(logits[row, :len(a)], model(torch.tensor([a])).logits[0])
                    torch.testing.assert_close(logits[row, len(a):len(a) + len(b)],
                                               model(torch.tensor([b])).logits[0])


def test_incremental_decoding_with_the_state_matches_a_full_forward() -> None:
    from transformers import DynamicCache

    model = tiny_lstm()
    tokens = ids(3, 12)
    with torch.no_grad():
        full = model(tokens, use_cache=False).logits
        out = model(tokens[:, :5], use_cache=True)
        steps, cache = [out.logits], out.cache
        for position in range(5, 12):
            out = model(tokens[:, position:position + 1], cache=cache, position_ids=torch.tensor([[position]]))
            steps.append(out.logits)
            cache = out.cache
    assert cache.is_linear == [True, True]  # transformers' fixed-size recurrent-state layers, one per LSTM layer
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    with torch.no_grad():  # a 4-D mask (B, 1, T, past + T) that lets the new token see the cached ones continues too
        prefix = model(tokens[:, :5], use_cache=True)
        step = model(tokens[:, 5:6], cache=prefix.cache, attention_mask=torch.ones(1, 1, 1, 6, dtype=torch.bool))
        torch.testing.assert_close(step.logits[:, 0], full[:, 5])
        with pytest.raises(ConfigError, match="cannot hold LSTM states"):
            model(tokens[:, 5:6], cache=DynamicCache())


def test_generate_greedy_beams_padding_and_several_sequences() -> None:
    model = tiny_lstm()
    prompt = ids(4, 7)
    greedy = model.generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=0)
    sequence = prompt
    with torch.no_grad():  # greedy decoding by hand, re-reading the whole sequence every step
        for _ in range(10):
            next_token = model(sequence, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], dim=1)
    assert torch.equal(greedy, sequence)
    beams = model.generate(prompt, max_new_tokens=10, num_beams=3, do_sample=False, pad_token_id=0)
    assert torch.equal(beams, model.generate(prompt, max_new_tokens=10, num_beams=3, do_sample=False,
                                             pad_token_id=0, use_cache=False))
    # A left-padded batch gives each row what it gives alone.
    short = ids(5, 4)
    batch = torch.cat([torch.cat([torch.full((1, 3), 9), short], dim=1), prompt])  # masked: any token id
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    greedy_logits = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "return_dict_in_generate": True,
                     "output_logits": True}
    together = model.generate(batch, attention_mask=mask, **greedy_logits)
    alone = model.generate(short, **greedy_logits)
    assert torch.equal(together.sequences[0, 3:], alone.sequences[0])
    assert torch.equal(together.sequences[1], greedy[0, :13])
    for step_together, step_alone in zip(together.logits, alone.logits, strict=True):
        torch.testing.assert_close(step_together[0], step_alone[0])
    torch.manual_seed(0)
    sampled = model.generate(torch.cat([prompt, prompt]), max_new_tokens=8, do_sample=True, num_return_sequences=3,
                             pad_token_id=0)
    assert sampled.shape == (6, 15) and len({tuple(row) for row in sampled[:, 7:].tolist()}) > 1


def test_save_reload_gives_identical_logits_tied_and_untied(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    tokens = ids(6, 10)
    for name, overrides in (("tied", {}), ("untied", {"tie_word_embeddings": False, "embedding_size": 24})):
        model = tiny_lstm(**overrides)
        model.save_pretrained(tmp_path / name)
        assert (tmp_path / name / "model.safetensors").is_file()
        assert AutoConfig.from_pretrained(tmp_path / name).model_type == "abcgen_lstm"
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / name).eval()
        assert type(reloaded) is MusicLSTM
        assert (reloaded.lm_head.weight is reloaded.model.embed_tokens.weight) == (name == "tied")
        assert (reloaded.model.projection is None) == (name == "untied")  # a projection only when 24 != 16
        with torch.no_grad():
            assert torch.equal(reloaded(tokens).logits, model(tokens).logits)
        loaded_bf16 = AutoModelForCausalLM.from_pretrained(tmp_path / name, dtype=torch.bfloat16)
        with torch.no_grad():
            assert loaded_bf16(tokens).logits.dtype == torch.bfloat16


def test_embeddings_resize_and_stay_tied() -> None:
    model = tiny_lstm()
    tokens = ids(7, 6)
    with torch.no_grad():
        before = model(tokens).logits
    model.resize_token_embeddings(130, pad_to_multiple_of=64)
    assert model.get_input_embeddings().weight.shape == (192, 16) and model.config.vocab_size == 192
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    with torch.no_grad():
        after = model(tokens).logits
    assert after.shape[-1] == 192
    torch.testing.assert_close(after[..., :VOCAB], before)  # the old rows are kept
    replacement = torch.nn.Embedding(192, 16)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement


def test_the_hidden_state_loss_equals_the_logits_loss(tune_ids: list[list[int]]) -> None:
    # optim.loss_impl=hidden reads get_decoder()'s output and applies get_output_embeddings() itself.
    model = tiny_lstm(vocab_size=704)
    batch = packed_batch(tune_ids[:4], 128)
    with torch.no_grad():
        expected, count = model_token_loss(model, forward_kwargs(batch), batch["labels"], impl="logits")
        total, hidden_count = model_token_loss(model, forward_kwargs(batch), batch["labels"], impl="hidden")
        hidden = model.get_decoder()(**forward_kwargs(batch)).last_hidden_state
    assert hidden.shape == (2, 128, 16) and int(count) == int(hidden_count)
    torch.testing.assert_close(total, expected)


def test_gradient_checkpointing_and_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="does not support activation checkpointing"):
        tiny_lstm().activation_checkpointing_enable()
    with pytest.raises(ConfigError, match="gradient_checkpointing=true is not supported by architecture=lstm"):
        parse_args(["--model.method", "scratch", "--model.architecture", "lstm", "--model.tokenizer", "tok",
                    "--data.corpus", "c", "--model.gradient_checkpointing", "true"])
    with pytest.raises(ConfigError, match=r"model.lstm.hidden_size=0 must be >= 1"):
        parse_args(["--model.method", "scratch", "--model.architecture", "lstm", "--model.tokenizer", "tok",
                    "--data.corpus", "c", "--model.lstm.hidden_size", "0"])
    with pytest.raises(StrictDataclassClassValidationError, match="dropout=1.5 must be in"):
        MusicLSTMConfig(dropout=1.5)


def test_shipped_lstm_cpu_config() -> None:
    cfg = load_config(ROOT / "train" / "configs" / "lstm-cpu.yaml")
    assert (cfg.model.method, cfg.model.architecture) == ("scratch", "lstm")
    assert cfg.data.corpus == "runs/quickstart/corpus-finetune"
    assert cfg.data.conditions == ["rhythm", "key", "meter"]  # the same requests as the LoRA model's


@pytest.mark.slow
def test_auto_classes_work_when_transformers_is_imported_first_and_cost_tokenizer_users_nothing(
        tmp_path: Path) -> None:
    folder = tmp_path / "lstm"
    tiny_lstm().save_pretrained(folder)
    code = (
        "import sys\n"
        "from transformers import AutoTokenizer\n"  # imports transformers' auto-config and auto-model modules
        "import abcgen\n"
        "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
        # registered at once, without importing the model code (transformers.modeling_utils, ~2 s)
        "print('abcgen_lstm' in CONFIG_MAPPING, 'transformers.modeling_utils' in sys.modules)\n"
        "from transformers import AutoModelForCausalLM\n"
        f"print(type(AutoModelForCausalLM.from_pretrained({str(folder)!r})).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "False", "MusicLSTM"]


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/finetune.py, a real subprocess, trains a tiny LSTM on a small corpus for 12 steps."""
    from abcgen.corpus.build import BuildConfig, build_corpus
    from abcgen.tokenization.base_bpe import train_base_from_corpus
    from abcgen.tokenization.build import tokenizer_build_command

    root = tmp_path_factory.mktemp("lstm-run")
    build_corpus(BuildConfig(sources=["music21:miscFolk"], out=root / "corpus", workers=1), progress=False)
    train_base_from_corpus(root / "corpus", root / "bpe", vocab_size=600)
    tokenizer_build_command(str(root / "bpe"), root / "corpus", root / "tok", units_spec="shipped")
    command = [sys.executable, str(ROOT / "train" / "finetune.py"), "--config", str(ROOT / "train/configs/tiny-cpu.yaml"),
               "--model.architecture", "lstm", "--model.lstm.embedding_size", "32", "--model.lstm.hidden_size", "64",
               "--model.lstm.num_layers", "2", "--data.corpus", str(root / "corpus"), "--model.tokenizer",
               str(root / "tok"), "--data.conditions", "key,meter", "--optim.lr", "1e-2", "--optim.max_steps", "12",
               "--checkpoint.output_dir", str(root / "run")]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "run" / "final"


@pytest.mark.slow
def test_finetune_trains_an_lstm_that_loads_with_the_auto_classes(trained_folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    summary = json.loads((trained_folder / "training_summary.json").read_text())
    assert summary["steps"] == 12 and summary["final_loss"] < summary["first_loss"]
    assert summary["config"]["model.architecture"] == "lstm" and "eval_loss" in summary["eval"]
    assert summary["samples"] and summary["samples"][0]["abc"].startswith("X:1")  # sampled by generate() in the loop
    model = AutoModelForCausalLM.from_pretrained(trained_folder)
    assert type(model) is MusicLSTM and model.config.hidden_size == 64
    assert model.get_input_embeddings().weight.shape[0] % 64 == 0
    assert summary["parameters"]["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_pipeline_writes_valid_constrained_tunes_from_the_trained_lstm(trained_folder: Path) -> None:
    from transformers import pipeline

    vocabulary = json.loads((trained_folder / "control_vocabulary.json").read_text())["values"]
    key = max(vocabulary["key"], key=vocabulary["key"].get)
    meter = max((m for m in vocabulary["meter"] if m != "other"), key=vocabulary["meter"].get)
    pipe = pipeline("abc-generation", model=str(trained_folder))
    tunes = pipe(key=key, meter=meter, bars=8, num_return_sequences=3, seed=0)
    assert len(tunes) == 3
    for tune in tunes:
        assert tune["valid"], (tune["problems"], tune["abc"])
        assert normalise_tune(tune["abc"]).get("M") == meter and len(tune["bars"]) >= 8
        assert not [line for line in abc2midi_check(tune["abc"]) if "Error" in line], tune["abc"]
