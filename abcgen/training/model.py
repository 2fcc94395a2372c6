"""Model setup for fine-tuning: tokenizer, base model, embedding growth, LoRA.

The order matters and is the same for every method:

1. the music tokenizer: given (``model.tokenizer``) or built from the base model's own tokenizer, the
   shipped unit spec and the corpus's control vocabulary (tokens the base already has are not re-added);
2. the model: ``from_pretrained`` of a hub id or folder, or a small Llama (or, ``model.architecture: lstm``,
   an LSTM) built from scratch;
3. the embeddings grow to the tokenizer (padded to a multiple of 64) and every *new* row starts as the
   mean of the base embeddings of that token's text (``resize_and_init_embeddings``), not random noise;
4. ``lora``: peft adapters on explicitly named modules, and the new token rows trained through
   ``trainable_token_indices`` (input embeddings and, when the head is untied, ``lm_head`` too).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.grammar.vocabulary import music_token_ids
from abcgen.model_folder import CONFIG_KEY, REPRESENTATION_KEY, check_tokenizer_matches, tokenizer_fingerprint
from abcgen.models.lstm import MusicLSTM, MusicLSTMConfig
from abcgen.tokenization.embeddings import resize_and_init_embeddings
from abcgen.tokenization.extend import (
    build_music_tokenizer,
    load_base_tokenizer,
    load_music_tokenizer,
    save_music_tokenizer,
)
from abcgen.tokenization.remi import add_remi_tokens, remi_vocabulary
from abcgen.tokenization.units import load_default_spec
from abcgen.training.config import LoraSettings, ModelSettings

log = logging.getLogger(__name__)


def resolve_dtype(name: str) -> torch.dtype:
    """``auto`` = bfloat16 where the hardware runs it natively (CUDA with bf16), else float32."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_tokenizer(settings: ModelSettings, corpus_dir: str | Path, out_dir: str | Path,
                    representation: str = "abc") -> tuple[Any, Any]:
    """(music tokenizer, base tokenizer). The base is the model's own tokenizer (``name_or_path``) or, for
    ``method: scratch`` without a base, the given music tokenizer serves as both. ``representation="remi"``
    adds the REMI tokens (``abcgen.tokenization.remi``) to the music tokenizer when it lacks them."""
    music, base = _music_tokenizer(settings, corpus_dir, out_dir)
    if representation == "remi" and not _has_remi_tokens(music):
        music = copy.deepcopy(music)  # for scratch the loaded tokenizer is the base as well: keep that one as is
        added = add_remi_tokens(music)
        log.info("added %d REMI tokens to the tokenizer (%d tokens now)", added, len(music))
        music.abcgen_metadata = {**(getattr(music, "abcgen_metadata", None) or {}), "remi_tokens": added}
        if not settings.tokenizer:  # _music_tokenizer saved it to out_dir/tokenizer: keep that what training uses
            save_music_tokenizer(music, Path(out_dir) / "tokenizer")
        if settings.method == "scratch" and settings.tokenizer:
            base = music  # a scratch model's rows are all new: no base rows to start them from
    return music, base


def _has_remi_tokens(tokenizer: Any) -> bool:
    vocab = tokenizer.get_vocab()
    return all(token in vocab for token in remi_vocabulary())


def _music_tokenizer(settings: ModelSettings, corpus_dir: str | Path, out_dir: str | Path) -> tuple[Any, Any]:
    if settings.tokenizer and settings.method == "scratch":
        music = load_music_tokenizer(settings.tokenizer)
        return music, music
    if not settings.name_or_path:
        raise ConfigError("model.tokenizer is required for method=scratch without model.name_or_path: build one "
                          "with 'abcgen tokenizer build' (or 'abcgen tokenizer train-base' for an offline base)")
    base = load_base_tokenizer(settings.name_or_path)
    if Path(settings.name_or_path).is_dir():  # a model folder we wrote: its tokenizer must be the stored one
        check_tokenizer_matches(settings.name_or_path, base)
    if settings.tokenizer:
        music = load_music_tokenizer(settings.tokenizer)
        check_tokenizer_extends(base, music, settings)
        return music, base
    controls_file = Path(corpus_dir) / "control_vocabulary.json"
    controls = ControlVocabulary.load(corpus_dir) if controls_file.exists() else None
    music = build_music_tokenizer(base, load_default_spec(), controls, save_to=Path(out_dir) / "tokenizer")
    return music, base


