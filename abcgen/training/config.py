"""The fine-tuning run configuration: typed dataclasses grouped by concern, one precedence rule.

    defaults (here)  <  YAML (``--config train/configs/NAME.yaml``)  <  command line (``--lora.r 32``)

Every field carries its help text (``field(metadata={"help": ...})``), which ``--help`` prints. Keys are
strict at every level: an unknown or misspelt key, in YAML or on the command line, is a ``ConfigError``
that names the closest valid key and its section. Values are checked together by ``TrainConfig.validate``,
which collects every problem and raises once. Hardware (processes, mixed precision, FSDP, DeepSpeed) is
not configured here but in ``train/accelerate/*.yaml``.

Command line: ``--config FILE``, then overrides ``--section.key VALUE`` or ``--section.key=VALUE``
(nested: ``--model.scratch.hidden_size 256``); lists are comma-separated (``--data.conditions key,meter``,
an empty value is the empty list); booleans are ``true``/``false`` (a bare ``--model.gradient_checkpointing``
means true). ``--resume X`` is short for ``--checkpoint.resume X``.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from abcgen.controls import CONTROL_NAMES
from abcgen.errors import ConfigError

SCHEMA_VERSION = 1

METHODS = ("lora", "full", "scratch")
# Model families trained from scratch (method=scratch). llama and lstm are causal LMs over the music
# tokenizer; vae and gan have loops of their own (abcgen.models), started from the same entry point.
ARCHITECTURES = ("llama", "lstm", "vae", "gan")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention", "torch_varlen")
# The speed switches (abcgen.training.attention, .speed, .loss hold the same tuples; a test checks they agree).
PACKED_ATTENTION = ("auto", "position_ids", "varlen", "mask")
COMPILE_MODES = ("none", "model", "regional")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
PIN_MEMORY = ("auto", "always", "never")
LOSS_IMPLEMENTATIONS = ("logits", "hidden")
LOSS_ON = ("tune", "all")
SCHEDULES = ("cosine", "linear", "constant")

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


@dataclass
class DataSettings:
    """The corpus and how examples are built from it."""

    corpus: str = field(default="", metadata=_help("folder written by 'abcgen data build'"))
    train_split: str = field(default="train", metadata=_help("split trained on"))
    eval_split: str = field(default="validation", metadata=_help("split evaluated on; empty = no evaluation"))
    max_length: int = field(default=512, metadata=_help("tokens per packed row; higher = more context and "
                                                            "memory (attention grows with its square)"))
    loss_on: str = field(default="tune", metadata=_help("tune (loss on the tune only) | all (the control "
                                                            "prefix too)"))
    conditions: list[str] = field(default_factory=lambda: list(CONTROL_NAMES),
                                  metadata=_help(f"conditions put in the control prefix, from "
                                                 f"{', '.join(CONTROL_NAMES)}"))
    condition_dropout: float = field(default=0.1, metadata=_help("chance to drop each condition token, so "
                                                                     "unconditioned generation works; 0 <= p <= 1"))
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

    def problems(self) -> list[str]:
        """Every invalid value, one message each naming the key, the value and the fix."""
        out: list[str] = []
        m, s, lo, d, o, c, lg = self.model, self.model.scratch, self.lora, self.data, self.optim, \
            self.checkpoint, self.logging

        def choice(key: str, value: str, choices: Sequence[str]) -> None:
            if value not in choices:
                close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                out.append(f"{key}={value!r} is not one of {', '.join(choices)}: {hint}pick one of them")

        def at_least(key: str, value: float, low: float, why: str = "") -> None:
            if value < low:
                out.append(f"{key}={value!r} must be >= {low}{why}")

        choice("model.method", m.method, METHODS)
        choice("model.dtype", m.dtype, DTYPES)
        choice("model.architecture", m.architecture, ARCHITECTURES)
        if m.architecture != "llama" and m.method != "scratch":
            out.append(f"model.architecture={m.architecture!r} is trained from random weights: set "
                       "model.method=scratch (only llama-family hub models can be fine-tuned with lora/full)")
        choice("model.attn_implementation", m.attn_implementation, ATTN_IMPLEMENTATIONS)
        choice("model.compile", m.compile, COMPILE_MODES)
        choice("model.compile_backend", m.compile_backend, COMPILE_BACKENDS)
        choice("data.packed_attention", d.packed_attention, PACKED_ATTENTION)
        choice("data.pin_memory", d.pin_memory, PIN_MEMORY)
        choice("optim.loss_impl", o.loss_impl, LOSS_IMPLEMENTATIONS)
        at_least("optim.loss_chunk_size", o.loss_chunk_size, 1)
        choice("data.loss_on", d.loss_on, LOSS_ON)
        choice("optim.schedule", o.schedule, SCHEDULES)
        if m.method in ("lora", "full") and not m.name_or_path:
            out.append(f"model.name_or_path is empty but model.method={m.method!r} starts from a pretrained "
                       "model: give a hub id or a local folder, or set model.method=scratch")
        if m.method == "scratch":
            if not m.name_or_path and not m.tokenizer and m.architecture != "gan":  # the GAN reads piano rolls
                out.append("model.tokenizer is empty and so is model.name_or_path, but method=scratch needs a "
                           "tokenizer: give a folder from 'abcgen tokenizer build' (or a base to build from)")
            for key in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                        "max_position_embeddings"):
                at_least(f"model.scratch.{key}", getattr(s, key), 1)
            if s.num_heads >= 1 and s.hidden_size % s.num_heads:
                out.append(f"model.scratch.num_heads={s.num_heads} does not divide model.scratch.hidden_size="
                           f"{s.hidden_size}: choose a head count that divides it (e.g. "
                           f"{_divisor_near(s.hidden_size, s.num_heads)})")
            if s.num_kv_heads >= 1 and s.num_heads % s.num_kv_heads:
                out.append(f"model.scratch.num_kv_heads={s.num_kv_heads} does not divide model.scratch.num_heads="
                           f"{s.num_heads}: choose a divisor of num_heads")
            if s.max_position_embeddings < d.max_length and m.architecture == "llama":
                out.append(f"model.scratch.max_position_embeddings={s.max_position_embeddings} is shorter than "
                           f"data.max_length={d.max_length}: raise it to at least {d.max_length}")
        if m.architecture == "lstm":
            for key in ("embedding_size", "hidden_size", "num_layers"):
                at_least(f"model.lstm.{key}", getattr(m.lstm, key), 1)
            if not 0 <= m.lstm.dropout < 1:
                out.append(f"model.lstm.dropout={m.lstm.dropout!r} must be in [0, 1)")
            if m.gradient_checkpointing:
                out.append("model.gradient_checkpointing=true is not supported by architecture=lstm (its "
                           "activations are small; recomputing the recurrence would double its cost): set it false")
        if m.method == "lora":
            at_least("lora.r", lo.r, 1)
            at_least("lora.alpha", lo.alpha, 1)
            if not lo.target_modules:
                out.append("lora.target_modules is empty: name the modules to adapt, e.g. q_proj,v_proj")
        if not 0 <= lo.dropout < 1:
            out.append(f"lora.dropout={lo.dropout!r} must be in [0, 1)")
        if not d.corpus:
            out.append("data.corpus is empty: give a folder written by 'abcgen data build'")
        if not d.train_split:
            out.append("data.train_split is empty: name a split of the corpus, e.g. train")
        at_least("data.max_length", d.max_length, 8)
        unknown = [name for name in d.conditions if name not in CONTROL_NAMES]
        if unknown:
            out.append(f"data.conditions has unknown names {unknown}: choose from {', '.join(CONTROL_NAMES)}"
                       + _did_you_mean(unknown[0], CONTROL_NAMES))
        if len(set(d.conditions)) != len(d.conditions):
            out.append(f"data.conditions {d.conditions} repeats a name: list each once")
        if not 0 <= d.condition_dropout <= 1:
            out.append(f"data.condition_dropout={d.condition_dropout!r} must be in [0, 1]")
        at_least("data.max_train_tunes", d.max_train_tunes, 0, " (0 = all)")
        at_least("data.num_workers", d.num_workers, 0)
        if o.lr <= 0:
            out.append(f"optim.lr={o.lr!r} must be > 0 (LoRA: ~2e-4; full: ~2e-5)")
        at_least("optim.weight_decay", o.weight_decay, 0)
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(o, key) < 1:
                out.append(f"optim.{key}={getattr(o, key)!r} must be in [0, 1)")
        if o.eps <= 0:
            out.append(f"optim.eps={o.eps!r} must be > 0, e.g. 1e-8")
        at_least("optim.max_steps", o.max_steps, 1)
        at_least("optim.warmup_steps", o.warmup_steps, 0)
        if o.max_steps >= 1 and o.warmup_steps >= o.max_steps:
            out.append(f"optim.warmup_steps={o.warmup_steps} must be smaller than optim.max_steps={o.max_steps}: "
                       f"the schedule never leaves the warm-up (try {max(0, o.max_steps // 20)})")
        at_least("optim.micro_batch_size", o.micro_batch_size, 1)
        at_least("optim.grad_accum_steps", o.grad_accum_steps, 1)
        if o.max_grad_norm <= 0:  # clip_grad_norm_(max_norm=0) would zero every gradient
            out.append(f"optim.max_grad_norm={o.max_grad_norm!r} must be > 0 (1.0 is usual; 1e9 = no clipping)")
        at_least("optim.seed", o.seed, 0)
        if not c.output_dir:
            out.append("checkpoint.output_dir is empty: give the run folder, e.g. runs/finetune")
        at_least("checkpoint.save_every", c.save_every, 1)
        at_least("checkpoint.keep_last", c.keep_last, 1)
        at_least("logging.log_every", lg.log_every, 1)
        at_least("logging.eval_every", lg.eval_every, 1)
        at_least("logging.eval_batches", lg.eval_batches, 0, " (0 = the whole split)")
        at_least("logging.num_samples", lg.num_samples, 0)
        at_least("logging.sample_max_new_tokens", lg.sample_max_new_tokens, 1)
        v = self.vae
        for key in ("latent_size", "embedding_size", "encoder_hidden_size", "encoder_layers", "decoder_hidden_size",
                    "decoder_layers", "max_tokens"):
            at_least(f"vae.{key}", getattr(v, key), 1)
        at_least("vae.segment_bars", v.segment_bars, 0, " (0 = whole tunes)")
        at_least("vae.kl_weight", v.kl_weight, 0)
        at_least("vae.kl_anneal_steps", v.kl_anneal_steps, 0, " (0 = full weight from the start)")
        at_least("vae.free_bits", v.free_bits, 0, " (0 = off)")
        at_least("vae.reconstruct_segments", v.reconstruct_segments, 0, " (0 = all)")
        if not 0 <= v.word_dropout < 1:
            out.append(f"vae.word_dropout={v.word_dropout!r} must be in [0, 1): at 1 the decoder never sees a token")
        if m.architecture == "vae" and c.resume:
            out.append(f"checkpoint.resume={c.resume!r}: the VAE loop writes only the final model (a run takes "
                       "minutes), so there is nothing to resume from: leave checkpoint.resume empty")
        out += self.gan_problems()
        return out

    def gan_problems(self) -> list[str]:
        """The problems of the ``gan`` section (and of settings a GAN run cannot honour)."""
        g, out = self.gan, []
        for key in ("bars", "bar_steps", "num_pitches", "latent_size", "condition_size", "generator_width",
                    "critic_width", "critic_steps"):
            if getattr(g, key) < 1:
                out.append(f"gan.{key}={getattr(g, key)!r} must be >= 1")
        if g.steps_per_whole_note not in (4, 8, 16, 32, 64):
            out.append(f"gan.steps_per_whole_note={g.steps_per_whole_note!r} must be a power of two from 4 to 64 "
                       "(16 = sixteenth notes), so every step is a plain ABC length")
        if g.lowest_pitch < 0 or g.lowest_pitch + g.num_pitches > 128:
            out.append(f"gan.lowest_pitch={g.lowest_pitch} with gan.num_pitches={g.num_pitches} leaves the MIDI "
                       "range 0..127: choose 0 <= lowest_pitch and lowest_pitch + num_pitches <= 128")
        if g.loss not in ("wgan-gp", "hinge"):
            out.append(f"gan.loss={g.loss!r} is not one of wgan-gp, hinge: pick one of them")
        if g.gp_weight < 0:
            out.append(f"gan.gp_weight={g.gp_weight!r} must be >= 0 (10 is usual)")
        for key in ("lr_generator", "lr_critic"):
            if getattr(g, key) <= 0:
                out.append(f"gan.{key}={getattr(g, key)!r} must be > 0, e.g. 1e-4")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(g, key) < 1:
                out.append(f"gan.{key}={getattr(g, key)!r} must be in [0, 1)")
        if self.model.architecture == "gan" and self.checkpoint.resume:
            out.append(f"checkpoint.resume={self.checkpoint.resume!r}: the GAN loop writes only the final model, so "
                       "there is nothing to resume from: leave checkpoint.resume empty")
        return out

    def validate(self) -> TrainConfig:
        """Raise one ``ConfigError`` listing every problem (see ``problems``); returns ``self`` when valid."""
        problems = self.problems()
        if problems:
            raise ConfigError(_format_problems(problems, "the training config"))
        return self


def _divisor_near(n: int, k: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), d))


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.3)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_problems(problems: Sequence[str], where: str) -> str:
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{len(problems)} problems in {where}:\n" + "\n".join(f"  - {p}" for p in problems)


# --- reading values ------------------------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a section (mapping)"
    return {int: "an int", float: "a float", bool: "a bool (true/false)", str: "a string"}.get(
        tp, "a list of strings (YAML list or comma-separated)")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value: Any, tp: Any, key: str, from_text: bool) -> Any:
    """``value`` as type ``tp``; raises ``ValueError`` with the fix. ``from_text``: a command-line string."""
    shown = f"{key}={value!r}"
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"{shown} is not a bool: write true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and from_text:
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ValueError(f"{shown} is not an int: write a whole number such as 16")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string; the command line gives strings
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{shown} is not a float: write a number such as 2e-4")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{shown} is not a string: quote it in YAML")
    if typing.get_origin(tp) is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(f"{shown} is not a list of strings: write a YAML list or a,b,c")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module, not bad input


def _all_keys(cls: type = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every dotted key -> its type, sections included (``model``, ``model.scratch``, ``model.scratch.x``)."""
    out: dict[str, Any] = {}
    for name, tp in _field_types(cls).items():
        key = prefix + name
        out[key] = tp
        if dataclasses.is_dataclass(tp):
            out.update(_all_keys(tp, key + "."))
    return out


