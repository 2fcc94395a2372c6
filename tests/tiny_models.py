"""Tiny tokenizers and models built locally for tests (no network, no downloads).

``tiny_base_tokenizer`` trains a small byte-level BPE (like GPT-2 / Llama-3 / Qwen, the usual bases) on
a fixed English text plus a few real ABC tunes, saves it as an ordinary Hugging Face folder and loads it
back with ``AutoTokenizer``, so tests go through the same loading code as a real hub model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGLISH = """\
The fiddler played a slow air before the reels began. Dance tunes in the Irish tradition are grouped by
rhythm: reels in common time, jigs in six-eight, slip jigs in nine-eight, hornpipes with a dotted swing,
polkas and slides for the sets. A tune usually has two parts, each played twice, and the musicians change
to the next tune without stopping. Collections such as O'Neill's Music of Ireland printed hundreds of them.
Schöne Müllerin is a song cycle; Österreich and Zürich are places with their own folk songs. The quick
brown fox jumps over the lazy dog, and the key of D major has two sharps while G minor has two flats.
"""

ABC = """\
X:1
T:The Enchanted Valley
M:2/4
L:1/16
K:Gm
G3-A (Bcd=e) | f4 (g2dB) | ({d}c3-B) G2-E2 | F4 (D2=E^F) |
G3-A (Bcd=e) | f4 d2-f2 | (g2a2 b2).g2 | {b}(a2g2 f2).d2 |
X:2
T:Cooley's
R:reel
M:4/4
L:1/8
K:Edor
|:D2|EBBA B2 EB|B2 AB dBAG|FDAD BDAD|FDAD dAFD:|
"""


def _hf_tokenizers():
    """The pieces of HF ``tokenizers`` used here. Imported in a block of its own: ruff takes the repo's
    ``tokenizers/`` data folder for a first-party package and would otherwise sort it after ``transformers``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    return Tokenizer, decoders, models, pre_tokenizers, processors, trainers


def tiny_base_tokenizer(folder: str | Path, vocab_size: int = 700, bos: bool = False):
    """Train, save and reload a tiny byte-level BPE tokenizer; returns the ``AutoTokenizer`` instance.

    ``bos=True`` makes it add ``<|begin_of_text|>`` in front of every encoding (Llama-3 style), so
    round trips are tested with and without a BOS token. The base has no pad token on purpose.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    Tokenizer, decoders, models, pre_tokenizers, processors, trainers = _hf_tokenizers()

    specials = ["<|endoftext|>", "<|begin_of_text|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([ENGLISH * 3, ABC], trainer)
    if bos:
        bos_id = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", bos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|begin_of_text|>" if bos else "<|endoftext|>"
    )
    folder = Path(folder)
    fast.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


def tiny_metaspace_tokenizer(folder: str | Path, vocab_size: int = 400):
    """A tiny SentencePiece-style tokenizer (Metaspace pre-tokenizer, ``prepend_scheme="always"``,
    byte fallback), as in Mistral/Llama-2 ``tokenizer.json`` files."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    Tokenizer, decoders, models, pre_tokenizers, _, trainers = _hf_tokenizers()

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator([ENGLISH * 3, ABC], trainer)
    # Every byte as an ordinary vocabulary entry <0xNN> (not a special token, as in real SentencePiece
    # files) so that byte fallback can spell any character and decode() keeps it.
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    for i in range(256):
        vocab.setdefault(f"<0x{i:02X}>", len(vocab))
    tok = Tokenizer.from_str(json.dumps(state))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    folder = Path(folder)
    fast.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


def tiny_causal_lm(vocab_size: int, tied: bool, seed: int = 0):
    """A 2-layer Llama with hidden size 16 (tied or untied input/output embeddings), fixed init."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tied,
    )
    model = LlamaForCausalLM(config)
    if not tied:
        # Random init may make the two matrices start equal-ish; make the difference obvious.
        with torch.no_grad():
            model.get_output_embeddings().weight.normal_(0.0, 1.0)
    return model


def tiny_music_model_folder(folder: str | Path, seed: int = 0, extra_labels: dict[str, str] | None = None,
                            vocab: Any = None, remi: bool = False) -> Path:
    """A saved, untrained model folder as train/finetune.py writes one: a music tokenizer over the tiny
    base, a random 2-layer Llama sized to it, and a control vocabulary. For pipeline tests.
    ``extra_labels`` are added to every training row (a registered condition's value, for one); ``vocab``
    (a ``ControlVocabulary``, e.g. a corpus's) replaces the built-in one. ``remi=True``: the REMI tokens are
    added and the model is marked as a REMI model (``midi-generation``), as ``data.representation: remi`` does."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from abcgen.controls import ControlVocabulary
    from abcgen.tokenization.extend import build_music_tokenizer
    from abcgen.tokenization.units import load_default_spec

    folder = Path(folder)
    rows = [{"key": k, "meter": m, "unit_length": "1/8", "rhythm": r, "num_bars": 16, **(extra_labels or {})}
            for k in ("D major", "G major", "A dorian", "E minor") for m, r in (("6/8", "jig"), ("4/4", "reel"),
                                                                               ("3/4", "waltz"), ("2/4", "polka"))
            for _ in range(5)]
    vocab = vocab if vocab is not None else ControlVocabulary.from_rows(rows, min_count=1)
    base = tiny_base_tokenizer(folder / "_base")
    tokenizer = build_music_tokenizer(base, load_default_spec(), vocab)
    if remi:
        from abcgen.tokenization.remi import add_remi_tokens

        add_remi_tokens(tokenizer)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=-(-len(tokenizer) // 64) * 64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if remi:
        from abcgen.model_folder import REPRESENTATION_KEY

        setattr(config, REPRESENTATION_KEY, "remi")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    vocab.save(folder)
    return folder
