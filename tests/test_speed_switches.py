"""Every speed switch leaves the training loss (and its gradients) unchanged: packed-attention paths,
``optim.loss_impl=hidden`` (with LoRA and trainable token rows), ``model.compile``, fused AdamW, pinned
memory, the vocabulary padded to 64 -- on a tiny Llama and real tunes packed into rows, plus
``train/finetune.py`` end to end with the switches on.

Tolerances: float64 models compare at 1e-9 (the paths do the same arithmetic in another order), except
``eager`` attention at 1e-5 (its softmax runs in float32 whatever the model's dtype); float32 optimiser
updates at 1e-6; the end-to-end float32 runs at 1e-4 relative on every step's loss.
Compilation is tested with the ``aot_eager`` backend (dynamo tracing + AOT autograd, seconds on CPU):
``inductor`` on this 2-core CPU takes ~45 s to compile even a 2-layer model cold, so its numbers come
from ``benchmarks/train_throughput.py`` instead (CPU mode, and the GPU check).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_base_tokenizer

from abcgen.controls import ControlVocabulary
from abcgen.corpus.labels import header_labels
from abcgen.errors import ConfigError
from abcgen.notation.tune import normalise_abc, parse_tune
from abcgen.tokenization.extend import build_music_tokenizer
from abcgen.tokenization.units import load_default_spec
from abcgen.training import attention, config, loss, speed
from abcgen.training.attention import (
    packed_attention_path,
    prepare_attention_implementation,
    register_torch_varlen,
)
from abcgen.training.config import LoraSettings, ModelSettings, TrainConfig
from abcgen.training.data import build_examples, collate_packed, forward_kwargs, pack_examples
from abcgen.training.loss import model_token_loss
from abcgen.training.model import apply_lora, scratch_model
from abcgen.training.speed import check_compile_supported, compile_model, decoder_layers, resolve_pin_memory

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
CONDITIONS = ("key", "meter", "rhythm")
ROW = 192  # tokens per packed row; examples are at most 96, so rows hold several tunes
EXACT = {"atol": 1e-9, "rtol": 1e-9}  # float64: same arithmetic, another order
EAGER = {"atol": 1e-5, "rtol": 1e-4}  # transformers' eager attention takes its softmax in float32


# --- real tunes, packed -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def music(real_tunes: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The music tokenizer over a tiny base, its added token ids, and three packed rows of real tunes,
    each with two tunes or more (a row of one tune would test nothing about isolation)."""
    rows = []
    for text in real_tunes[::6]:
        try:
            abc = normalise_abc(text)
        except ValueError:
            continue
        rows.append({"abc": abc, **header_labels(parse_tune(abc))})
    vocab = ControlVocabulary.from_rows(rows, min_count=2)
    base = tiny_base_tokenizer(tmp_path_factory.mktemp("base"))
    tok = build_music_tokenizer(base, load_default_spec(), vocab)
    examples, _ = build_examples(rows, tok, vocab, max_length=96, conditions=CONDITIONS)
    packed = pack_examples(examples, ROW, seed=0, pad_id=tok.pad_token_id)
    shared = [r for r in packed if len(r.seq_lens) - bool(r.num_pad) >= 2]  # rows of two tunes or more
    assert len(shared) >= 3
    return {"tok": tok, "base": base, "new_ids": list(range(len(base), len(tok))), "rows": shared[:3]}