def _unknown_key(section_path: str, key: str, valid: Sequence[str]) -> str:
    """The message for ``key`` missing from the section at ``section_path`` ("" = top level)."""
    full = f"{section_path}.{key}" if section_path else key
    where = f"section {section_path!r}" if section_path else "the top level (sections)"
    valid_list = ", ".join(valid)
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
    return f"unknown key {full!r} in {where}: {hint} Valid keys: {valid_list}"


def _apply(target: Any, values: Any, section_path: str, source: str, problems: list[str]) -> None:
    """Set ``values`` (a mapping from YAML) onto the dataclass ``target``, strictly; collect problems."""
    label = section_path or "the top level"
    if values is None:  # an empty section in YAML (``lora:`` with nothing under it)
        return
    if not isinstance(values, dict):
        problems.append(f"{label} ({source}) must be a mapping of keys, got {type(values).__name__} {values!r}")
        return
    types = _field_types(type(target))
    for key, value in values.items():
        key_text = str(key)
        full = f"{section_path}.{key_text}" if section_path else key_text
        if key_text not in types:
            problems.append(f"{_unknown_key(section_path, key_text, list(types))} ({source})")
            continue
        tp = types[key_text]
        if dataclasses.is_dataclass(tp):
            _apply(getattr(target, key_text), value, full, source, problems)
            continue
        try:
            setattr(target, key_text, _coerce(value, tp, full, from_text=False))
        except ValueError as exc:
            problems.append(f"{exc} ({source})")


