"""What every training loop builds the same way: the optimiser from ``optim.*``, the end of an optimiser
step, and the files beside the weights in ``OUTPUT_DIR/final``. The LM and LSTM loop (``train/finetune.py``),
the VAE loop (``train/vae_loop.py``) and the GAN loop (``train/gan_loop.py``) all call these, so a model
folder looks the same whichever family wrote it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from abcgen.corpus.build import load_corpus
from abcgen.grammar.idioms import idioms_in_corpus
from abcgen.grammar.melody import measure_profiles
from abcgen.model_folder import write_model_identity
from abcgen.model_idioms import write_model_idioms
from abcgen.model_profiles import write_model_profiles
from abcgen.tokenization.extend import save_music_tokenizer
from abcgen.training.config import TrainConfig, save_config

SCHEDULE_NAMES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}  # ours -> transformers'


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters and the warm-up + decay schedule of ``optim.*``."""
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    # fused=True runs on CUDA and, since torch 2.4, on CPU; None lets torch pick its default (foreach)
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                                  eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay,
                                  fused=True if cfg.optim.fused else None)
    scheduler = get_scheduler(SCHEDULE_NAMES[cfg.optim.schedule], optimizer, num_warmup_steps=cfg.optim.warmup_steps,
                              num_training_steps=cfg.optim.max_steps)
    return optimizer, scheduler


def finish_step(model: torch.nn.Module, optimizer: Any, scheduler: Any, accelerator: Any,
                max_grad_norm: float) -> float:
    """The end of every loop's optimiser step, after the backward passes: clip the gradients to
    ``max_grad_norm``, step the optimiser, the schedule (``step_scheduler``), clear the gradients.
    Returns the gradient norm before clipping."""
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    step_scheduler(scheduler, optimizer)
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def step_scheduler(scheduler: Any, optimizer: Any) -> None:
    """Advance the schedule by one optimiser step, once whatever the process count (the Accelerator is made
    with ``step_scheduler_with_optimizer=False``; accelerate would step it once per process otherwise), and
    not when the optimiser skipped its step (a float16 overflow), as accelerate does."""
    if getattr(optimizer, "step_was_skipped", False):
        return
    scheduler.step()


def write_run_record(final: str | Path, cfg: TrainConfig, summary: dict[str, Any]) -> None:
    """What every family's ``final/`` holds beside its weights: the corpus's control vocabulary, the run's
    config (``abcgen_train_config.yaml``: the pipeline reads the trained conditions from it) and
    ``training_summary.json``. Main process only."""
    final = Path(final)
    shutil.copy(Path(cfg.data.corpus) / "control_vocabulary.json", final / "control_vocabulary.json")
    save_config(cfg, final / "abcgen_train_config.yaml")
    (final / "training_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")


def write_run_files(final: str | Path, cfg: TrainConfig, tokenizer: Any, summary: dict[str, Any]) -> None:
    """Beside a token model's weights: the tokenizer, a sampling generation config, the tokenizer's
    fingerprint, the idioms of the training tunes (``idioms.json``: what ``grammar="idiom"`` allows) and
    their pitch profile per mode, note lengths and melodic steps per rhythm (``theory_profiles.json``: the
    pipeline's ``theory_prior``, ``rhythm_prior`` and ``interval_prior``), then
    ``write_run_record``. Main process only."""
    from transformers import GenerationConfig

    final = Path(final)
    save_music_tokenizer(tokenizer, final)
    GenerationConfig(
        do_sample=True, top_p=0.95, temperature=1.0, max_new_tokens=cfg.logging.sample_max_new_tokens,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(final)
    # the tokenizer's fingerprint: loading the model with another tokenizer is refused (check_tokenizer_matches)
    write_model_identity(final, tokenizer, run_fingerprint=summary.get("run_fingerprint"))
    train = load_corpus(cfg.data.corpus)["train"]
    texts = list(train["abc"])
    write_model_idioms(final, idioms_in_corpus(texts), tunes=len(texts), corpus=str(cfg.data.corpus))
    profiles = measure_profiles(texts, list(train["rhythm"]) if "rhythm" in train.column_names else None)
    write_model_profiles(final, **profiles, corpus=str(cfg.data.corpus))
    write_run_record(final, cfg, summary)

