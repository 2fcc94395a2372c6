"""The checks of a training config, section by section (``TrainConfig.problems`` runs them all).

Each returns one message per invalid value, naming the key, the value and the fix; the allowed values of
the choice keys are here too (``abcgen.training.config`` re-exports them).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from abcgen.controls import condition_names

if TYPE_CHECKING:  # only for the annotations: config.py imports this module
    from abcgen.training.config import TrainConfig

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
# abcgen.tokenization.prompt.REPRESENTATIONS' names (not imported: that module loads transformers)
REPRESENTATIONS = ("abc", "remi")
SCHEDULES = ("cosine", "linear", "constant")
DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def all_problems(cfg: TrainConfig) -> list[str]:
    """Every problem of ``cfg``, section by section."""
    return [*model_problems(cfg), *lora_data_problems(cfg), *optim_problems(cfg), *run_problems(cfg),
            *vae_problems(cfg), *gan_problems(cfg), *align_problems(cfg)]


def model_problems(cfg: TrainConfig) -> list[str]:
    m, s, d, out = cfg.model, cfg.model.scratch, cfg.data, []
    _choice(out, "model.method", m.method, METHODS)
    _choice(out, "model.dtype", m.dtype, DTYPES)
    _choice(out, "model.architecture", m.architecture, ARCHITECTURES)
    if m.architecture != "llama" and m.method != "scratch":
        out.append(f"model.architecture={m.architecture!r} is trained from random weights: set "
                   "model.method=scratch (only llama-family hub models can be fine-tuned with lora/full)")
    _choice(out, "model.attn_implementation", m.attn_implementation, ATTN_IMPLEMENTATIONS)
    _choice(out, "model.compile", m.compile, COMPILE_MODES)
    _choice(out, "model.compile_backend", m.compile_backend, COMPILE_BACKENDS)
    if m.method in ("lora", "full") and not m.name_or_path:
        out.append(f"model.name_or_path is empty but model.method={m.method!r} starts from a pretrained "
                   "model: give a hub id or a local folder, or set model.method=scratch")
    if m.method == "scratch":
        if not m.name_or_path and not m.tokenizer and m.architecture != "gan":  # the GAN reads piano rolls
            out.append("model.tokenizer is empty and so is model.name_or_path, but method=scratch needs a "
                       "tokenizer: give a folder from 'abcgen tokenizer build' (or a base to build from)")
        for key in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                    "max_position_embeddings"):
            _at_least(out, f"model.scratch.{key}", getattr(s, key), 1)
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
            _at_least(out, f"model.lstm.{key}", getattr(m.lstm, key), 1)
        if not 0 <= m.lstm.dropout < 1:
            out.append(f"model.lstm.dropout={m.lstm.dropout!r} must be in [0, 1)")
        if m.gradient_checkpointing:
            out.append("model.gradient_checkpointing=true is not supported by architecture=lstm (its "
                       "activations are small; recomputing the recurrence would double its cost): set it false")
    return out

def lora_data_problems(cfg: TrainConfig) -> list[str]:
    lo, d, out = cfg.lora, cfg.data, []
    if cfg.model.method == "lora":
        _at_least(out, "lora.r", lo.r, 1)
        _at_least(out, "lora.alpha", lo.alpha, 1)
        if not lo.target_modules:
            out.append("lora.target_modules is empty: name the modules to adapt, e.g. q_proj,v_proj")
    if not 0 <= lo.dropout < 1:
        out.append(f"lora.dropout={lo.dropout!r} must be in [0, 1)")
    _choice(out, "data.packed_attention", d.packed_attention, PACKED_ATTENTION)
    _choice(out, "data.pin_memory", d.pin_memory, PIN_MEMORY)
    _choice(out, "data.loss_on", d.loss_on, LOSS_ON)
    _choice(out, "data.representation", d.representation, REPRESENTATIONS)
    if d.representation == "remi" and cfg.model.architecture in ("vae", "gan"):
        out.append(f"data.representation=remi with model.architecture={cfg.model.architecture}: the VAE and GAN "
                   "read ABC; train REMI with architecture llama (or lstm)")
    if not d.corpus:
        out.append("data.corpus is empty: give a folder written by 'abcgen data build'")
    if not d.train_split:
        out.append("data.train_split is empty: name a split of the corpus, e.g. train")
    _at_least(out, "data.max_length", d.max_length, 8)
    names = condition_names()  # the condition registry, registered conditions included
    unknown = [name for name in d.conditions if name not in names]
    if unknown:
        out.append(f"data.conditions has unknown names {unknown}: choose from {', '.join(names)}"
                   + did_you_mean(unknown[0], names))
    if len(set(d.conditions)) != len(d.conditions):
        out.append(f"data.conditions {d.conditions} repeats a name: list each once")
    for key in ("condition_dropout", "unconditional_dropout"):
        if not 0 <= getattr(d, key) <= 1:  # NaN fails too
            out.append(f"data.{key}={getattr(d, key)!r} must be in [0, 1]")
    _at_least(out, "data.max_train_tunes", d.max_train_tunes, 0, " (0 = all)")
    _at_least(out, "data.num_workers", d.num_workers, 0)
    return out

def optim_problems(cfg: TrainConfig) -> list[str]:
    o, out = cfg.optim, []
    _choice(out, "optim.loss_impl", o.loss_impl, LOSS_IMPLEMENTATIONS)
    _at_least(out, "optim.loss_chunk_size", o.loss_chunk_size, 1)
    _choice(out, "optim.schedule", o.schedule, SCHEDULES)
    if o.lr <= 0:
        out.append(f"optim.lr={o.lr!r} must be > 0 (LoRA: ~2e-4; full: ~2e-5)")
    _at_least(out, "optim.weight_decay", o.weight_decay, 0)
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(o, key) < 1:
            out.append(f"optim.{key}={getattr(o, key)!r} must be in [0, 1)")
    if o.eps <= 0:
        out.append(f"optim.eps={o.eps!r} must be > 0, e.g. 1e-8")
    _at_least(out, "optim.max_steps", o.max_steps, 1)
    _at_least(out, "optim.warmup_steps", o.warmup_steps, 0)
    if o.max_steps >= 1 and o.warmup_steps >= o.max_steps:
        out.append(f"optim.warmup_steps={o.warmup_steps} must be smaller than optim.max_steps={o.max_steps}: "
                   f"the schedule never leaves the warm-up (try {max(0, o.max_steps // 20)})")
    _at_least(out, "optim.micro_batch_size", o.micro_batch_size, 1)
    _at_least(out, "optim.grad_accum_steps", o.grad_accum_steps, 1)
    if o.max_grad_norm <= 0:  # clip_grad_norm_(max_norm=0) would zero every gradient
        out.append(f"optim.max_grad_norm={o.max_grad_norm!r} must be > 0 (1.0 is usual; 1e9 = no clipping)")
    _at_least(out, "optim.seed", o.seed, 0)
    return out

def run_problems(cfg: TrainConfig) -> list[str]:
    c, lg, out = cfg.checkpoint, cfg.logging, []
    if not c.output_dir:
        out.append("checkpoint.output_dir is empty: give the run folder, e.g. runs/finetune")
    _at_least(out, "checkpoint.save_every", c.save_every, 1)
    _at_least(out, "checkpoint.keep_last", c.keep_last, 1)
    _at_least(out, "logging.log_every", lg.log_every, 1)
    _at_least(out, "logging.eval_every", lg.eval_every, 1)
    _at_least(out, "logging.eval_batches", lg.eval_batches, 0, " (0 = the whole split)")
    _at_least(out, "logging.num_samples", lg.num_samples, 0)
    _at_least(out, "logging.sample_max_new_tokens", lg.sample_max_new_tokens, 1)
    return out

def vae_problems(cfg: TrainConfig) -> list[str]:
    v, out = cfg.vae, []
    for key in ("latent_size", "embedding_size", "encoder_hidden_size", "encoder_layers", "decoder_hidden_size",
                "decoder_layers", "max_tokens"):
        _at_least(out, f"vae.{key}", getattr(v, key), 1)
    _at_least(out, "vae.segment_bars", v.segment_bars, 0, " (0 = whole tunes)")
    _at_least(out, "vae.kl_weight", v.kl_weight, 0)
    _at_least(out, "vae.kl_anneal_steps", v.kl_anneal_steps, 0, " (0 = full weight from the start)")
    _at_least(out, "vae.free_bits", v.free_bits, 0, " (0 = off)")
    _at_least(out, "vae.reconstruct_segments", v.reconstruct_segments, 0, " (0 = all)")
    if not 0 <= v.word_dropout < 1:
        out.append(f"vae.word_dropout={v.word_dropout!r} must be in [0, 1): at 1 the decoder never sees a token")
    if cfg.model.architecture == "vae" and cfg.checkpoint.resume:
        out.append(f"checkpoint.resume={cfg.checkpoint.resume!r}: the VAE loop writes only the final model (a "
                   "run takes minutes), so there is nothing to resume from: leave checkpoint.resume empty")
    return out

def gan_problems(cfg: TrainConfig) -> list[str]:
    """The ``gan`` section (and settings a GAN run cannot honour)."""
    g, out = cfg.gan, []
    for key in ("bars", "bar_steps", "num_pitches", "latent_size", "condition_size", "generator_width",
                "critic_width", "critic_steps"):
        _at_least(out, f"gan.{key}", getattr(g, key), 1)
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
    if cfg.model.architecture == "gan" and cfg.checkpoint.resume:
        out.append(f"checkpoint.resume={cfg.checkpoint.resume!r}: the GAN loop writes only the final model, so "
                   "there is nothing to resume from: leave checkpoint.resume empty")
    return out


def align_problems(cfg: TrainConfig) -> list[str]:
    a, out = cfg.align, []
    for key in ("rounds", "requests_per_round", "epochs_per_round", "pair_batch_size", "max_bars"):
        _at_least(out, f"align.{key}", getattr(a, key), 1)
    _at_least(out, "align.samples_per_request", a.samples_per_request, 2, " (a pair needs two tunes)")
    if not 1 <= a.pairs_per_request <= max(1, a.samples_per_request // 2):
        out.append(f"align.pairs_per_request={a.pairs_per_request!r} must be between 1 and samples_per_request / 2 "
                   f"= {max(1, a.samples_per_request // 2)} (each pair takes two tunes of its condition set); "
                   "lower it or raise align.samples_per_request")
    _choice(out, "align.loss_type", a.loss_type, DPO_LOSS_TYPES)
    if not a.beta > 0:
        out.append(f"align.beta={a.beta!r} must be above 0 (0.1 is usual; lower lets the policy move further)")
    if not a.temperature > 0:
        out.append(f"align.temperature={a.temperature!r} must be above 0 (1.0 samples the model as trained)")
    if not 0 < a.top_p <= 1:
        out.append(f"align.top_p={a.top_p!r} must be above 0 and at most 1")
    if not a.sft_weight >= 0:
        out.append(f"align.sft_weight={a.sft_weight!r} must be 0 (plain DPO) or more (1 is RPO's)")
    if not a.min_margin >= 0:
        out.append(f"align.min_margin={a.min_margin!r} must be 0 or more (reward units)")
    if not 0 <= a.diversity_floor <= 1:
        out.append(f"align.diversity_floor={a.diversity_floor!r} must be between 0 (off) and 1")
    r = a.reward
    for key in ("key", "rhythm", "tonic_ending", "repetition", "repeated_notes", "copy_penalty", "diversity"):
        value = getattr(r, key)
        if not value >= 0:
            out.append(f"align.reward.{key}={value!r} must be 0 (off) or more")
    if not 0 < r.copy_threshold <= 1:
        out.append(f"align.reward.copy_threshold={r.copy_threshold!r} must be above 0 and at most 1 (0.85 is "
                   "abcgen evaluate's)")
    return out


def _choice(out: list[str], key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        out.append(f"{key}={value!r} is not one of {', '.join(choices)}: {hint}pick one of them")


def _at_least(out: list[str], key: str, value: float, low: float, why: str = "") -> None:
    if value < low:
        out.append(f"{key}={value!r} must be >= {low}{why}")


def _divisor_near(n: int, k: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), d))


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.3)
    return f" (did you mean {close[0]!r}?)" if close else ""