def _apply_override(cfg: TrainConfig, override: str, problems: list[str]) -> None:
    """One ``section.key=value`` override from the command line."""
    source = "command line"
    if "=" not in override:
        problems.append(f"override {override!r} ({source}) has no value: write section.key=value")
        return
    path, value = override.split("=", 1)
    path = path.strip().lstrip("-").replace("-", "_")
    path = SHORTCUTS.get(path, path)
    target: Any = cfg
    parts = path.split(".")
    for depth, part in enumerate(parts):
        types = _field_types(type(target))
        section_path = ".".join(parts[:depth])
        if part not in types:
            problems.append(f"{_unknown_key(section_path, part, list(types))} ({source})")
            return
        tp = types[part]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                problems.append(f"{path!r} ({source}) is a section, not a value: set one of its keys, e.g. "
                                f"--{path}.{next(iter(_field_types(tp)))} VALUE")
                return
            try:
                setattr(target, part, _coerce(value, tp, path, from_text=True))
            except ValueError as exc:
                problems.append(f"{exc} ({source})")
            return
        if not dataclasses.is_dataclass(tp):
            problems.append(f"{'.'.join(parts[:depth + 1])!r} ({source}) is a value, not a section: "
                            f"write --{'.'.join(parts[:depth + 1])} VALUE")
            return
        target = getattr(target, part)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping, with its ``schema_version`` checked and removed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist: give a YAML file such as "
                          "train/configs/tiny-cpu.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
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
    cfg = TrainConfig()
    problems: list[str] = []
    data = dict(data)
    version = data.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        problems.append(f"schema_version {version!r} ({source}) cannot be read; this abcgen reads {SCHEMA_VERSION}")
    _apply(cfg, data, "", source, problems)
    for override in overrides:
        _apply_override(cfg, override, problems)
    if validate:
        problems += cfg.problems()
    if problems:
        where = "the training config" + (f" ({source}" + (" + command line)" if overrides else ")"))
        raise ConfigError(_format_problems(problems, where))
    return cfg


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), validate: bool = True) -> TrainConfig:
    """Defaults < the YAML file at ``path`` < ``overrides`` (``"lora.r=32"``); validated unless told not to."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(data, source=str(path) if path is not None else "defaults", overrides=overrides,
                            validate=validate)


# --- the command line ----------------------------------------------------------------------------------


def _split_argv(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(config path, ``key=value`` overrides) from ``--config F --a.b v --c.d=w``."""
    config: str | None = None
    overrides: list[str] = []
    problems: list[str] = []
    bool_keys = {k for k, tp in _all_keys().items() if tp is bool}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            problems.append(f"unexpected argument {arg!r}: write --section.key VALUE (see --help)")
            continue
        name, has_value, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if not has_value:
            nxt = argv[i] if i < len(argv) else None
            if nxt is None or (nxt.startswith("--") and len(nxt) > 2):
                if SHORTCUTS.get(name, name) in bool_keys:  # a bare flag: --model.gradient_checkpointing
                    value = "true"
                else:
                    problems.append(f"--{name} has no value: write --{name} VALUE")
                    continue
            else:
                value = nxt
                i += 1
        if name == "config":
            config = value
        else:
            overrides.append(f"{name}={value}")
    if problems:
        raise ConfigError(_format_problems(problems, "the command line"))
    return config, overrides


