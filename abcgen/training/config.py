"""The fine-tuning run configuration: typed dataclasses grouped by concern, one precedence rule.

    defaults (here)  <  YAML (``--config train/configs/NAME.yaml``)  <  command line (``--lora.r 32``)

The dataclasses are the only declaration of the keys: their types, defaults and help text (``--help``
prints it) reach the command line and YAML through jsonargparse. Keys are strict at every level: an
unknown or misspelt key is a one-line ``ConfigError`` naming the closest valid key and its section (the
one wrapper here, ``_explain``, adds that to the parser's error). Values are checked together by
``TrainConfig.validate`` (``abcgen.training.config_checks``), which collects every problem and raises once.
Hardware (processes, mixed precision, FSDP, DeepSpeed) is configured in ``train/accelerate/*.yaml``.

Command line: ``--config FILE``, then ``--section.key VALUE`` or ``--section.key=VALUE`` (nested:
``--model.scratch.hidden_size 256``); lists are comma-separated (``--data.conditions key,meter``; an empty
value is the empty list) or YAML lists; booleans are ``true``/``false`` (a bare ``--model.gradient_checkpointing``
means true). ``--resume X`` is short for ``--checkpoint.resume X``.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError, ArgumentParser

from abcgen.controls import CONTROL_NAMES, condition_names
from abcgen.errors import ConfigError
from abcgen.training.config_checks import (  # noqa: F401  -- the allowed values, re-exported
    ARCHITECTURES,
    ATTN_IMPLEMENTATIONS,
    COMPILE_BACKENDS,
    COMPILE_MODES,
    DTYPES,
    LOSS_IMPLEMENTATIONS,
    LOSS_ON,
    METHODS,
    PACKED_ATTENTION,
    PIN_MEMORY,
    SCHEDULES,
    all_problems,
)

SCHEMA_VERSION = 1

# Names other frameworks use (peft, TRL, transformers.TrainingArguments) -> ours, so a familiar name is
# answered with the right key rather than a near-miss by spelling.
ALIASES = {
    "rank": "lora.r", "lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
    "learning_rate": "optim.lr", "batch_size": "optim.micro_batch_size",
    "per_device_train_batch_size": "optim.micro_batch_size",
    "gradient_accumulation_steps": "optim.grad_accum_steps", "warmup": "optim.warmup_steps",
    "lr_scheduler_type": "optim.schedule", "max_grad_norm": "optim.max_grad_norm",
    "model_name_or_path": "model.name_or_path", "model_name": "model.name_or_path",
    "max_seq_length": "data.max_length", "seq_len": "data.max_length", "context_length": "data.max_length",
    "block_size": "data.max_length", "dataset": "data.corpus", "output": "checkpoint.output_dir",
    "save_steps": "checkpoint.save_every", "save_total_limit": "checkpoint.keep_last",
    "logging_steps": "logging.log_every", "eval_steps": "logging.eval_every",
    "resume_from_checkpoint": "checkpoint.resume",
}
# Top-level command-line shortcuts (``--resume latest``).
SHORTCUTS = {"resume": "checkpoint.resume"}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ScratchModelSettings:
    """A small Llama (RoPE, RMSNorm, SwiGLU) built from scratch; used only when ``model.method == "scratch"``."""

    hidden_size: int = field(default=128, metadata=_help("width of the model; higher = better and slower, "
                                                             "parameters grow with its square"))
    num_layers: int = field(default=4, metadata=_help("transformer blocks; higher = deeper, slower, more memory"))
    num_heads: int = field(default=4, metadata=_help("attention heads; must divide hidden_size"))
    num_kv_heads: int = field(default=4, metadata=_help("key/value heads (grouped-query attention); must "
                                                            "divide num_heads; lower = smaller KV cache"))
    intermediate_size: int = field(default=384, metadata=_help("MLP width; usually about 3x hidden_size"))
    max_position_embeddings: int = field(default=1024, metadata=_help("longest sequence the model is built "
                                                                          "for; at least data.max_length"))


@dataclass
class LstmSettings:
    """The LSTM language model (``abcgen.models.lstm.MusicLSTM``) built when ``model.architecture == "lstm"``."""

    embedding_size: int = field(default=256, metadata=_help("token embedding width (also the output head's "
                                                                "input); parameters grow with vocabulary x it"))
    hidden_size: int = field(default=512, metadata=_help("units of every LSTM layer; higher = better and "
                                                             "slower (each layer has ~8 x its square weights)"))
    num_layers: int = field(default=2, metadata=_help("stacked LSTM layers; higher = deeper, slower"))
    dropout: float = field(default=0.1, metadata=_help("dropout on embeddings, between layers and on the "
                                                           "output, in training; 0 <= dropout < 1"))
    tie_weights: bool = field(default=True, metadata=_help("share the embedding matrix with the output head "
                                                               "(a projection hidden_size -> embedding_size is "
                                                               "added when they differ); false = a head of its own"))


@dataclass
class ModelSettings:
    """Which model to start from and how to train it."""

    name_or_path: str = field(default="", metadata=_help("hub id or local folder (from_pretrained); may be "
                                                             "empty only for method=scratch"))
    method: str = field(default="lora", metadata=_help("lora (adapters + new token rows) | full (every "
                                                           "weight) | scratch (a small Llama from random init)"))
    architecture: str = field(default="llama", metadata=_help("llama | lstm | vae | gan: the family built when "
                                                                  "method=scratch (lstm, vae, gan need scratch)"))
    tokenizer: str = field(default="", metadata=_help("music tokenizer folder (abcgen tokenizer build); "
                                                          "empty = build one from name_or_path + the corpus"))
    dtype: str = field(default="auto", metadata=_help("auto | float32 | bfloat16 | float16; auto = bfloat16 "
                                                          "where the hardware has it, else float32"))
    attn_implementation: str = field(default="sdpa", metadata=_help(
        "sdpa | eager | flash_attention_2 (needs the flash-attn package) | flex_attention (CUDA; block-sparse "
        "over packed tunes) | torch_varlen (torch's own varlen flash kernel, torch >= 2.10 on CUDA; a dense-mask "
        "reference elsewhere). The fastest with packed rows on a GPU: torch_varlen or flex_attention"))
    gradient_checkpointing: bool = field(default=False, metadata=_help("recompute activations in the backward "
                                                                           "pass: less memory, ~30% slower"))
    compile: str = field(default="none", metadata=_help(
        "torch.compile: none | model (the whole forward pass) | regional (each decoder layer, compiled once and "
        "reused: most of the speed-up for a fraction of the compile time). The first steps are slower while it "
        "compiles"))
    compile_backend: str = field(default="inductor", metadata=_help(
        "inductor (fused kernels; needs triton on CUDA, a C++ compiler on CPU) | aot_eager (traces, no speed-up: "
        "checks that a model compiles, fast) | eager"))
    scratch: ScratchModelSettings = field(default_factory=ScratchModelSettings,
                                          metadata=_help("the model's shape when method=scratch"))
    lstm: LstmSettings = field(default_factory=LstmSettings,
                               metadata=_help("the model's shape when architecture=lstm"))


@dataclass
class LoraSettings:
    """LoRA adapters (peft); used when ``model.method == "lora"``."""

    r: int = field(default=16, metadata=_help("adapter rank; higher = more capacity, more trainable "
                                                  "parameters and memory"))
    alpha: int = field(default=32, metadata=_help("adapter scale (the update is multiplied by alpha / r); "
                                                      "usually 2 x r"))
    dropout: float = field(default=0.05, metadata=_help("dropout on the adapter input, 0 <= dropout < 1"))
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata=_help("module names that get adapters, always explicit (no guessing); fewer = "
                       "fewer trainable parameters"),
    )
    train_new_tokens: bool = field(default=True, metadata=_help("train the added token rows (music units, "
                                                                    "controls) through peft trainable_token_indices"))
    train_music_tokens: bool = field(default=True, metadata=_help(
        "also train the rows of every token a tune body is written in (notes, bar lines, the idiom's symbols "
        "> (3 { ~ ( ...): a base that never saw broken rhythm or grace notes gives them almost no probability, "
        "and the adapters alone barely move it"))


@dataclass
class DataSettings:
    """The corpus and how examples are built from it."""

    corpus: str = field(default="", metadata=_help("folder written by 'abcgen data build'"))
    train_split: str = field(default="train", metadata=_help("split trained on"))
    eval_split: str = field(default="validation", metadata=_help("split evaluated on; empty = no evaluation"))
    representation: str = field(default="abc", metadata=_help(
        "abc (the corpus's ABC text) | remi (its REMI MIDI events, `abcgen data build --remi`: the REMI tokens are "
        "added to the tokenizer and the model generates MIDI through the midi-generation pipeline)"))
    max_length: int = field(default=512, metadata=_help("tokens per packed row; higher = more context and "
                                                            "memory (attention grows with its square)"))
    loss_on: str = field(default="tune", metadata=_help("tune (loss on the tune only) | all (the prefix too)"))
    conditions: list[str] = field(default_factory=lambda: list(condition_names()), metadata=_help(
        f"conditions put in the control prefix, from {', '.join(CONTROL_NAMES)}"))
    condition_dropout: float = field(default=0.1, metadata=_help("chance to drop each condition token, so "
                                                                     "unconditioned generation works; 0 <= p <= 1"))
    unconditional_dropout: float = field(default=0.0, metadata=_help(
        "chance to drop all of a tune's conditions at once: trains guidance's unconditional prompt; 0 <= p <= 1"))
    max_train_tunes: int = field(default=0, metadata=_help("train on at most this many tunes; 0 = all"))
    num_workers: int = field(default=0, metadata=_help("dataloader worker processes; 0 = in the main process"))
    packed_attention: str = field(default="auto", metadata=_help(
        "how tunes packed in one row are kept apart: auto (the fastest the attention implementation has) | "
        "position_ids (restarting positions; sdpa/eager build a dense mask, flex_attention a block-sparse one) | "
        "varlen (tune offsets for flash_attention_2/torch_varlen: no mask at all) | mask (an explicit dense "
        "float mask; the fallback)"))
    pin_memory: str = field(default="auto", metadata=_help(
        "page-locked host memory for batches, so the copy to the GPU overlaps compute: auto (with CUDA) | "
        "always | never"))


@dataclass
class OptimSettings:
    """AdamW, the learning-rate schedule and the batch."""

    lr: float = field(default=2e-4, metadata=_help("peak learning rate; LoRA ~1e-4..3e-4, full ~1e-5..5e-5"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    beta2: float = field(default=0.95, metadata=_help("AdamW beta2"))
    eps: float = field(default=1e-8, metadata=_help("AdamW epsilon"))
    schedule: str = field(default="cosine", metadata=_help("cosine | linear | constant, after the warm-up"))
    warmup_steps: int = field(default=20, metadata=_help("optimizer steps of linear warm-up; < max_steps"))
    max_steps: int = field(default=1000, metadata=_help("optimizer steps to train (each is grad_accum_steps "
                                                            "micro-batches on every process)"))
    micro_batch_size: int = field(default=8, metadata=_help("packed rows per process per forward pass; "
                                                                "higher = more memory"))
    grad_accum_steps: int = field(default=1, metadata=_help("micro-batches per optimizer step; raises the "
                                                                "batch without raising memory"))
    max_grad_norm: float = field(default=1.0, metadata=_help("clip the gradient norm to this (> 0); a large "
                                                                 "value such as 1e9 effectively turns clipping off"))
    seed: int = field(default=0, metadata=_help("seed for initialisation, shuffling and condition dropout"))
    fused: bool = field(default=False, metadata=_help("fused AdamW kernel (one kernel for all parameters, CUDA "
                                                          "and CPU); faster, same update"))
    loss_impl: str = field(default="logits", metadata=_help(
        "logits (the model's full (batch, positions, vocabulary) logits, cross-entropy in chunks) | hidden (the "
        "logits are never built whole: labelled positions of the last hidden states are projected chunk by "
        "chunk; the memory saver for 100k+ vocabularies, same loss)"))
    loss_chunk_size: int = field(default=1024, metadata=_help("positions per cross-entropy chunk; higher = "
                                                                  "faster, more memory (chunk x vocabulary floats)"))


@dataclass
class CheckpointSettings:
    """Where the run writes and how it resumes."""

    output_dir: str = field(default="runs/finetune", metadata=_help("run folder: checkpoints/, the final "
                                                                        "model, logs"))
    save_every: int = field(default=200, metadata=_help("optimizer steps between checkpoints; lower = less "
                                                            "work lost on a kill, more disk writes"))
    keep_last: int = field(default=2, metadata=_help("checkpoints kept; older ones are deleted"))
    resume: str = field(default="", metadata=_help("empty = fresh run, 'latest' = newest complete checkpoint "
                                                       "in output_dir (fresh if none), or a checkpoint folder"))
    overwrite: bool = field(default=False, metadata=_help(
        "start a fresh run in an output_dir that already holds another run (checkpoints/ or final/); its "
        "folders are moved aside to output_dir/.replaced-run and deleted once the new run has saved a "
        "checkpoint or its final model. false = such a run is refused (resume it with resume=latest instead)"))


@dataclass
class LoggingSettings:
    """What the run reports and how often."""

    log_every: int = field(default=10, metadata=_help("optimizer steps between logged training losses"))
    eval_every: int = field(default=200, metadata=_help("optimizer steps between evaluations"))
    eval_batches: int = field(default=20, metadata=_help("micro-batches per evaluation; 0 = the whole split"))
    num_samples: int = field(default=2, metadata=_help("tunes sampled and logged as text at each evaluation"))
    sample_max_new_tokens: int = field(default=256, metadata=_help("token limit of each sampled tune"))
    tensorboard: bool = field(default=True, metadata=_help("track through accelerate's tensorboard tracker"))
    record_batches: bool = field(default=False, metadata=_help(
        "record a digest of every micro-batch each process trained on (training_summary.json: data_shards), "
        "to check that processes saw disjoint data; costs a device-to-host copy per micro-batch"))


@dataclass
class VaeSettings:
    """The sequence VAE (``model.architecture: vae``, abcgen.models.vae): sizes, segments and the KL schedule."""

    latent_size: int = field(default=32, metadata=_help("dimensions of the latent z; more = more detail can be "
                                                            "encoded, more dimensions may stay inactive"))
    embedding_size: int = field(default=64, metadata=_help("token embedding width, shared by encoder and decoder"))
    encoder_hidden_size: int = field(default=128, metadata=_help("hidden size of each direction of the "
                                                                     "bidirectional GRU encoder"))
    encoder_layers: int = field(default=1, metadata=_help("stacked GRU layers in the encoder"))
    decoder_hidden_size: int = field(default=256, metadata=_help("hidden size of the GRU decoder; higher = "
                                                                     "better reconstruction, slower"))
    decoder_layers: int = field(default=1, metadata=_help("stacked GRU layers in the decoder"))
    segment_bars: int = field(default=0, metadata=_help("what one latent encodes: 0 = a whole tune, N = N "
                                                            "consecutive bars (tunes are cut into N-bar phrases)"))
    max_tokens: int = field(default=256, metadata=_help("longest segment body in tokens; longer segments are "
                                                            "skipped (counted in the summary)"))
    kl_weight: float = field(default=1.0, metadata=_help("weight of the KL term after annealing (beta); < 1 "
                                                             "favours reconstruction over a smooth latent space"))
    kl_anneal_steps: int = field(default=1000, metadata=_help("optimizer steps over which the KL weight grows "
                                                                  "linearly from 0 to kl_weight; 0 = full weight "
                                                                  "from the start"))
    free_bits: float = field(default=0.0, metadata=_help("nats per latent dimension the KL does not penalise "
                                                             "(free bits, against posterior collapse); 0 = off"))
    word_dropout: float = field(default=0.0, metadata=_help("chance to blank each body token of the decoder's "
                                                                "input, so it must read z; 0 <= p < 1"))
    reconstruct_segments: int = field(default=64, metadata=_help("eval segments greedily decoded from their "
                                                                     "mean at each evaluation for the exact "
                                                                     "reconstruction rate; 0 = all"))


@dataclass
class GanSettings:
    """The piano-roll GAN (``model.architecture: gan``, abcgen.models.gan): grid, sizes and objective. It uses
    optim.max_steps (generator steps), optim.micro_batch_size and optim.seed; its learning rates and betas
    are here (constant, no warm-up: the usual for WGAN-GP)."""

    bars: int = field(default=4, metadata=_help("bars per generated window (and per training window)"))
    steps_per_whole_note: int = field(default=16, metadata=_help(
        "grid steps per whole note (= per 4/4 bar; a 6/8 bar gets 3/4 of it); 16 = sixteenth notes; a power "
        "of two, 4..64; finer = fewer notes moved to the grid, wider rolls"))
    bar_steps: int = field(default=18, metadata=_help("time axis of one bar in the roll; tunes whose bar needs "
                                                          "more steps are skipped (18 holds 9/8 at 16 a whole note)"))
    lowest_pitch: int = field(default=52, metadata=_help("lowest MIDI pitch of the roll (52 = E3), after "
                                                             "transposing to the white-key signature of the mode"))
    num_pitches: int = field(default=40, metadata=_help("pitches in the roll from lowest_pitch; windows outside "
                                                            "are moved by octaves or skipped (counted)"))
    latent_size: int = field(default=64, metadata=_help("dimensions of the generator's noise z"))
    condition_size: int = field(default=16, metadata=_help("embedding width of each condition (mode, meter, "
                                                               "rhythm)"))
    generator_width: int = field(default=256, metadata=_help("hidden width of the generator's MLPs"))
    critic_width: int = field(default=256, metadata=_help("hidden width of the critic's MLPs"))
    loss: str = field(default="wgan-gp", metadata=_help("wgan-gp (Wasserstein loss + gradient penalty) | hinge "
                                                            "(hinge loss, spectral norm on the critic)"))
    gp_weight: float = field(default=10.0, metadata=_help("gradient-penalty weight (lambda) of wgan-gp; 10 is "
                                                              "the published value"))
    critic_steps: int = field(default=5, metadata=_help("critic updates per generator update (5 for wgan-gp, "
                                                            "1-2 for hinge)"))
    lr_generator: float = field(default=1e-4, metadata=_help("Adam learning rate of the generator"))
    lr_critic: float = field(default=1e-4, metadata=_help("Adam learning rate of the critic"))
    beta1: float = field(default=0.5, metadata=_help("Adam beta1 of both (0.5 or 0 is usual for GANs)"))
    beta2: float = field(default=0.9, metadata=_help("Adam beta2 of both"))


@dataclass
class RewardSettings:
    """The reward of preference alignment (``train/align.py``), built from the evaluation suite
    (``abcgen.evaluation.reward``). Validity is a gate, not a term: an invalid tune is never chosen. Each
    weight multiplies a term in [0, 1] (or a penalty in [0, 1]); 0 switches a term off."""

    key: float = field(default=1.0, metadata=_help(
        "requested key found by Krumhansl-Schmuckler: 1 tonic and mode, 0.5 the key signature only, 0 neither"))
    rhythm: float = field(default=2.0, metadata=_help(
        "probability a rhythm classifier trained on the training split gives the requested rhythm (jig, reel, "
        "...); its hash seed differs from the one abcgen evaluate uses"))
    tonic_ending: float = field(default=0.5, metadata=_help("the last melody note is the requested key's tonic"))
    repetition: float = field(default=0.5, metadata=_help(
        "structure near the real tunes': 1 minus the distance of the tune's share of repeated bars from the "
        "training tunes' median share, over that median (clipped to [0, 1])"))
    repeated_notes: float = field(default=0.5, metadata=_help(
        "the share of a note repeating the note before, near the training tunes' median (same form as "
        "repetition): neither marking time nor avoiding every repeat"))
    copy_penalty: float = field(default=2.0, metadata=_help(
        "subtracted from a tune whose melody is within copy_threshold similarity of a training tune: no reward "
        "for copying"))
    copy_threshold: float = field(default=0.85, metadata=_help(
        "normalised Levenshtein similarity to the nearest training tune at which a tune counts as a copy "
        "(abcgen evaluate's copy rate uses 0.85)"))
    diversity: float = field(default=0.5, metadata=_help(
        "share of the tune's bar bigrams (pairs of consecutive bars) that no other tune of the round has: a "
        "round of near-identical tunes earns less"))
    abc2midi: bool = field(default=True, metadata=_help(
        "also gate on abc2midi, the peer checker (needs the abcmidi package); false = our checks only"))


@dataclass
class AlignSettings:
    """Preference alignment (``train/align.py``): rounds of on-policy generation, scoring, best-vs-worst
    pairs per request and DPO. ``model.name_or_path`` is the model to align (a ``final/`` folder); a fresh
    LoRA adapter (``lora.*``) is trained on it and the reference is the same model with the adapter off.
    ``optim.lr``/``optim.warmup_steps``/``optim.schedule`` set the optimiser; the step count follows from the
    pairs, so ``optim.max_steps`` is not used."""

    rounds: int = field(default=3, metadata=_help("generate -> score -> pair -> DPO rounds; NotaGen used 3"))
    requests_per_round: int = field(default=32, metadata=_help(
        "condition sets drawn per round from the training split's labels (key, meter, rhythm, bars, ...); each "
        "gives at most pairs_per_request pairs"))
    samples_per_request: int = field(default=4, metadata=_help(
        "tunes generated per condition set; the best and the worst make its pair; more = wider margins, "
        "slower rounds"))
    max_bars: int = field(default=16, metadata=_help("bar counts drawn from real tunes are capped here "
                                                         "(generation time grows with them)"))
    temperature: float = field(default=1.0, metadata=_help("sampling temperature of the on-policy tunes"))
    top_p: float = field(default=0.95, metadata=_help("nucleus sampling of the on-policy tunes"))
    priors: bool = field(default=True, metadata=_help(
        "generate the round's tunes with the pipeline's decoding priors (theory, opening, rhythm and interval "
        "priors, unison penalty: the tunes a user gets); false: constrained decoding without them, the model's "
        "own distribution, which is what DPO's log-ratios are computed under -- the priors then act once, when "
        "the aligned model is decoded, instead of being learned into it as well"))
    pairs_per_request: int = field(default=1, metadata=_help(
        "disjoint pairs per condition set: the best tune against the worst, the second best against the second "
        "worst, ...; more = more preference data from the same generation (at most samples_per_request / 2)"))
    min_margin: float = field(default=0.1, metadata=_help(
        "no pair when its two tunes' rewards differ by less (noise, not a preference)"))
    beta: float = field(default=0.1, metadata=_help(
        "DPO temperature: how far the policy may move from the reference; lower = further (NotaGen: 0.1)"))
    loss_type: str = field(default="sigmoid", metadata=_help(
        "sigmoid (DPO) | ipo (squared, per-token log-ratios) | hinge (SLiC), as TRL names them"))
    sft_weight: float = field(default=0.0, metadata=_help(
        "adds this weight x the chosen tune's negative log-likelihood per token to the DPO loss (RPO; TRL's "
        "rpo_alpha): keeps the chosen tunes likely, so the policy does not drift off the music; 0 = plain DPO"))
    epochs_per_round: int = field(default=2, metadata=_help("passes over a round's pairs"))
    pair_batch_size: int = field(default=8, metadata=_help("pairs per process per optimiser step"))
    diversity_floor: float = field(default=0.8, metadata=_help(
        "the diversity guard: alignment stops (keeping the last round's model) when a round's distinct bar "
        "bigrams fall below this fraction of round 1's; 0 = never stop"))
    reward: RewardSettings = field(default_factory=RewardSettings, metadata=_help("what a tune earns"))


@dataclass
class TrainConfig:
    """A whole run. Build it with ``load_config``/``parse_args``; check it with ``validate``."""

    model: ModelSettings = field(default_factory=ModelSettings, metadata=_help("the model and the method"))
    lora: LoraSettings = field(default_factory=LoraSettings, metadata=_help("LoRA adapters (method=lora)"))
    data: DataSettings = field(default_factory=DataSettings, metadata=_help("corpus and examples"))
    optim: OptimSettings = field(default_factory=OptimSettings, metadata=_help("optimizer, schedule, batch"))
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings,
                                           metadata=_help("checkpoints and resuming"))
    logging: LoggingSettings = field(default_factory=LoggingSettings, metadata=_help("logging and evaluation"))
    vae: VaeSettings = field(default_factory=VaeSettings,
                             metadata=_help("the sequence VAE (model.architecture=vae)"))
    gan: GanSettings = field(default_factory=GanSettings, metadata=_help("the piano-roll GAN (model.architecture=gan)"))
    align: AlignSettings = field(default_factory=AlignSettings,
                                 metadata=_help("preference alignment (train/align.py)"))

    def problems(self) -> list[str]:
        """Every invalid value, one message each naming the key, the value and the fix; the checks, section
        by section, are in ``abcgen.training.config_checks``."""
        return all_problems(self)

    def validate(self) -> TrainConfig:
        """Raise one ``ConfigError`` listing every problem (see ``problems``); returns ``self`` when valid."""
        problems = self.problems()
        if problems:
            raise ConfigError(_format_problems(problems, "the training config"))
        return self


def _format_problems(problems: Sequence[str], where: str) -> str:
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{len(problems)} problems in {where}:\n" + "\n".join(f"  - {p}" for p in problems)


# --- the keys ------------------------------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _all_keys(cls: type = TrainConfig, prefix: str = "", fields: bool = False) -> dict[str, Any]:
    """Every dotted key -> its type (its ``Field`` if ``fields``), sections included (``model.scratch.x``)."""
    out: dict[str, Any] = {}
    types = _field_types(cls)  # once per class: get_type_hints is slow
    for f in dataclasses.fields(cls):
        tp = types[f.name]
        out[prefix + f.name] = f if fields else tp
        if dataclasses.is_dataclass(tp):
            out.update(_all_keys(tp, prefix + f.name + ".", fields))
    return out


def _unknown_key(section_path: str, key: str, valid: Sequence[str]) -> str:
    """The message for ``key`` missing from the section at ``section_path`` ("" = top level)."""
    full = f"{section_path}.{key}" if section_path else key
    where = f"section {section_path!r}" if section_path else "the top level (sections)"
    alias = ALIASES.get(key) or ALIASES.get(key.replace("-", "_"))
    leaves = [k for k in _all_keys() if k.rsplit(".", 1)[-1] == key]
    if alias:
        hint = f"did you mean {alias!r}?" if alias.rsplit(".", 1)[0] != section_path else \
            f"did you mean {alias.rsplit('.', 1)[-1]!r}?"
    elif leaves:  # the right name in the wrong section
        hint = f"{key!r} belongs to section {leaves[0].rsplit('.', 1)[0]!r}: did you mean {leaves[0]!r}?"
    else:
        close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.3)
        hint = f"did you mean {close[0]!r}?" if close else "no close match"
    return f"unknown key {full!r} in {where}: {hint} Valid keys: {', '.join(valid)}"


def _unknown_path(path: str) -> str | None:
    """The message for the first part of dotted ``path`` that is not a key (None: every part is one)."""
    path = SHORTCUTS.get(path, path)
    cls: Any = TrainConfig
    parts = path.split(".")
    for depth, part in enumerate(parts):
        types = _field_types(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in types:
            return _unknown_key(".".join(parts[:depth]), part, list(types))
        cls = types[part]
    return None


def _sections(data: Any, cls: type, prefix: str, problems: list[str]) -> dict[str, Any]:
    """``data`` (a YAML mapping) for the parser: unknown keys and non-mapping sections are problems (all of
    them, not only the parser's first), an empty section (``lora:`` with nothing under it) keeps its defaults."""
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or 'the top level'} must be a mapping of keys, got "
                        f"{type(data).__name__} {data!r}")
        return {}
    types, out = _field_types(cls), {}
    for key, value in data.items():
        if str(key) not in types:
            problems.append(_unknown_key(prefix.rstrip("."), str(key), list(types)))
        elif dataclasses.is_dataclass(types[key]):
            if value is not None:
                out[key] = _sections(value, types[key], f"{prefix}{key}.", problems)
        else:
            out[key] = value
    return out


