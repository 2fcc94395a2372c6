"""Train a byte-level BPE base tokenizer on corpus text, for runs that start without a hub model.

A real fine-tune extends its pretrained model's own tokenizer (``--base HUB_ID``). Training from scratch
(the LSTM/VAE baselines) or working offline needs a base too: this trains a GPT-2-style byte-level BPE
(lossless on any text: every byte has a token) on the corpus's train split and saves it as an ordinary
Hugging Face tokenizer folder that ``AutoTokenizer`` loads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"


def train_base_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 2048):  # noqa: ANN201
    """Train, save and reload a byte-level BPE on ``texts``; returns the ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False and use_regex=True: GPT-2's pre-tokenisation, lossless with the ByteLevel decoder.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                      clean_up_tokenization_spaces=False)
    out_dir = Path(out_dir)
    wrapped.save_pretrained(str(out_dir))
    log.info("trained a byte-level BPE of %d tokens into %s", len(wrapped), out_dir)
    return AutoTokenizer.from_pretrained(str(out_dir))


def train_base_from_corpus(data_dir: str | Path, out_dir: str | Path, vocab_size: int = 2048):  # noqa: ANN201
    """``train_base_tokenizer`` over the ``abc`` column of a corpus's train split."""
    from abcgen.corpus.build import load_corpus

    corpus = load_corpus(data_dir)
    return train_base_tokenizer(corpus["train"]["abc"], out_dir, vocab_size=vocab_size)