def check_tokenizer_extends(base: Any, music: Any, settings: ModelSettings) -> None:
    """The music tokenizer must be built on the model's own tokenizer: every base token keeps its id (the
    model's embedding row). One built from another base maps text to rows that mean other tokens."""
    music_vocab = music.get_vocab()
    moved = [token for token, index in base.get_vocab().items() if music_vocab.get(token) != index]
    if moved:
        raise ConfigError(f"model.tokenizer={settings.tokenizer!r} was not built from model.name_or_path="
                          f"{settings.name_or_path!r}: {len(moved)} of the model's {len(base)} tokens have another id "
                          f"or are missing (e.g. {moved[0]!r}); build it with 'abcgen tokenizer build' from this "
                          "base, or leave model.tokenizer empty to build one")


def scratch_model(settings: ModelSettings, vocab_size: int, pad_token_id: int | None):  # noqa: ANN201
    """A small Llama (RoPE, RMSNorm, SwiGLU) sized by ``model.scratch``; the vocabulary is padded to 64."""
    from transformers import LlamaConfig, LlamaForCausalLM

    s = settings.scratch
    config = LlamaConfig(
        vocab_size=-(-vocab_size // 64) * 64,
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_kv_heads,
        max_position_embeddings=s.max_position_embeddings,
        tie_word_embeddings=True,  # small models: the head is most of the parameters otherwise
        pad_token_id=pad_token_id,
        attn_implementation=settings.attn_implementation,
    )
    return LlamaForCausalLM(config)


def lstm_model(settings: ModelSettings, vocab_size: int, pad_token_id: int | None, bos_token_id: int | None,
               eos_token_id: int | None):  # noqa: ANN201
    """The LSTM language model sized by ``model.lstm``; the vocabulary is padded to 64 like the Llama's."""
    s = settings.lstm
    config = MusicLSTMConfig(
        vocab_size=-(-vocab_size // 64) * 64,
        embedding_size=s.embedding_size,
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_layers,
        dropout=s.dropout,
        tie_word_embeddings=s.tie_weights,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )
    return MusicLSTM(config)


def load_model(settings: ModelSettings, tokenizer: Any, base_tokenizer: Any,
               representation: str = "abc") -> tuple[Any, list[int]]:
    """The model ready for the method, and the ids of the token rows added for the music tokenizer.
    ``representation`` is stored in its config (``REPRESENTATION_KEY``): the pipelines read it."""
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(settings.dtype)
    if settings.method == "scratch" and settings.architecture == "lstm":
        model = lstm_model(settings, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                           tokenizer.eos_token_id).to(dtype)
        new_ids: list[int] = []  # every row is new and trained
    elif settings.method == "scratch":
        model = scratch_model(settings, len(tokenizer), tokenizer.pad_token_id).to(dtype)
        new_ids = []  # every row is new and trained
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                settings.name_or_path, dtype=dtype, attn_implementation=settings.attn_implementation
            )
        except OSError as exc:
            raise ConfigError(f"model.name_or_path={settings.name_or_path!r} cannot be loaded ({exc}); give a "
                              "local folder or a hub id reachable from this machine") from exc
        new_ids = resize_and_init_embeddings(model, tokenizer, base_tokenizer, pad_to_multiple_of=64)
    # the tokenizer it now belongs to, saved in config.json: loading it with another one is refused
    setattr(model.config, CONFIG_KEY, tokenizer_fingerprint(tokenizer))
    setattr(model.config, REPRESENTATION_KEY, representation)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, new_ids


def heads_are_tied(model: Any) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def trained_token_rows(settings: LoraSettings, tokenizer: Any, new_token_ids: list[int]) -> list[int]:
    """The token rows LoRA trains besides the adapters: the new ones (``train_new_tokens``) and those a
    tune body is written in (``train_music_tokens``, ``abcgen.grammar.vocabulary.music_token_ids``)."""
    rows = set(new_token_ids) if settings.train_new_tokens else set()
    if settings.train_music_tokens:
        rows |= set(music_token_ids(tokenizer))
    return sorted(rows)


def apply_lora(model: Any, settings: LoraSettings, token_rows: list[int]):  # noqa: ANN201
    """Wrap ``model`` in LoRA adapters (returns the ``PeftModel``). ``token_rows`` (``trained_token_rows``)
    are trained through ``trainable_token_indices``; when the head is untied its rows for those tokens are
    trained too."""
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in settings.target_modules if t not in names]
    if missing:
        raise ConfigError(f"lora.target_modules {missing} are not modules of this model; its linear layers are "
                          f"{sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))[:12]}")
    trainable: dict[str, list[int]] | None = None
    if token_rows:
        trainable = {"embed_tokens": list(token_rows)}
        if not heads_are_tied(model):
            trainable["lm_head"] = list(token_rows)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        trainable_token_indices=trainable,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def count_parameters(model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total}
