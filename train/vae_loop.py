"""Train ``MusicVAE`` with accelerate: setup -> data -> loop -> save.

    python train/finetune.py --config train/configs/vae-cpu.yaml        # model.architecture: vae

``train/finetune.py`` calls ``train`` (this module's ``train_vae``) right after ``setup_accelerator``, so
the VAE trains from the
same command, config file, corpus (``data.corpus``, ``data.train_split``/``eval_split``), music tokenizer
(``model.tokenizer``), conditions (``data.conditions``, ``data.condition_dropout``) and optimiser settings
(``optim.*``) as the language models; ``vae.*`` holds what is the VAE's own. ``data.max_length`` and
``data.loss_on`` do not apply (segments are limited by ``vae.max_tokens``; the loss is always on the body),
nor do ``checkpoint.save_every``/``keep_last`` (see below).

**The objective** (per segment, averaged over the batch): the negative ELBO with KL annealing and free
bits,

    loss = recon + beta(step) * sum_d max(free_bits, mean_batch KL_d)

where ``recon`` is the summed cross-entropy of the body and EOS given the prompt and ``z ~ q(z|x)``, and
``beta`` grows linearly from 0 to ``vae.kl_weight`` over ``vae.kl_anneal_steps`` steps. ``optim.micro_batch_size``
counts segments; gradient accumulation averages over the step's segments (all micro-batches have the
same size: ``drop_last``).

**What is measured** (``training_summary.json`` ``eval``; the eval split, ``z = mu``):

* ``recon_per_token`` (nats) and ``token_accuracy``: teacher-forced, the share of body/EOS tokens whose
  argmax is right;
* ``kl_per_segment``: the true KL in nats (not the free-bits term), and ``elbo_per_segment`` = -(recon + KL);
* ``exact_reconstruction``: the share of the first ``vae.reconstruct_segments`` segments that greedy,
  *unconstrained* decoding from ``mu`` writes back token for token, EOS included (unconstrained: the
  constraint's grammar has no ties, chords or ornaments, which real tunes have);
* ``active_units``: latent dimensions whose posterior mean varies across the eval segments,
  ``Var_x(E[z|x]) > 0.01`` (Burda et al. 2016), out of ``latent_size``.

Samples from the prior (``logging.num_samples``, constrained, in the frames of the first eval segments) are
logged at each evaluation. There are no intermediate checkpoints (a run on the quickstart corpus takes
minutes; ``checkpoint.resume`` is refused by the config check); ``OUTPUT_DIR/final`` holds the model
(safetensors), the tokenizer, ``control_vocabulary.json``, ``generation_config.json``,
``abcgen_train_config.yaml`` and ``training_summary.json``, as the LM's final folder does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from abcgen.controls import ControlVocabulary
from abcgen.corpus.build import load_corpus
from abcgen.errors import ConfigError
from abcgen.generation.latent import decode_latents, decoded_tune
from abcgen.model_folder import CONFIG_KEY, tokenizer_fingerprint
from abcgen.models.vae import (
    MusicVAE,
    MusicVaeConfig,
    active_units,
    gaussian_kl,
    kl_weight_at,
    sample_latents,
)
from abcgen.training.config import TrainConfig
from abcgen.training.data import IGNORE_INDEX
from abcgen.training.loss import token_sum_cross_entropy, vae_loss
from abcgen.training.model import build_tokenizer, count_parameters, resolve_dtype
from abcgen.training.outputs import finish_step, make_optimizer, write_run_files
from abcgen.training.run import (
    eval_batch_limit,
    eval_split,
    evaluation_due,
    hardware_summary,
    log_due,
    run_identity,
    save_final_folder,
    section_config,
    split_rows,
    start_run_folder,
    tracker_config,
)
from abcgen.training.vae_data import Segment, build_segments, collate_segments

log = logging.getLogger("abcgen.vae")

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016


# --- setup ---------------------------------------------------------------------------------------------


def build_vae(cfg: TrainConfig, tokenizer: Any) -> MusicVAE:
    """A freshly initialised ``MusicVAE`` sized by ``cfg.vae`` for ``tokenizer`` (vocabulary padded to 64,
    as the LMs')."""
    v = cfg.vae
    config = MusicVaeConfig(
        vocab_size=-(-len(tokenizer) // 64) * 64, embedding_size=v.embedding_size,
        encoder_hidden_size=v.encoder_hidden_size, encoder_layers=v.encoder_layers,
        decoder_hidden_size=v.decoder_hidden_size, decoder_layers=v.decoder_layers, latent_size=v.latent_size,
        segment_bars=v.segment_bars, max_tokens=v.max_tokens, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    # "auto" means float32 here, not bfloat16 as for the LMs: the model is small, and recurrent kernels gain
    # little from bf16 while its rounding accumulates over hundreds of recurrent steps.
    dtype = torch.float32 if cfg.model.dtype == "auto" else resolve_dtype(cfg.model.dtype)
    model = MusicVAE(config).to(dtype)
    setattr(model.config, CONFIG_KEY, tokenizer_fingerprint(tokenizer))  # saved in config.json: its tokenizer
    return model


def prepare_segments(cfg: TrainConfig, tokenizer: Any) -> dict[str, Any]:
    """The train and eval segments (identical on every process: deterministic) and their statistics."""
    corpus = load_corpus(cfg.data.corpus)
    vocab = ControlVocabulary.load(cfg.data.corpus)
    _warn_missing_controls(tokenizer, vocab, cfg.data.conditions)
    data: dict[str, Any] = {"stats": {}}
    for split, rows in split_rows(cfg, corpus).items():
        segments, stats = build_segments(
            rows, tokenizer, vocab, segment_bars=cfg.vae.segment_bars, max_tokens=cfg.vae.max_tokens,
            conditions=cfg.data.conditions, seed=cfg.optim.seed,
            # no condition dropout on eval: its numbers must be comparable from run to run
            condition_dropout=cfg.data.condition_dropout if split == cfg.data.train_split else 0.0,
        )
        data[split] = segments
        data["stats"][split] = stats.as_dict()
        log.info("%s: %s", split, stats.as_dict())
    if not data[cfg.data.train_split]:
        raise ConfigError(f"no training segments from {cfg.data.corpus} split {cfg.data.train_split!r} "
                          f"({data['stats'][cfg.data.train_split]}): raise vae.max_tokens or check the corpus")
    return data


def _warn_missing_controls(tokenizer: Any, vocab: ControlVocabulary, conditions: Sequence[str]) -> None:
    """A control token the tokenizer lacks is spelt out in pieces: it still conditions, less cleanly."""
    known = tokenizer.get_vocab()
    missing = [token for token in vocab.tokens() if token.split("=", 1)[0][1:] in conditions and token not in known]
    if missing:
        log.warning("%d control tokens of the corpus are not in the tokenizer (e.g. %s) and will be split into "
                    "pieces: build the tokenizer on this corpus (abcgen tokenizer build) for single tokens",
                    len(missing), ", ".join(missing[:3]))


def segment_loader(segments: Sequence[Segment], batch_size: int, tokenizer: Any, *, shuffle: bool,
                   seed: int) -> DataLoader:
    """Batches of ``batch_size`` segments (``collate_segments``); shuffled by a seeded generator of its own,
    so the order does not depend on what else drew from the global RNG."""
    collate = functools.partial(collate_segments, pad_id=_pad_id(tokenizer), eos_id=tokenizer.eos_token_id)
    return DataLoader(list(segments), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _forever(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches, epoch after epoch (a fresh shuffle each epoch)."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


# --- one step --------------------------------------------------------------------------------------------


def optimizer_step(model: Any, optimizer: Any, scheduler: Any, micro_batches: Sequence[dict[str, torch.Tensor]],
                   accelerator: Accelerator, cfg: TrainConfig, kl_weight: float,
                   generator: torch.Generator | None) -> dict[str, float]:
    """Forward/backward over the micro-batches of one optimiser step (gradients all-reduced once, after the
    last), clip, step, schedule. Returns the step's record, summed over processes."""
    sums = torch.zeros(5, dtype=torch.float64, device=accelerator.device)  # loss, recon, tokens, kl, segments
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss, parts = vae_loss(model, batch, kl_weight, cfg.vae.free_bits, cfg.vae.word_dropout,
                                   _blank_id(accelerator.unwrap_model(model)), generator)
            accelerator.backward(loss / len(micro_batches))
        sums += torch.tensor([float(loss.detach()) * parts["segments"], parts["recon"], parts["tokens"], parts["kl"],
                              parts["segments"]], dtype=torch.float64, device=accelerator.device)
    grad_norm = finish_step(model, optimizer, scheduler, accelerator, cfg.optim.max_grad_norm)
    loss_sum, recon, tokens, kl, segments = accelerator.reduce(sums, "sum").tolist()
    return {"loss": loss_sum / segments, "recon_per_token": recon / max(tokens, 1), "kl_per_segment": kl / segments,
            "kl_weight": kl_weight, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
            "segments": int(segments), "tokens": int(tokens)}


def _blank_id(model: MusicVAE) -> int:
    """The token word dropout puts in place of a body token: the padding token (a zero embedding)."""
    return model.config.pad_token_id if model.config.pad_token_id is not None else 0


# --- evaluation -----------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_vae(model: MusicVAE, tokenizer: Any, segments: Sequence[Segment], *, batch_size: int,
                 max_batches: int | None, reconstruct: int) -> dict[str, Any] | None:
    """The measures of the module docstring on ``segments`` (``z = mu``): teacher-forced ones over at most
    ``max_batches`` batches (0 or ``None`` = all), active units over all segments, exact reconstruction over
    the first ``reconstruct`` segments (0 = all). ``None`` when there is nothing to evaluate (no segment):
    no evaluation is never reported as a score."""
    if not segments:
        return None

    was_training = model.training
    model.eval()
    recon = tokens = correct = kl = 0.0
    counted = 0
    means = []
    loader = segment_loader(segments, batch_size, tokenizer, shuffle=False, seed=0)
    for index, batch in enumerate(loader):
        batch = {k: v.to(model.device) for k, v in batch.items()}
        if max_batches and index >= max_batches:
            means.append(model.encode(batch["encoder_input_ids"], batch["encoder_attention_mask"])[0])
            continue
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    encoder_input_ids=batch["encoder_input_ids"],
                    encoder_attention_mask=batch["encoder_attention_mask"], use_cache=False)
        recon_sum, count = token_sum_cross_entropy(out.logits, batch["labels"])
        targets = batch["labels"][:, 1:]
        hits = (out.logits[:, :-1].argmax(dim=-1) == targets) & (targets != IGNORE_INDEX)
        recon, tokens, correct = recon + float(recon_sum), tokens + int(count), correct + int(hits.sum())
        kl += float(gaussian_kl(out.mu.float(), out.logvar.float()).sum())
        counted += batch["input_ids"].shape[0]
        means.append(out.mu)
    units, variances = active_units(torch.cat(means).float(), ACTIVE_UNIT_THRESHOLD) if len(segments) > 1 else (0, [])

    chosen = list(segments if not reconstruct else segments[:reconstruct])
    exact = 0
    for start in range(0, len(chosen), batch_size):
        group = chosen[start: start + batch_size]
        batch = collate_segments(group, _pad_id(tokenizer), tokenizer.eos_token_id)
        mu, _ = model.encode(batch["encoder_input_ids"].to(model.device),
                             batch["encoder_attention_mask"].to(model.device))
        generated = decode_latents(model, tokenizer, [s.prompt_ids for s in group], mu,
                                   max_new_tokens=max(len(s.body_ids) for s in group) + 1)
        exact += sum(ids == s.body_ids + [tokenizer.eos_token_id] for ids, s in zip(generated, group, strict=True))
    model.train(was_training)
    if not tokens:
        return None
    recon_per_token = recon / tokens
    return {
        "recon_per_token": recon_per_token,
        "perplexity": math.exp(min(recon_per_token, 50.0)),
        "token_accuracy": correct / max(tokens, 1),
        "kl_per_segment": kl / max(counted, 1),
        "elbo_per_segment": -(recon + kl) / max(counted, 1),
        "exact_reconstruction": exact / max(len(chosen), 1),
        "reconstructed_segments": len(chosen),
        "active_units": units,
        "latent_size": model.config.latent_size,
        "latent_variances": [round(v, 5) for v in variances],
        "evaluated_segments": counted,
    }


@torch.no_grad()
def prior_samples(model: MusicVAE, tokenizer: Any, segments: Sequence[Segment], num: int, seed: int,
                  max_new_tokens: int) -> list[dict[str, Any]]:
    """``num`` tunes from ``z ~ N(0, I)``, sampled under constrained decoding with the prompts (conditions and
    header) of the first ``num`` segments, each checked."""
    chosen = list(segments[:num])
    if not chosen:
        return []
    frames = [dataclasses.replace(s.frame, pickup=0) for s in chosen]  # a phrase from scratch: no pickup
    bars = [model.config.segment_bars or None] * len(chosen)
    latents = sample_latents(len(chosen), model.config.latent_size, seed)
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        generated = decode_latents(model, tokenizer, [s.prompt_ids for s in chosen], latents,
                                   max_new_tokens=max_new_tokens, frames=frames, num_bars=bars, do_sample=True,
                                   top_p=0.95)
    finally:
        torch.random.set_rng_state(rng_state)
    return [dataclasses.asdict(decoded_tune(tokenizer, frame.header, ids))
            for frame, ids in zip(frames, generated, strict=True)]


# --- save ------------------------------------------------------------------------------------------------


def save_vae_final(cfg: TrainConfig, accelerator: Accelerator, model: Any, tokenizer: Any,
                   summary: dict[str, Any]) -> Path:
    """``OUTPUT_DIR/final``: model (safetensors), tokenizer (with its abcgen metadata, so the folder also
    serves as ``model.tokenizer``), control vocabulary, generation config, run config, summary."""
    unwrapped = accelerator.unwrap_model(model)

    def write(folder: Path) -> None:
        unwrapped.save_pretrained(folder, safe_serialization=True)
        write_run_files(folder, cfg, tokenizer, summary)

    # a temporary sibling renamed into place: a kill during the save leaves the previous final/
    return save_final_folder(cfg, accelerator, write)


# --- the run ---------------------------------------------------------------------------------------------


def train_vae(cfg: TrainConfig, accelerator: Accelerator) -> dict[str, Any]:
    """Train a ``MusicVAE`` as ``cfg`` says and write ``OUTPUT_DIR/final``; returns the training summary
    (also ``final/training_summary.json``)."""
    started = time.perf_counter()
    out = Path(cfg.checkpoint.output_dir)

    # Setup: the tokenizer is built once (main process), then read by everyone.
    with accelerator.main_process_first():
        tokenizer, _ = build_tokenizer(cfg.model, cfg.data.corpus, out)
    identity = run_identity(cfg, tokenizer)
    data = prepare_segments(cfg, tokenizer)
    train_segments = data[cfg.data.train_split]
    eval_segments: list[Segment] = data.get(eval_split(cfg), []) if eval_split(cfg) else []
    model = build_vae(cfg, tokenizer)
    parameters = count_parameters(model)
    log.info("MusicVAE: %s parameters, latent %d, segments of %s", f"{parameters['total']:,}", cfg.vae.latent_size,
             f"{cfg.vae.segment_bars} bars" if cfg.vae.segment_bars else "whole tunes")
    optimizer, scheduler = make_optimizer(cfg, model)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    loader = accelerator.prepare_data_loader(
        segment_loader(train_segments, cfg.optim.micro_batch_size, tokenizer, shuffle=True, seed=cfg.optim.seed))
    if len(loader) < 1:
        raise ConfigError(f"{len(train_segments)} training segments make no batch of optim.micro_batch_size="
                          f"{cfg.optim.micro_batch_size} on each of {accelerator.num_processes} processes: lower it")
    start_run_folder(cfg, accelerator, identity, fresh=True)  # the VAE loop never resumes
    accelerator.init_trackers("abcgen", config=tracker_config(cfg))

    # The loop: one iteration = one optimiser step over grad_accum_steps micro-batches.
    batches = _forever(loader)
    dropout_rng = torch.Generator().manual_seed(cfg.optim.seed * 1_000_003 + accelerator.process_index)
    history: list[dict[str, Any]] = []
    evaluations: list[dict[str, Any]] = []
    progress = tqdm(total=cfg.optim.max_steps, desc="train vae", disable=not accelerator.is_local_main_process)
    model.train()
    for step in range(1, cfg.optim.max_steps + 1):
        micro_batches = [next(batches) for _ in range(cfg.optim.grad_accum_steps)]
        kl_weight = kl_weight_at(step - 1, cfg.vae.kl_anneal_steps, cfg.vae.kl_weight)
        record = {"step": step, **optimizer_step(model, optimizer, scheduler, micro_batches, accelerator, cfg,
                                                 kl_weight, dropout_rng)}
        history.append(record)
        progress.update()
        if log_due(cfg, step):
            progress.set_postfix(loss=f"{record['loss']:.2f}", kl=f"{record['kl_per_segment']:.2f}")
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
        if eval_segments and evaluation_due(cfg, step):
            if accelerator.is_main_process:
                evaluation = _evaluate(cfg, accelerator, model, tokenizer, eval_segments, step)
                if evaluation is not None:
                    evaluations.append(evaluation)
            accelerator.wait_for_everyone()
    progress.close()

    last_eval = evaluations[-1] if evaluations else {}
    summary = {
        "architecture": "vae",
        "config": section_config(cfg),
        "data": data["stats"],
        "steps": len(history),
        "segments_seen": sum(h["segments"] for h in history),
        "tokens_seen": sum(h["tokens"] for h in history),
        "first_loss": history[0]["loss"],
        "final_loss": history[-1]["loss"],
        "final_kl_per_segment": history[-1]["kl_per_segment"],
        "final_recon_per_token": history[-1]["recon_per_token"],
        "eval": {k: v for k, v in last_eval.items() if k not in ("samples", "step")},
        "evaluations": [{k: v for k, v in e.items() if k not in ("samples", "latent_variances")} for e in evaluations],
        "history": history,
        "samples": last_eval.get("samples", []),
        "run_fingerprint": identity["fingerprint"],
        "parameters": parameters,
        "seconds": round(time.perf_counter() - started, 1),
        "hardware": hardware_summary(accelerator),
    }
    final = save_vae_final(cfg, accelerator, model, tokenizer, summary)
    accelerator.end_training()
    log.info("done: %d steps, loss %.3f -> %.3f, KL %.2f nats, model in %s", len(history), summary["first_loss"],
             summary["final_loss"], summary["final_kl_per_segment"], final)
    return summary


def _evaluate(cfg: TrainConfig, accelerator: Accelerator, model: Any, tokenizer: Any, segments: Sequence[Segment],
              step: int) -> dict[str, Any] | None:
    """One evaluation on the main process: the measures, logged, and prior samples; ``None`` when there was
    nothing to evaluate."""
    unwrapped = accelerator.unwrap_model(model)
    metrics = evaluate_vae(unwrapped, tokenizer, segments, batch_size=cfg.optim.micro_batch_size,
                           max_batches=eval_batch_limit(cfg), reconstruct=cfg.vae.reconstruct_segments)
    if metrics is None:
        log.warning("step %d: no evaluation: split %r has no segment to evaluate", step, eval_split(cfg))
        return None
    accelerator.log({f"eval_{k}": v for k, v in metrics.items() if isinstance(v, int | float)}, step=step)
    log.info("step %d: eval recon %.3f nats/token, token accuracy %.3f, KL %.2f nats, exact reconstruction %.3f "
             "(%d segments), active units %d/%d", step, metrics["recon_per_token"], metrics["token_accuracy"],
             metrics["kl_per_segment"], metrics["exact_reconstruction"], metrics["reconstructed_segments"],
             metrics["active_units"], metrics["latent_size"])
    samples = prior_samples(unwrapped, tokenizer, segments, cfg.logging.num_samples, cfg.optim.seed + step,
                            cfg.logging.sample_max_new_tokens) if cfg.logging.num_samples else []
    for sample in samples:
        log.info("prior sample (%s):\n%s", "valid" if sample["valid"] else "INVALID", sample["abc"])
    return {"step": step, **metrics, "samples": samples}


train = train_vae  # what train/finetune.py calls for model.architecture: vae

__all__ = ["build_vae", "evaluate_vae", "prepare_segments", "prior_samples",
           "save_vae_final", "train", "train_vae", "vae_loss"]