def _llama(vocab_size: int, *, tied: bool = True, attn: str = "sdpa", dtype: torch.dtype = torch.float64):
    """A tiny Llama (grouped-query attention: 4 query heads, 2 key/value heads), fixed random init."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if attn == attention.TORCH_VARLEN:
        register_torch_varlen()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=-(-vocab_size // 64) * 64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=tied, attn_implementation=attn)
    model = LlamaForCausalLM(cfg).to(dtype)
    if not tied:
        with torch.no_grad():
            model.get_output_embeddings().weight.normal_(0.0, 0.5)
    return model


def _loss_and_grads(model, batch: dict, impl: str = "logits", chunk_size: int = 1024):
    model.zero_grad(set_to_none=True)
    total, count = model_token_loss(model, forward_kwargs(batch), batch["labels"], impl=impl, chunk_size=chunk_size)
    total.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return total.detach(), int(count), grads


def _assert_same(a, b, tolerance: dict[str, float]) -> None:
    torch.testing.assert_close(a[0], b[0], **tolerance)
    assert a[1] == b[1]
    assert a[2].keys() == b[2].keys() and a[2]
    for name in a[2]:
        torch.testing.assert_close(a[2][name], b[2][name], **tolerance, msg=lambda m, name=name: f"{name}: {m}")


def test_switch_choices_agree_with_the_config() -> None:
    assert config.PACKED_ATTENTION == attention.PACKED_ATTENTION
    assert config.COMPILE_MODES == speed.COMPILE_MODES and config.COMPILE_BACKENDS == speed.COMPILE_BACKENDS
    assert config.PIN_MEMORY == speed.PIN_MEMORY and config.LOSS_IMPLEMENTATIONS == loss.LOSS_IMPLEMENTATIONS
    assert set(attention.ISOLATING_PATHS) == set(config.ATTN_IMPLEMENTATIONS) | {"flash_attention_3"}
    defaults = TrainConfig()
    assert (defaults.model.compile, defaults.optim.loss_impl, defaults.data.packed_attention,
            defaults.data.pin_memory) == ("none", "logits", "auto", "auto")
    bad = TrainConfig()
    bad.model.compile, bad.optim.loss_impl, bad.data.pin_memory, bad.optim.loss_chunk_size = "all", "x", "yes", 0
    problems = "\n".join(bad.problems())
    for key in ("model.compile", "optim.loss_impl", "data.pin_memory", "optim.loss_chunk_size"):
        assert key in problems


# --- packed attention ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("impl", "path"), [("sdpa", "position_ids"), ("eager", "position_ids"), ("eager", "mask"),
                                             ("torch_varlen", "varlen"), ("torch_varlen", "position_ids")])
def test_packed_attention_paths_give_the_same_loss_and_gradients(music, impl: str, path: str) -> None:
    """Reference: sdpa with the explicit dense block-causal mask. ``torch_varlen`` + ``position_ids`` is
    the attention's own fallback (segments read from the position ids when no offsets are given)."""
    rows = music["rows"]
    reference = _loss_and_grads(_llama(len(music["tok"])), collate_packed(rows, attention="mask",
                                                                           mask_dtype=torch.float64))
    batch = collate_packed(rows, attention=path, mask_dtype=torch.float64)
    _assert_same(_loss_and_grads(_llama(len(music["tok"]), attn=impl), batch), reference,
                 EAGER if impl == "eager" else EXACT)


def test_varlen_offsets_are_used_and_cover_every_tune(music) -> None:
    rows = music["rows"]
    batch = collate_packed(rows, attention="varlen")
    lengths = [n for r in rows for n in r.seq_lens]
    assert batch["cu_seq_lens_q"].dtype == torch.int32 and batch["cu_seq_lens_q"].tolist()[-1] == 3 * ROW
    assert batch["cu_seq_lens_q"].diff().tolist() == lengths and batch["max_length_q"] == max(lengths)
    model = _llama(len(music["tok"]), attn="torch_varlen")
    one_segment_per_row = {**batch, **attention.varlen_kwargs([[ROW]] * 3)}  # tunes would see each other
    with torch.no_grad():
        isolated = model_token_loss(model, forward_kwargs(batch), batch["labels"])[0]
        leaky = model_token_loss(model, forward_kwargs(one_segment_per_row), batch["labels"])[0]
    assert abs(float(isolated - leaky)) > 1e-3


