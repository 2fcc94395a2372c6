"""Fine-tune a causal language model on ABC music with accelerate: setup -> data -> loop -> save.

    accelerate launch train/finetune.py --config train/configs/tiny-cpu.yaml [--lora.r 32 ...]
    accelerate launch --config_file train/accelerate/multi-gpu-ddp.yaml train/finetune.py --config ...

Read it top to bottom; every stage is a plain function call. What it guarantees:

* packing without cross-talk: tunes share fixed-length rows, but attention is block-diagonal and position
  ids restart per tune (``abcgen.training.data``), by the fastest path the attention implementation has
  (``abcgen.training.attention``: varlen offsets, a block-sparse or a dense mask);
* speed switches that leave the loss unchanged (``tests/test_speed_switches.py``): ``model.compile``,
  ``optim.loss_impl=hidden`` (the logits are never built whole), ``optim.fused``, ``data.pin_memory``;
* gradient accumulation that weights every real token equally: the micro-batches of one optimiser step
  are fetched first, their label tokens counted and summed over all processes, and each micro-batch's
  summed loss is divided by that one global count (times the world size, because DDP averages);
* exact resume: a checkpoint holds model, optimiser, scheduler, RNG states and the data position
  (epoch, batch); ``--checkpoint.resume latest`` continues the same loss curve step by step;
* honest output: ``OUTPUT_DIR/final`` holds the merged model, the adapter (LoRA), the tokenizer (and its
  fingerprint, ``abcgen_model.json``), the control vocabulary, a generation config and
  ``training_summary.json``; it is written into a temporary sibling and renamed, so a kill during the save
  leaves the previous ``final/`` loadable;
* one learning-rate schedule whatever the process count: the scheduler steps once per optimiser step
  (accelerate's prepared scheduler would step once per process);
* a run has an identity (``abcgen.training.run``): a fresh run into a folder holding another run is refused
  without ``checkpoint.overwrite``, and a resume with settings that change the data or the model is
  refused, naming them; a damaged newest checkpoint is skipped for the one before it;
* user errors (config, missing folders, damaged weights, unwritable output) are one line on stderr and exit
  code 2, checked before any work; ``-v``/``--verbose`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, is_tensorboard_available, set_seed
from accelerate.utils import extract_model_from_parallel as accelerate_unwrap
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from abcgen.controls import ControlVocabulary, row_controls
from abcgen.corpus.build import load_corpus
from abcgen.errors import ConfigError
from abcgen.generation.midi_pipeline import sample_remi
from abcgen.generation.sampling import sample_tunes
from abcgen.model_folder import check_tokenizer_matches
from abcgen.training.attention import packed_attention_path, prepare_attention_implementation
from abcgen.training.checkpoint import find_checkpoint, load_checkpoint, read_trainer_state, save_checkpoint
from abcgen.training.config import TrainConfig, parse_args
from abcgen.training.data import (
    PackedDataset,
    build_examples,
    collate_packed,
    epoch_order,
    forward_kwargs,
    pack_examples,
)
from abcgen.training.loss import DEFAULT_CHUNK_SIZE, global_token_count, loss_scale, model_token_loss
from abcgen.training.model import (
    apply_lora,
    build_tokenizer,
    count_parameters,
    load_model,
    resolve_dtype,
    trained_token_rows,
)
from abcgen.training.outputs import finish_step, make_optimizer, write_run_files
from abcgen.training.run import (
    check_corpus,
    check_launch,
    check_model_inputs,
    check_output,
    check_resume_identity,
    drop_previous_run,
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
    used_parts,
)
from abcgen.training.speed import check_compile_supported, compile_model, eager_mode, resolve_pin_memory

log = logging.getLogger("abcgen.finetune")


# --- setup ---------------------------------------------------------------------------------------------

def setup_accelerator(cfg: TrainConfig) -> Accelerator:
    # gradient_accumulation_steps stays 1 here on purpose: accelerate would divide every loss by it, and
    # our losses are already normalised by the global token count of the whole optimiser step.
    # Several processes and no GPU (torchrun or `accelerate launch --multi_gpu` on a CPU machine): accelerate
    # only picks gloo on CPU when told cpu=True; otherwise every process would train alone as rank 0.
    multi_process_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    check_launch()  # `accelerate launch --num_processes 2` without --multi_gpu starts one process
    accelerator = Accelerator(
        cpu=multi_process_cpu,
        # The scheduler steps once per optimiser step, by us: accelerate's prepared scheduler would step
        # num_processes times per step (it assumes a schedule counted in single-process batches).
        step_scheduler_with_optimizer=False,
        log_with="tensorboard" if cfg.logging.tensorboard else None,
        project_dir=cfg.checkpoint.output_dir,
        # pinned batches (data.pin_memory) are only worth it when the copy to the GPU does not block
        dataloader_config=DataLoaderConfiguration(non_blocking=resolve_pin_memory(cfg.data.pin_memory)),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if accelerator.distributed_type == DistributedType.DEEPSPEED and cfg.optim.grad_accum_steps > 1:
        # DeepSpeed steps its optimiser inside backward(): our explicit accumulation window would become
        # one optimiser step per micro-batch.
        raise ConfigError("optim.grad_accum_steps > 1 is not supported with DeepSpeed in this loop; raise "
                          "optim.micro_batch_size (or use train/accelerate/fsdp2.yaml) instead")
    if cfg.logging.tensorboard and not is_tensorboard_available():
        # accelerate would only warn and track nothing
        raise ConfigError("logging.tensorboard=true needs the tensorboard package: pip install 'abcgen[tracking]', "
                          "or pass --logging.tensorboard false")
    check_speed_settings(cfg, accelerator.device.type)
    set_seed(cfg.optim.seed)
    log.info("world size %d (%s), per-process micro-batch %d x %d accumulation steps = %d per process per "
             "optimiser step", accelerator.num_processes, accelerator.distributed_type.value,
             cfg.optim.micro_batch_size, cfg.optim.grad_accum_steps,
             cfg.optim.micro_batch_size * cfg.optim.grad_accum_steps)
    return accelerator


def check_speed_settings(cfg: TrainConfig, device_type: str) -> str:
    """Check the attention implementation, packed-attention path and compile settings against this
    hardware before anything is built (registers ``torch_varlen`` when asked for); returns the path."""
    prepare_attention_implementation(cfg.model.attn_implementation, device_type)
    check_compile_supported(cfg.model.compile, cfg.model.compile_backend, device_type)
    return packed_attention_path(cfg.model.attn_implementation, cfg.data.packed_attention)


def make_collate(cfg: TrainConfig) -> Callable[[list[Any]], dict[str, Any]]:
    """``collate_packed`` with the packed-attention path of the config (picklable, for worker processes)."""
    return functools.partial(collate_packed,
                             attention=packed_attention_path(cfg.model.attn_implementation, cfg.data.packed_attention),
                             mask_dtype=resolve_dtype(cfg.model.dtype))


def prepare_data(cfg: TrainConfig, tokenizer: Any, accelerator: Accelerator) -> dict[str, Any]:
    """Tokenise and pack the train and eval splits (identically on every process: deterministic)."""
    corpus = load_corpus(cfg.data.corpus)
    vocab = ControlVocabulary.load(cfg.data.corpus)
    packed: dict[str, Any] = {"vocab": vocab, "stats": {}, "eval_conditions": []}
    evaluated = eval_split(cfg)
    for split, rows in split_rows(cfg, corpus).items():
        examples, stats = build_examples(
            rows, tokenizer, vocab, max_length=cfg.data.max_length, loss_on=cfg.data.loss_on,
            conditions=cfg.data.conditions,
            # no condition dropout on eval: its loss must be comparable from run to run
            condition_dropout=cfg.data.condition_dropout if split == cfg.data.train_split else 0.0,
            unconditional_dropout=cfg.data.unconditional_dropout if split == cfg.data.train_split else 0.0,
            seed=cfg.optim.seed, detailed=True, representation=cfg.data.representation,
        )
        packed[split] = pack_examples(examples, cfg.data.max_length, seed=cfg.optim.seed,
                                      pad_id=tokenizer.pad_token_id or 0)
        packed["stats"][split] = {**stats, "rows": len(packed[split])}
        log.info("%s: %s", split, packed["stats"][split])
        log.info("%s: tune lengths (tokens, prompt + body + EOS) p50 %s p90 %s p98 %s max %s; whole at max_length=%d: "
                 "%s %% (98 %% whole needs %s)", split, stats["length_p50"], stats["length_p90"], stats["length_p98"],
                 stats["length_max"], cfg.data.max_length, stats["whole_at_max_length"], stats["max_length_98"])
    # Conditions of the first eval tunes: what the samples logged at each evaluation are asked for.
    if evaluated:
        packed["eval_conditions"] = [
            {name: value for name, value in row_controls(row).items() if name in cfg.data.conditions}
            for row in corpus[evaluated].select(range(min(8, len(corpus[evaluated]))))
        ]
    if not packed[cfg.data.train_split]:
        raise ConfigError(f"no training rows from data.corpus={cfg.data.corpus!r} split {cfg.data.train_split!r}: "
                          "check the corpus (abcgen data build) or data.max_length")
    return packed


def train_loader(cfg: TrainConfig, rows: list[Any], epoch: int, accelerator: Accelerator) -> DataLoader:
    """The batches of one epoch in a fixed, seeded order; accelerate shards them across processes so that
    every process sees different rows."""
    ordered = [rows[i] for i in epoch_order(len(rows), cfg.optim.seed, epoch)]
    # Its own generator: creating a DataLoader iterator draws a seed from the *global* torch RNG otherwise,
    # and a resumed run creates its iterator at a different moment than an uninterrupted one.
    loader = DataLoader(PackedDataset(ordered), batch_size=cfg.optim.micro_batch_size, shuffle=False,
                        collate_fn=make_collate(cfg), num_workers=cfg.data.num_workers,
                        pin_memory=resolve_pin_memory(cfg.data.pin_memory), drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.optim.seed + epoch))
    return accelerator.prepare_data_loader(loader)


# --- one optimiser step ----------------------------------------------------------------------------------

def train_step(model: Any, micro_batches: list[dict[str, torch.Tensor]], accelerator: Accelerator, *,
               loss_impl: str = "logits", chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[float, int]:
    """Forward/backward over the micro-batches of one optimiser step; returns (mean loss per token, tokens).

    Each token weighs the same whatever micro-batch or process it is in: the loss of a micro-batch is its
    summed token loss over the number of label tokens in the whole step on all processes (times the
    number of processes, because DDP averages gradients). ``loss_impl``/``chunk_size``: how the loss is
    computed (``optim.loss_impl``, ``optim.loss_chunk_size``; ``abcgen.training.loss.model_token_loss``)."""
    global_tokens = global_token_count(micro_batches, accelerator)  # raises if every label is masked
    scale = loss_scale(global_tokens, accelerator)
    loss_sum = torch.zeros((), device=accelerator.device)
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        # Gradients are all-reduced once, after the last micro-batch of the step.
        sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
        with sync:
            token_loss, _ = model_token_loss(model, forward_kwargs(batch), batch["labels"], impl=loss_impl,
                                             chunk_size=chunk_size)
            accelerator.backward(token_loss * scale)
        loss_sum += token_loss.detach()
    total = accelerator.reduce(loss_sum, "sum")
    return float(total) / global_tokens, global_tokens


def optimizer_step(model: Any, optimizer: Any, scheduler: Any, micro_batches: list[dict[str, torch.Tensor]],
                   accelerator: Accelerator, max_grad_norm: float, *, loss_impl: str = "logits",
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, float]:
    """One optimiser step: forward/backward over the micro-batches, clip, step, schedule. Returns what the
    loop records for the step (the benchmark in benchmarks/train_throughput.py times exactly this)."""
    loss, tokens = train_step(model, micro_batches, accelerator, loss_impl=loss_impl, chunk_size=chunk_size)
    grad_norm = finish_step(model, optimizer, scheduler, accelerator, max_grad_norm)
    return {"loss": loss, "tokens": tokens, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm}


@torch.no_grad()
def evaluate(model: Any, loader: DataLoader, accelerator: Accelerator, max_batches: int | None, *,
             loss_impl: str = "logits", chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, float] | None:
    """Token-weighted eval loss and perplexity over at most ``max_batches`` batches per process (``None`` or
    0: the whole split); ``None`` when no token was evaluated (an empty or tiny split): no evaluation is
    never reported as a perfect score.

    Runs eagerly even when the model is compiled (``eager_mode``): an inference graph would be one more
    compilation for a few batches."""
    model.eval()
    loss_sum = torch.zeros((), device=accelerator.device)
    tokens = torch.zeros((), device=accelerator.device)
    for index, batch in enumerate(loader):
        if max_batches and index >= max_batches:
            break
        with eager_mode():
            token_loss, count = model_token_loss(model, forward_kwargs(batch), batch["labels"], impl=loss_impl,
                                                 chunk_size=chunk_size)
        loss_sum += token_loss
        tokens += count
    model.train()
    loss_sum, tokens = accelerator.reduce(loss_sum, "sum"), accelerator.reduce(tokens, "sum")
    if int(tokens) == 0:
        return None
    loss = float(loss_sum / tokens)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)), "eval_tokens": int(tokens)}


# --- save ------------------------------------------------------------------------------------------------

def save_final(cfg: TrainConfig, accelerator: Accelerator, model: Any, tokenizer: Any, summary: dict[str, Any]) -> Path:
    """The one place the model is saved: ``final/`` (merged weights, loadable by AutoModelForCausalLM),
    ``final/adapter`` for LoRA, tokenizer, control vocabulary, generation config, summary."""
    unwrapped = accelerator.unwrap_model(model)

    def write(folder: Path) -> None:
        if cfg.model.method == "lora":
            unwrapped.save_pretrained(folder / "adapter")
            merged = unwrapped.merge_and_unload()
        else:
            merged = unwrapped
        merged.save_pretrained(folder, safe_serialization=True)
        write_run_files(folder, cfg, tokenizer, summary)

    # Written into a temporary sibling and renamed: a kill during the save leaves the previous final/.
    return save_final_folder(cfg, accelerator, write)


# --- main ------------------------------------------------------------------------------------------------

VERBOSE_FLAGS = ("-v", "--verbose")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command: a user error (``ConfigError``) is one line on stderr and exit code 2, its traceback only
    with ``-v``/``--verbose``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg in VERBOSE_FLAGS for arg in argv)
    try:
        return train([arg for arg in argv if arg not in VERBOSE_FLAGS])
    except ConfigError as exc:
        if verbose:  # the traceback too, but still the exit code of a user error
            traceback.print_exc()
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None


def preflight(cfg: TrainConfig) -> None:
    """Everything a user can get wrong, checked before any work (tokenising, loading, training): the
    launcher, the output folder (writable, not another run's), the corpus and its splits, the model folder
    and the tokenizer (present, weights readable)."""
    check_launch()
    check_output(cfg)
    check_corpus(cfg)
    check_model_inputs(cfg)


def resume_point(cfg: TrainConfig, identity: dict[str, Any]) -> Path | None:
    """The checkpoint this run continues (``None``: a fresh run), its identity checked against this run's."""
    out = Path(cfg.checkpoint.output_dir)
    path = find_checkpoint(out, cfg.checkpoint.resume) if cfg.checkpoint.resume else None
    if path is not None:
        check_resume_identity(read_trainer_state(path).get("identity"), identity, path)
    elif cfg.checkpoint.resume and used_parts(out) and not cfg.checkpoint.overwrite:
        raise ConfigError(f"checkpoint.resume={cfg.checkpoint.resume!r} found no checkpoint in {str(out)!r}, but it "
                          f"holds another run ({', '.join(used_parts(out))}): a fresh run would replace it; pass "
                          "--checkpoint.overwrite true (without resume) or choose another output_dir")
    return path


# The VAE and the GAN are not causal LMs over packed rows: each has a loop of its own beside this file,
# started from here so that every family trains through the same command, config and accelerate launcher.
FAMILY_LOOPS = {"vae": "vae_loop", "gan": "gan_loop"}


def family_module(architecture: str) -> ModuleType:
    """``train/vae_loop.py`` or ``train/gan_loop.py``, whose ``train(cfg, accelerator)`` runs that family.
    Run as a script, this folder is on ``sys.path`` already; loaded by path (runpy, tests) it is put there."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(FAMILY_LOOPS[architecture])


def train(argv: list[str]) -> dict[str, Any]:
    cfg = parse_args(argv)
    preflight(cfg)
    accelerator = setup_accelerator(cfg)
    if cfg.model.architecture in FAMILY_LOOPS:
        return family_module(cfg.model.architecture).train(cfg, accelerator)
    out = Path(cfg.checkpoint.output_dir)
    started = time.perf_counter()

    # Tokenizer and model. The tokenizer is built once (main process), then read by everyone.
    with accelerator.main_process_first():
        tokenizer, base_tokenizer = build_tokenizer(cfg.model, cfg.data.corpus, out, cfg.data.representation)
    identity = run_identity(cfg, tokenizer)
    resume_from = resume_point(cfg, identity)  # before the model is loaded: a refused resume costs nothing
    model, new_token_ids = load_model(cfg.model, tokenizer, base_tokenizer, cfg.data.representation)
    # every id the tokenizer gives has an embedding row (the base's own tokenizer was checked by build_tokenizer)
    check_tokenizer_matches(model, tokenizer, fingerprint=False)
    token_rows = trained_token_rows(cfg.lora, tokenizer, new_token_ids) if cfg.model.method == "lora" else []
    if cfg.model.method == "lora":
        model = apply_lora(model, cfg.lora, token_rows)
    model = compile_model(model, cfg.model.compile, backend=cfg.model.compile_backend)
    parameters = count_parameters(model)
    log.info("model: %s method=%s, %s parameters (%s trainable), %d new token rows, %d token rows trained",
             cfg.model.name_or_path or "scratch", cfg.model.method, f"{parameters['total']:,}",
             f"{parameters['trainable']:,}", len(new_token_ids), len(token_rows))

    data = prepare_data(cfg, tokenizer, accelerator)
    train_rows = data[cfg.data.train_split]
    eval_rows = data[eval_split(cfg)] if eval_split(cfg) else []
    optimizer, scheduler = make_optimizer(cfg, model)
    # The scheduler is prepared (so it is checkpointed) but steps once per optimiser step: see setup_accelerator.
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    eval_loader = accelerator.prepare_data_loader(
        DataLoader(PackedDataset(eval_rows), batch_size=cfg.optim.micro_batch_size, collate_fn=make_collate(cfg),
                   generator=torch.Generator().manual_seed(cfg.optim.seed))) if eval_rows else None
    start_run_folder(cfg, accelerator, identity, fresh=resume_from is None)
    accelerator.init_trackers("abcgen", config=tracker_config(cfg))

    # Resume: model, optimiser, scheduler and RNG from accelerate's state; the data position from ours.
    step, epoch, batch_in_epoch, history = 0, 0, 0, []
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from)
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        history = state.get("history", [])
        log.info("resumed from %s at step %d (epoch %d, batch %d)", resume_from, step, epoch, batch_in_epoch)

    # The loop: one iteration = one optimiser step over grad_accum_steps micro-batches.
    accum = cfg.optim.grad_accum_steps
    batches_per_epoch = len(train_rows) // (cfg.optim.micro_batch_size * accelerator.num_processes)
    if batches_per_epoch < accum:
        raise ConfigError(f"{len(train_rows)} packed rows give {batches_per_epoch} micro-batches per process per epoch, "
                         f"fewer than optim.grad_accum_steps={accum}: lower the batch size or add data")
    progress = tqdm(total=cfg.optim.max_steps, initial=step, desc="train", disable=not accelerator.is_local_main_process)
    tokens_seen = sum(h.get("tokens", 0) for h in history)
    batch_digests: list[str] = []
    model.train()
    while step < cfg.optim.max_steps:
        loader = train_loader(cfg, train_rows, epoch, accelerator)
        iterator = iter(accelerator.skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader)
        while step < cfg.optim.max_steps and batch_in_epoch + accum <= batches_per_epoch:
            micro_batches = [next(iterator) for _ in range(accum)]
            batch_in_epoch += accum
            if cfg.logging.record_batches:
                batch_digests += [_digest(b["input_ids"]) for b in micro_batches]
            record = optimizer_step(model, optimizer, scheduler, micro_batches, accelerator, cfg.optim.max_grad_norm,
                                    loss_impl=cfg.optim.loss_impl, chunk_size=cfg.optim.loss_chunk_size)
            step += 1
            tokens_seen += record["tokens"]
            record = {"step": step, **record}
            loss = record["loss"]
            history.append(record)
            progress.update()
            if log_due(cfg, step):
                progress.set_postfix(loss=f"{loss:.4f}")
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
            if eval_loader is not None and evaluation_due(cfg, step):
                metrics = evaluate(model, eval_loader, accelerator, eval_batch_limit(cfg),
                                   loss_impl=cfg.optim.loss_impl, chunk_size=cfg.optim.loss_chunk_size)
                if metrics is None:
                    log.warning("step %d: no evaluation: split %r has no token to evaluate", step, eval_split(cfg))
                else:
                    record.update(metrics)
                    accelerator.log(metrics, step=step)
                    log.info("step %d: loss %.4f, eval loss %.4f (perplexity %.2f)", step, loss,
                             metrics["eval_loss"], metrics["eval_perplexity"])
                if accelerator.is_main_process and cfg.logging.num_samples and data["eval_conditions"]:
                    with eager_mode():  # generation shapes would each be a compilation
                        sampler = sample_remi if cfg.data.representation == "remi" else sample_tunes
                        samples = sampler(accelerator.unwrap_model(model), tokenizer, data["vocab"],
                                          data["eval_conditions"][: cfg.logging.num_samples],
                                          max_new_tokens=cfg.logging.sample_max_new_tokens,
                                          seed=cfg.optim.seed + step)
                    record["samples"] = [asdict(sample) for sample in samples]
                    for sample in samples:
                        log.info("sample (%s, bar check %s):\n%s", sample.conditions,
                                 "ok" if sample.bar_check_ok else "FAILED", sample.abc)
                        _log_text(accelerator, f"sample/{sample.conditions}", sample.abc, step)
            if step % cfg.checkpoint.save_every == 0 and step < cfg.optim.max_steps:
                save_checkpoint(accelerator, out, step, {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                                                         "history": history, "identity": identity},
                                keep_last=cfg.checkpoint.keep_last)
                if accelerator.is_main_process:
                    drop_previous_run(out)  # checkpoint.overwrite: the replaced run goes once this one has saved
        if batch_in_epoch + accum > batches_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
    progress.close()

    # Every process reports what it trained on and what it ended with: disjoint data, identical weights.
    shards = accelerator.gather_for_metrics([batch_digests], use_gather_object=True) if cfg.logging.record_batches else []
    checksums = accelerator.gather_for_metrics([_weights_checksum(model)], use_gather_object=True)
    summary = {
        "config": section_config(cfg),
        "data": data["stats"],
        "steps": step,
        "epochs_completed": epoch,
        "tokens_seen": tokens_seen,
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        # the last evaluation; {} when there was none (no eval split, or no token in it): never a fake score
        "eval": next(({k: h[k] for k in ("eval_loss", "eval_perplexity", "eval_tokens")} for h in reversed(history)
                      if "eval_loss" in h), {}),
        "run_fingerprint": identity["fingerprint"],
        "history": [{k: v for k, v in h.items() if k != "samples"} for h in history],
        "samples": next((h["samples"] for h in reversed(history) if "samples" in h), []),
        "parameters": parameters,
        "new_token_rows": len(new_token_ids),
        "data_shards": shards,  # per process: digests of the micro-batches it trained on (record_batches)
        "weight_checksums": checksums,  # per process: must all be equal
        "seconds": round(time.perf_counter() - started, 1),
        "hardware": hardware_summary(accelerator),
    }
    final = save_final(cfg, accelerator, model, tokenizer, summary)
    accelerator.end_training()
    log.info("done: %d steps, %d tokens, loss %.4f -> %.4f, model in %s", step, tokens_seen,
             summary["first_loss"] or float("nan"), summary["final_loss"] or float("nan"), final)
    return summary


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.blake2b(tensor.detach().cpu().numpy().tobytes(), digest_size=8).hexdigest()


def _weights_checksum(model: Any) -> str:
    """A digest of every trainable parameter's bytes on this process."""
    digest = hashlib.blake2b(digest_size=12)
    for name, param in sorted(accelerate_unwrap(model).named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _log_text(accelerator: Accelerator, tag: str, text: str, step: int) -> None:
    """Sampled tunes go to tensorboard as text (code-formatted: ABC needs its line breaks)."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_text(tag, "    " + text.replace("\n", "\n    "), step)


if __name__ == "__main__":
    main()