# --- the parser (jsonargparse: the keys, types, defaults and help come from the dataclasses above) ------


@functools.cache  # built once (~0.2 s); parsing does not change it
def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="train/finetune.py", exit_on_error=False, allow_abbrev=False, default_env=False,
        usage="accelerate launch [launcher flags] train/finetune.py --config FILE [--section.key VALUE ...]",
        description="Precedence: defaults < YAML (--config) < command line. Lists are comma-separated "
                    "(a,b,c) or YAML lists ([a, b]); bools true/false (a bare --key means true). Hardware "
                    "(processes, precision, FSDP, DeepSpeed) is set by accelerate's --config_file "
                    "(train/accelerate/*.yaml).")
    parser.add_argument("--config", type=str, help="a YAML file of sections, e.g. train/configs/tiny-cpu.yaml")
    parser.add_argument("--resume", type=str, help="short for --checkpoint.resume")
    parser.add_class_arguments(TrainConfig, None)
    types, fields = _all_keys(), _all_keys(fields=True)
    for action in parser._actions:  # each key's help (--model FILE, a YAML of one section, keeps its own)
        if action.dest in types and not dataclasses.is_dataclass(types[action.dest]):
            action.help = fields[action.dest].metadata.get("help", "")
            if types[action.dest] is bool:  # a bare --model.gradient_checkpointing means true
                action.nargs, action.const = "?", True
    for key, group in parser.groups.items():
        if key in fields:
            group.title, group.description = f"{key}: {fields[key].metadata.get('help', '')}", None
    return parser