def format_help(prog: str = "train/finetune.py") -> str:
    """The ``--help`` text: every section and field with its type, default and help."""
    lines = [
        f"usage: accelerate launch [launcher flags] {prog} --config FILE [--section.key VALUE ...]",
        "",
        "Precedence: defaults < YAML (--config) < command line. Lists are comma-separated, bools true/false.",
        "Hardware (processes, precision, FSDP, DeepSpeed) is set by accelerate's --config_file "
        "(train/accelerate/*.yaml).",
        "",
        "  --config FILE   a YAML file of sections, e.g. train/configs/tiny-cpu.yaml",
        "  --resume X      short for --checkpoint.resume X",
    ]

    def section(cls: type, prefix: str, title: str) -> None:
        lines.append("")
        lines.append(f"{prefix.rstrip('.')}: {title}")
        nested = []
        for f in dataclasses.fields(cls):
            tp = _field_types(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                nested.append((tp, prefix + f.name + ".", f.metadata.get("help", "")))
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, list):
                shown = ",".join(default) or "(empty)"
            elif isinstance(default, bool):
                shown = str(default).lower()
            else:
                shown = repr(default) if isinstance(default, str) else str(default)
            kind = {int: "INT", float: "FLOAT", bool: "BOOL", str: "STR"}.get(tp, "LIST")
            lines.append(f"  --{prefix}{f.name} {kind}  (default: {shown})")
            lines.append(f"      {f.metadata.get('help', '')}")
        for tp, sub_prefix, help_text in nested:
            section(tp, sub_prefix, help_text)

    for f in dataclasses.fields(TrainConfig):
        section(_field_types(TrainConfig)[f.name], f.name + ".", f.metadata.get("help", ""))
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The run config from the command line (``sys.argv[1:]`` by default); ``--help`` prints and exits 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(format_help())
        raise SystemExit(0)
    config, overrides = _split_argv(argv)
    return load_config(config, overrides)


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