@pytest.mark.parametrize("signature", ["torch 2.10", "torch >= 2.11"])
def test_torch_varlen_calls_the_kernel_as_each_torch_version_expects(music, monkeypatch, signature: str) -> None:
    """The CUDA branch without a GPU: a stand-in for ``varlen_attn`` with the signature of each torch
    version (2.10: ``is_causal``, no GQA, no scale; later: ``window_size``, ``enable_gqa``, ``scale``),
    computing causal attention per segment of the flattened tokens. Same loss and gradients as the
    reference path: the flattening, the offsets, the GQA heads and the scale reach the kernel right."""
    calls = []

    def kernel(q, k, v, cu_q, cu_k, max_q, max_k, **options):  # (tokens, heads, head_dim) each
        calls.append(options)
        assert options.get("is_causal") is True or options.get("window_size") == (-1, 0)
        assert torch.equal(cu_q, cu_k) and max_q == max_k == int(cu_q.diff().max())
        if options.get("enable_gqa"):
            k, v = k.repeat_interleave(q.shape[1] // k.shape[1], 1), v.repeat_interleave(q.shape[1] // v.shape[1], 1)
        assert k.shape == q.shape  # GQA heads expanded, by the kernel or before it
        out = torch.empty_like(q)
        for start, end in zip(cu_q[:-1].tolist(), cu_q[1:].tolist(), strict=True):
            segment = [x[start:end].transpose(0, 1) for x in (q, k, v)]
            out[start:end] = F.scaled_dot_product_attention(*segment, is_causal=True,
                                                            scale=options.get("scale")).transpose(0, 1)
        return out

    fixed = {"is_causal": True} if signature == "torch 2.10" else {"window_size": (-1, 0)}
    gqa_and_scale = signature != "torch 2.10"
    batch = collate_packed(music["rows"], attention="varlen")
    model = _llama(len(music["tok"]), attn="torch_varlen")
    reference = _loss_and_grads(model, batch)
    monkeypatch.setattr(attention, "_kernel_for", lambda query: (kernel, fixed, gqa_and_scale, gqa_and_scale))
    _assert_same(_loss_and_grads(model, batch), reference, EXACT)
    assert len(calls) == 2 and all(("enable_gqa" in c) == ("scale" in c) == gqa_and_scale for c in calls)


def test_each_attention_implementation_gets_an_isolating_path() -> None:
    assert packed_attention_path("sdpa") == "position_ids"
    assert packed_attention_path("flex_attention") == "position_ids"  # block-sparse BlockMask
    assert packed_attention_path("torch_varlen") == packed_attention_path("flash_attention_2") == "varlen"
    assert packed_attention_path("sdpa", "mask") == "mask"
    with pytest.raises(ConfigError, match="does not keep tunes apart"):
        packed_attention_path("flash_attention_2", "position_ids")  # transformers: packing only with batch 1
    with pytest.raises(ConfigError, match="does not keep tunes apart"):
        packed_attention_path("flex_attention", "mask")
    with pytest.raises(ConfigError, match="not known"):
        packed_attention_path("paged|eager")
    with pytest.raises(ConfigError, match="no backward pass on CPU"):
        prepare_attention_implementation("flex_attention", "cpu")
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ConfigError, match="flash-attn"):
            prepare_attention_implementation("flash_attention_2", "cuda")
    prepare_attention_implementation("torch_varlen", "cpu")  # the reference path; registers it
    from transformers import AttentionInterface

    assert attention.TORCH_VARLEN in AttentionInterface._global_mapping


def test_torch_varlen_generates_like_sdpa_with_a_padding_mask(music) -> None:
    """Generation (left padding, a KV cache) goes through SDPA's path: the same tokens as sdpa."""
    ids = music["rows"][0].input_ids[:12].repeat(2, 1)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    out = {}
    for impl in ("sdpa", "torch_varlen"):
        out[impl] = _llama(len(music["tok"]), attn=impl, dtype=torch.float32).generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(out["sdpa"], out["torch_varlen"])