def _for_parser(argv: Sequence[str]) -> list[str]:
    """``--key VALUE`` as ``--key=VALUE``, so that argparse reads a value such as ``-1e-3`` as the value, not
    an option; a list typed as users do (``--data.conditions key,meter``) as the parser's ``["key", "meter"]``."""
    keys, out, i = _all_keys(), [], 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        name, eq, value = arg.partition("=")
        tp = keys.get(name[2:]) if arg.startswith("--") else None
        if tp is not None and tp is not bool and not eq and i < len(argv) and not argv[i].startswith("--"):
            value, eq, i = argv[i], "=", i + 1
        if eq and typing.get_origin(tp) is list and not value.lstrip().startswith("["):
            value = json.dumps([v.strip() for v in value.split(",") if v.strip()])
        out.append(f"{name}={value}" if eq else arg)
    return out


_TYPE_FIX = {int: "an int: write a whole number such as 16", float: "a float: write a number such as 2e-4",
             bool: "a bool: write true or false", str: "a string: quote it in YAML"}


def _explain(message: str, data: dict[str, Any] | None) -> list[str]:
    """The parser's error as one-line problems naming the key, the value and the fix."""
    if match := re.search(r"unrecognized arguments: (.*)", message):
        tokens = match[1].split()
        keys = [t[2:].split("=")[0] for t in tokens if t.startswith("--")]
        if keys:  # the other tokens are their values
            return [_unknown_path(key) or f"--{key} is not accepted here" for key in keys]
        return [f"unexpected argument {tokens[0]!r}: write --section.key VALUE (see --help)"]
    if match := re.search(r"argument --(\S+): expected one argument", message):
        return [f"--{match[1]} has no value: write --{match[1]} VALUE"]
    if match := re.search(r"Group '(\S+)' does not accept option '(\S+)'|Option '(\S+)' is not accepted", message):
        path = ".".join(p for p in match.groups() if p)
        return [_unknown_path(path) or " ".join(message.split())]
    if match := re.search(r'Parser key "([^"]+)"', message):
        key, tp = match[1], _all_keys().get(match[1])
        if dataclasses.is_dataclass(tp):
            first = next(iter(_field_types(tp)))
            return [f"{key!r} is a section, not a value: set one of its keys, e.g. --{key}.{first} VALUE"]
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None and (got := re.search(r"Got value: (.*)", message)):
            value = got[1].strip()
        fix = _TYPE_FIX.get(tp, "a list of strings: write a YAML list or a,b,c")
        return [f"{key}={value!r} is not {fix}"]
    return [" ".join(message.split())]  # anything else, still one line


