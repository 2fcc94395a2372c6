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

from abcgen.atomic import atomic_output_dir, check_apart, check_output_dir
from abcgen.corpus.build import load_corpus
from abcgen.errors import ConfigError

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"


def _check_vocab_size(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256 + 3:
        raise ConfigError(f"--vocab-size {vocab_size!r} is smaller than a byte-level BPE's 256 bytes and 3 special "
                          "tokens: give at least 259 (2048 is the default)")


def train_base_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 2048, *,  # noqa: ANN201
                         overwrite: bool = False):
    """Train, save and reload a byte-level BPE on ``texts``; returns the ``PreTrainedTokenizerFast``.

    ``out_dir`` is written whole or not at all (a temporary sibling renamed into place); a used
    ``out_dir`` is refused unless ``overwrite``, before the training."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    _check_vocab_size(vocab_size)
    out_dir = check_output_dir(out_dir, overwrite=overwrite)
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
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        wrapped.save_pretrained(str(tmp))
    log.info("trained a byte-level BPE of %d tokens into %s", len(wrapped), out_dir)
    return AutoTokenizer.from_pretrained(str(out_dir))


def train_base_from_corpus(data_dir: str | Path, out_dir: str | Path, vocab_size: int = 2048, *,  # noqa: ANN201
                           overwrite: bool = False):
    """``train_base_tokenizer`` over the ``abc`` column of a corpus's train split."""
    _check_vocab_size(vocab_size)  # both before loading the corpus
    check_output_dir(out_dir, overwrite=overwrite)
    check_apart(out_dir, [("--data", data_dir)])
    corpus = load_corpus(data_dir)
    if "train" not in corpus or not len(corpus["train"]):
        raise ConfigError(f"corpus {str(data_dir)!r} has no training tunes to train a tokenizer on: rebuild it "
                          "with `abcgen data build` from sources with tunes")
    return train_base_tokenizer(corpus["train"]["abc"], out_dir, vocab_size=vocab_size, overwrite=overwrite)