# --- the loss from hidden states ------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_hidden_loss_equals_logits_loss_with_lora_and_trainable_token_rows(music, tied: bool) -> None:
    """Through peft: LoRA on every projection, the added token rows trained (``trainable_token_indices``,
    on the untied head too). Same loss and gradients, small chunks so several are used."""
    model = apply_lora(_llama(len(music["tok"]), tied=tied), LoraSettings(r=4, alpha=8, dropout=0.0),
                       music["new_ids"])
    batch = collate_packed(music["rows"])
    via_logits = _loss_and_grads(model, batch, "logits")
    via_hidden = _loss_and_grads(model, batch, "hidden", chunk_size=37)
    _assert_same(via_hidden, via_logits, EXACT)
    assert any("trainable_tokens" in name for name in via_hidden[2])  # the token rows got gradients
    with torch.no_grad():  # evaluation: the same without a graph
        torch.testing.assert_close(model_token_loss(model, forward_kwargs(batch), batch["labels"], impl="hidden")[0],
                                   via_logits[0], **EXACT)


def test_hidden_loss_needs_a_decoder_and_a_head() -> None:
    class Bare(torch.nn.Module):
        def forward(self, **kwargs):
            return None

    with pytest.raises(ConfigError, match="loss_impl=logits"):
        model_token_loss(Bare(), {}, torch.zeros(1, 4, dtype=torch.long), impl="hidden")
    with pytest.raises(ConfigError, match="loss_impl"):
        model_token_loss(Bare(), {}, torch.zeros(1, 4, dtype=torch.long), impl="fused")


# --- compile ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["regional", "model"])
@pytest.mark.slow
def test_compiled_model_gives_the_same_loss_and_gradients(music, mode: str) -> None:
    torch._dynamo.reset()
    batch = collate_packed(music["rows"])

    def lora_model():
        return apply_lora(_llama(len(music["tok"])), LoraSettings(r=4, alpha=8, dropout=0.0), music["new_ids"])

    reference = _loss_and_grads(lora_model(), batch, "hidden")
    compiled = compile_model(lora_model(), mode, backend="aot_eager")
    if mode == "regional":
        assert all(layer._compiled_call_impl is not None for layer in decoder_layers(compiled))
    else:
        assert compiled._compiled_call_impl is not None
    _assert_same(_loss_and_grads(compiled, batch, "hidden"), reference, EXACT)
    _assert_same(_loss_and_grads(compiled, batch, "hidden"), reference, EXACT)  # a second step, same graph
    assert compile_model(lora_model(), "none") is not None


def test_compile_settings_are_checked_before_anything_is_built() -> None:
    check_compile_supported("none", "inductor", "cpu")
    check_compile_supported("regional", "aot_eager", "cpu")
    with pytest.raises(ConfigError, match="model.compile"):
        check_compile_supported("everything", "inductor", "cpu")
    with pytest.raises(ConfigError, match="compile_backend"):
        check_compile_supported("model", "tensorrt", "cpu")
    with pytest.raises(ConfigError, match="compile model"):
        decoder_layers(torch.nn.Linear(2, 2))


# --- fused AdamW, pinned memory, vocabulary padding -----------------------------------------------------