def _parse(parser: ArgumentParser, argv: Sequence[str], namespace: Any, source: str,
           data: dict[str, Any] | None = None) -> Any:
    try:
        if data is not None:
            return parser.parse_object(data)
        return parser.parse_args(_for_parser(argv), namespace=namespace)
    except ArgumentError as exc:
        problems = [f"{p} ({source})" for p in _explain(str(exc), data)]
        raise ConfigError(_format_problems(problems, "the training config")) from exc


def _build(cls: type, values: dict[str, Any]) -> Any:
    types = _field_types(cls)
    return cls(**{k: _build(types[k], v) if dataclasses.is_dataclass(types[k]) else v
                  for k, v in values.items() if k in types})


def _load(data: dict[str, Any], source: str, argv: Sequence[str], validate: bool) -> TrainConfig:
    """Defaults < ``data`` (a nested mapping as in YAML, from ``source``) < ``argv`` (``--section.key VALUE``)."""
    data, problems = dict(data), []
    version = data.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        problems.append(f"schema_version {version!r} cannot be read; this abcgen reads {SCHEMA_VERSION}")
    data = _sections(data, TrainConfig, "", problems)
    if problems:
        raise ConfigError(_format_problems([f"{p} ({source})" for p in problems], "the training config"))
    parser = _parser()
    namespace = _parse(parser, (), None, source, data)
    values = _parse(parser, argv, namespace, "command line").as_dict()
    cfg = _build(TrainConfig, values)
    if values.get("resume") is not None:
        cfg.checkpoint.resume = values["resume"]
    if validate and (problems := cfg.problems()):
        where = "the training config" + (f" ({source}" + (" + command line)" if argv else ")"))
        raise ConfigError(_format_problems(problems, where))
    return cfg


