"""Resize a pretrained model's embeddings for the music tokenizer and give the new rows a good start.

A new token's row starts as the mean of the base rows of the base tokenizer's encoding of its text
(``^c'3/2`` -> mean of the rows of ``^``, ``c``, ``'3``, ``/2`` or however the base spells it), so the
model begins by reading the new token roughly as it read the same characters before. Random rows would
make the first steps of fine-tuning un-learn noise, and the mean over the *whole* vocabulary (the HF
default ``mean_resizing``) says nothing about which unit the token is. Control tokens are encoded as a
readable phrase (``<key=D_major>`` -> ``"key D major"``), which the base model already has a sense of, and
REMI tokens as the phrase of their meaning (``Pitch_67`` -> ``"note G4"``; ``abcgen.tokenization.remi``).
"""

from __future__ import annotations

import logging

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from abcgen.errors import ConfigError
from abcgen.tokenization.extend import control_token_text
from abcgen.tokenization.remi import remi_token_text

logger = logging.getLogger(__name__)


def new_token_texts(tokenizer: PreTrainedTokenizerBase, base_tokenizer: PreTrainedTokenizerBase) -> dict[int, str]:
    """``{id: text to encode with the base}`` for every token the music tokenizer adds to the base.

    New tokens have ids from ``len(base_tokenizer)`` on (a unit that already was a base token keeps its
    id and its trained row)."""
    texts: dict[int, str] = {}
    for token_id in range(len(base_tokenizer), len(tokenizer)):
        token = tokenizer.convert_ids_to_tokens(token_id)
        texts[token_id] = control_token_text(token) or remi_token_text(token) or token
    return texts


def _mean_rows(weight: torch.Tensor, base_rows: torch.Tensor, ids: list[int]) -> torch.Tensor:
    # Averaged in float32 so that bf16 models get the same row as a float32 reference would (then cast).
    return base_rows[ids].float().mean(dim=0).to(weight.dtype)


@torch.no_grad()
def resize_and_init_embeddings(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    base_tokenizer: PreTrainedTokenizerBase,
    pad_to_multiple_of: int = 64,
) -> list[int]:
    """Resize ``model``'s token embeddings for ``tokenizer`` and initialise the new rows; returns new ids.

    The matrix grows to ``len(tokenizer)`` rounded up to ``pad_to_multiple_of`` (never shrinks: a base
    matrix already larger than the tokenizer keeps its size). Each new token's row -- input embeddings,
    and output embeddings too when they are not tied -- is the mean of the *base* rows of the base
    tokenizer's encoding of the token's text; rows past the vocabulary (padding) get the mean of all base
    rows. The model is changed in place.
    """
    num_base = len(base_tokenizer)
    input_emb = model.get_input_embeddings()
    if input_emb.weight.shape[0] < num_base:
        raise ConfigError(
            f"the model has {input_emb.weight.shape[0]} embedding rows but the base tokenizer "
            f"{getattr(base_tokenizer, 'name_or_path', '')!r} has {num_base} tokens: pass the base tokenizer "
            "the model was trained with"
        )
    texts = new_token_texts(tokenizer, base_tokenizer)
    encodings: dict[int, list[int]] = {}
    for token_id, text in texts.items():
        ids = base_tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"the base tokenizer encodes the new token text {text!r} to nothing; "
                              "remove that token from the unit spec / control vocabulary")
        encodings[token_id] = list(ids)

    # Snapshot the base rows first: new ids may land on rows the base model had as padding.
    old_out = model.get_output_embeddings()
    tied = old_out is None or old_out.weight.data_ptr() == input_emb.weight.data_ptr()
    base_in = input_emb.weight[:num_base].detach().clone()
    base_out = None if tied else old_out.weight[:num_base].detach().clone()

    multiple = max(int(pad_to_multiple_of), 1)
    size = max(-(-len(tokenizer) // multiple) * multiple, input_emb.weight.shape[0])
    model.resize_token_embeddings(size, mean_resizing=False)

    matrices = [(model.get_input_embeddings().weight, base_in)]
    if not tied:
        matrices.append((model.get_output_embeddings().weight, base_out))
    for weight, base_rows in matrices:
        for token_id, ids in encodings.items():
            weight[token_id] = _mean_rows(weight, base_rows, ids)
        if size > len(tokenizer):
            weight[len(tokenizer):] = base_rows.float().mean(dim=0).to(weight.dtype)
    if tied:
        model.tie_weights()
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    logger.info("embeddings resized to %d rows (%d new tokens, tied=%s)", size, len(encodings), tied)
    return sorted(encodings)