def _finetune_module():
    spec = importlib.util.spec_from_file_location("abcgen_finetune_under_test", ROOT / "train" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fused_adamw_makes_the_same_update(music) -> None:
    finetune = _finetune_module()
    batch = collate_packed(music["rows"])
    params = []
    for fused in (False, True):
        cfg = TrainConfig()
        cfg.optim.fused, cfg.optim.weight_decay, cfg.optim.warmup_steps, cfg.optim.max_steps = fused, 0.01, 1, 10
        model = apply_lora(_llama(len(music["tok"]), dtype=torch.float32), LoraSettings(r=4, dropout=0.0),
                           music["new_ids"])
        optimizer, scheduler = finetune.make_optimizer(cfg, model)
        assert bool(optimizer.defaults["fused"]) is fused
        for _ in range(3):
            model_token_loss(model, forward_kwargs(batch), batch["labels"])[0].backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        params.append([p.detach().clone() for p in model.parameters() if p.requires_grad])
    for unfused, fused in zip(*params, strict=True):
        torch.testing.assert_close(fused, unfused, atol=1e-6, rtol=1e-5)


def test_pin_memory_is_on_only_with_cuda(caplog) -> None:
    cuda = torch.cuda.is_available()
    assert resolve_pin_memory("auto") is cuda and resolve_pin_memory("never") is False
    assert resolve_pin_memory("always") is cuda
    if not cuda:
        assert "no CUDA device" in caplog.text
    with pytest.raises(ConfigError, match="data.pin_memory"):
        resolve_pin_memory("true")


def test_vocabulary_stays_padded_to_a_multiple_of_64(music) -> None:
    from abcgen.tokenization.embeddings import resize_and_init_embeddings

    tok = music["tok"]
    settings = ModelSettings(method="scratch")
    model = scratch_model(settings, len(tok), tok.pad_token_id)
    assert model.get_input_embeddings().weight.shape[0] == -(-len(tok) // 64) * 64 > len(tok) - 64
    grown = _llama(len(music["base"]), tied=False, dtype=torch.float32)  # the base model, grown to the music tokenizer
    resize_and_init_embeddings(grown, tok, music["base"], pad_to_multiple_of=64)
    assert grown.get_input_embeddings().weight.shape[0] % 64 == 0
    assert grown.get_output_embeddings().weight.shape[0] % 64 == 0


# --- end to end --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from abcgen.corpus.build import BuildConfig, build_corpus
    from abcgen.tokenization.base_bpe import train_base_from_corpus
    from abcgen.tokenization.build import tokenizer_build_command

    root = tmp_path_factory.mktemp("speed-e2e")
    build_corpus(BuildConfig(sources=["music21:miscFolk"], out=root / "corpus", workers=1), progress=False)
    train_base_from_corpus(root / "corpus", root / "bpe", vocab_size=600)
    tokenizer_build_command(str(root / "bpe"), root / "corpus", root / "tok", units_spec="shipped")
    return root / "corpus", root / "tok"


def _run(corpus: Path, tok: Path, out: Path, *switches: str) -> list[float]:
    command = [sys.executable, str(ROOT / "train" / "finetune.py"), "--config",
               str(ROOT / "train" / "configs" / "tiny-cpu.yaml"), "--data.corpus", str(corpus), "--model.tokenizer",
               str(tok), "--checkpoint.output_dir", str(out), "--optim.max_steps", "5", "--logging.eval_every", "5",
               "--logging.num_samples", "0", "--data.max_train_tunes", "120", *switches]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((out / "final" / "training_summary.json").read_text())
    return [h["loss"] for h in summary["history"]] + [summary["eval"]["eval_loss"]]


@pytest.mark.slow
def test_finetune_with_every_switch_on_trains_the_same(corpus_and_tokenizer, tmp_path: Path) -> None:
    corpus, tok = corpus_and_tokenizer
    default = _run(corpus, tok, tmp_path / "default")
    switched = _run(corpus, tok, tmp_path / "switched", "--model.attn_implementation", "torch_varlen",
                    "--data.packed_attention", "varlen", "--optim.loss_impl", "hidden", "--optim.loss_chunk_size", "50",
                    "--model.compile", "regional", "--model.compile_backend", "aot_eager", "--optim.fused", "true",
                    "--data.pin_memory", "always", "--data.num_workers", "1")
    assert len(default) == len(switched) == 6  # 5 steps and the evaluation
    assert switched == pytest.approx(default, rel=1e-4)
    assert default[-2] < default[0]  # it trains