# --- reading -------------------------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping, with its ``schema_version`` checked and removed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist: give a YAML file such as "
                          "train/configs/tiny-cpu.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:  # its own message spans several lines: the place and the problem suffice
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}; fix the file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must be a mapping of sections (model:, lora:, ...), "
                          f"got {type(data).__name__}")
    version = data.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(f"config file {str(path)!r} has schema_version {version!r}; this abcgen reads "
                          f"{SCHEMA_VERSION}: update the file or abcgen")
    return data


def config_from_dict(data: dict[str, Any], source: str = "dict", overrides: Sequence[str] = (),
                     validate: bool = True) -> TrainConfig:
    """Defaults, then ``data`` (a nested mapping as in YAML), then ``overrides`` (``section.key=value``)."""
    return _load(data, source, [f"--{o.lstrip('-')}" for o in overrides], validate)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), validate: bool = True) -> TrainConfig:
    """Defaults < the YAML file at ``path`` < ``overrides`` (``"lora.r=32"``); validated unless told not to."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(data, str(path) if path is not None else "defaults", overrides, validate)


def format_help() -> str:
    """The ``--help`` text: every section and key with its type, default and help."""
    return _parser().format_help()


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The run config from the command line (``sys.argv[1:]`` by default); ``--help`` prints and exits 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A first pass finds --config (and answers --help, or a bad key, before the file is read).
    config = _parse(_parser(), argv, None, "command line").config
    data = read_yaml(config) if config is not None else {}
    return _load(data, config if config is not None else "defaults", argv, validate=True)


# --- writing -------------------------------------------------------------------------------------------


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as nested plain data (sections -> keys -> values), ready for YAML or JSON."""
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML with a ``schema_version``; ``load_config`` reads it back to an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"schema_version": SCHEMA_VERSION, **config_to_dict(cfg)}
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), encoding="utf-8")
    return path
