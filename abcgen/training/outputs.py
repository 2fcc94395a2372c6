"""What every training loop builds the same way: the optimiser from ``optim.*`` and the files beside the
weights in ``OUTPUT_DIR/final``. ``train/finetune.py`` (LM, LSTM) and ``abcgen.models.vae_training`` both
call these, so a model folder looks the same whichever family wrote it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

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


def write_run_files(final: str | Path, cfg: TrainConfig, tokenizer: Any, summary: dict[str, Any]) -> None:
    """Beside the weights: the tokenizer, the corpus's control vocabulary, a sampling generation config,
    the run's config (``abcgen_train_config.yaml``: the pipeline reads the trained conditions from it) and
    ``training_summary.json``. Main process only."""
    from transformers import GenerationConfig

    from abcgen.tokenization.extend import save_music_tokenizer

    final = Path(final)
    save_music_tokenizer(tokenizer, final)
    shutil.copy(Path(cfg.data.corpus) / "control_vocabulary.json", final / "control_vocabulary.json")
    GenerationConfig(
        do_sample=True, top_p=0.95, temperature=1.0, max_new_tokens=cfg.logging.sample_max_new_tokens,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(final)
    save_config(cfg, final / "abcgen_train_config.yaml")
    (final / "training_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
