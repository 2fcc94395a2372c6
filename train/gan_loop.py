"""Train a ``MusicGAN`` with accelerate: setup -> data -> loop -> save.

    python train/finetune.py --config train/configs/gan-cpu.yaml        # model.architecture: gan
    accelerate launch train/finetune.py --config train/configs/gan-cpu.yaml

``train/finetune.py`` hands a GAN run to ``train`` (this module's ``train_gan``) right after creating the
Accelerator, so the GAN uses the same command, config file, corpus folder, launcher, data split, evaluation
cadence, final save and summary (``abcgen.training.run``, ``abcgen.training.outputs``) as the language models.

* data: the corpus's tunes become piano-roll windows (``abcgen.models.pianoroll``); the report of windows
  made and tunes/windows skipped, with reasons, goes to the log and to ``training_summary.json``;
* loop: one step = ``gan.critic_steps`` critic updates (each on a fresh real batch and a fresh fake batch
  with the same conditions), then one generator update; Adam with constant learning rates;
* evaluation (every ``logging.eval_every`` steps and at the end): the critic's Wasserstein estimate on the
  eval split against fakes from a fixed latent, and ``logging.num_samples`` tunes written as ABC and checked;
* save: ``OUTPUT_DIR/final`` holds ``config.json`` + ``model.safetensors`` (MusicGAN), the control
  vocabulary, ``abcgen_train_config.yaml`` and ``training_summary.json``. There are no intermediate
  checkpoints (a CPU run takes minutes).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from abcgen.controls import ControlVocabulary
from abcgen.corpus.build import load_corpus
from abcgen.errors import ConfigError
from abcgen.generation.gan import generate_abc
from abcgen.generation.sampling import check_sample
from abcgen.models.gan import (
    NO_RHYTHM,
    MusicGAN,
    MusicGANConfig,
    count_parameters,
    critic_loss,
    generator_loss,
)
from abcgen.models.pianoroll import RollGrid, RollWindow, WindowReport, windows_from_rows
from abcgen.training.config import TrainConfig
from abcgen.training.outputs import write_run_record
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

log = logging.getLogger("abcgen.gan")


# --- data ------------------------------------------------------------------------------------------------

def grid_of(cfg: TrainConfig) -> RollGrid:
    g = cfg.gan
    return RollGrid(g.bars, g.steps_per_whole_note, g.bar_steps, g.lowest_pitch, g.num_pitches)


def load_windows(cfg: TrainConfig) -> dict[str, Any]:
    """Windows of the train and eval splits, each with its report, and the rhythm label of each window as
    the control vocabulary normalises it (rare values -> ``other``; none when rhythm is not a condition)."""
    corpus = load_corpus(cfg.data.corpus)
    vocab = ControlVocabulary.load(cfg.data.corpus)
    grid = grid_of(cfg)
    out: dict[str, Any] = {"vocab": vocab}
    for split, rows in split_rows(cfg, corpus).items():
        windows, report = windows_from_rows(rows, grid)
        for window in windows:
            conditioned = "rhythm" in cfg.data.conditions and window.rhythm
            window.rhythm = vocab.normalise("rhythm", window.rhythm) if conditioned else ""
        out[split] = (windows, report)
        log.info("%s: %d tunes -> %d windows of %d bars; skipped tunes %s, skipped windows %s", split, report.tunes,
                 report.windows, grid.bars, dict(report.skipped_tunes) or "none", dict(report.skipped_windows) or "none")
    return out


def model_config(cfg: TrainConfig, windows: list[RollWindow], vocab: ControlVocabulary) -> MusicGANConfig:
    """The GAN's shape from ``cfg.gan`` and its condition values from the training windows (most frequent first)."""
    g = cfg.gan
    modes = [mode for mode, _ in Counter(w.mode for w in windows).most_common()]
    meters = [meter for meter, _ in Counter(w.meter for w in windows).most_common()]
    rhythms = [NO_RHYTHM] + [r for r, _ in Counter(w.rhythm for w in windows if w.rhythm).most_common()]
    keys = [k for k in vocab.values.get("key", {}) if k != "other" and k.split()[-1] in modes]
    return MusicGANConfig(
        bars=g.bars, steps_per_whole_note=g.steps_per_whole_note, bar_steps=g.bar_steps, lowest_pitch=g.lowest_pitch,
        num_pitches=g.num_pitches, latent_size=g.latent_size, condition_size=g.condition_size,
        generator_width=g.generator_width, critic_width=g.critic_width, loss=g.loss, modes=modes, meters=meters,
        rhythms=rhythms, default_key=keys[0] if keys else f"C {modes[0]}", default_meter=meters[0])


def known_windows(model: MusicGAN, windows: list[RollWindow]) -> list[RollWindow]:
    """The windows whose mode, meter and rhythm the model was built for (eval windows may have others)."""
    config = model.config
    return [w for w in windows if w.mode in config.modes and w.meter in config.meters
            and (w.rhythm or NO_RHYTHM) in config.rhythms]


def to_tensors(model: MusicGAN, windows: list[RollWindow]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rolls ``(n, 2, bars, bar_steps, num_pitches)`` uint8 and condition indices ``(n, 3)`` of ``windows``."""
    rolls = (torch.from_numpy(np.stack([w.roll for w in windows])) if windows
             else torch.zeros((0, *model.config.grid.shape), dtype=torch.uint8))
    conditions = torch.tensor([model.condition_ids(w.mode, w.meter, w.rhythm) for w in windows],
                              dtype=torch.long).view(-1, 3)
    return rolls, conditions


def endless(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches forever, epoch after epoch (a new shuffled order each epoch from the loader's seeded generator)."""
    while True:
        yield from loader


# --- evaluation ------------------------------------------------------------------------------------------

@torch.no_grad()
def wasserstein_estimate(model: MusicGAN, rolls: torch.Tensor, conditions: torch.Tensor, batch_size: int,
                         max_batches: int | None, seed: int) -> float | None:
    """mean D(real) - mean D(fake) over eval windows (at most ``max_batches`` batches; 0 or ``None`` = all),
    fakes from a latent fixed by ``seed``; ``None`` when there is no window: no evaluation, not a score."""
    if not len(rolls):
        return None
    model.eval()
    device = model.device
    latent = model.sample_latent(len(rolls), seed)
    real_sum = fake_sum = 0.0
    count = 0
    for index, start in enumerate(range(0, len(rolls), batch_size)):
        if max_batches and index >= max_batches:
            break
        real = rolls[start:start + batch_size].to(device, torch.float32)
        cond = conditions[start:start + batch_size].to(device)
        fake = model.generator(latent[start:start + batch_size].to(device), cond)
        real_sum += float(model.critic(real, cond).sum())
        fake_sum += float(model.critic(fake, cond).sum())
        count += len(real)
    model.train()
    return (real_sum - fake_sum) / count if count else None


def sample_tunes(model: MusicGAN, windows: list[RollWindow], num: int, seed: int) -> list[dict[str, Any]]:
    """One tune per eval window's conditions (its key, meter, rhythm), with our check's verdict."""
    samples = []
    for index, window in enumerate(windows[:num]):
        conditions = {"key": window.key, "meter": window.meter, "rhythm": window.rhythm}
        abc = generate_abc(model, conditions, 1, seed + index)[0]
        check = check_sample(abc)
        samples.append({"conditions": conditions, "abc": abc, "valid": check.valid, "problems": check.problems})
    return samples


# --- the loop ------------------------------------------------------------------------------------------

def train_gan(cfg: TrainConfig, accelerator: Accelerator) -> dict[str, Any]:
    """Train, evaluate and save a MusicGAN; returns the training summary (also written to final/)."""
    started = time.perf_counter()
    g, batch_size = cfg.gan, cfg.optim.micro_batch_size

    # Data: the same windows on every process (deterministic); the loader shards them.
    data = load_windows(cfg)
    train_windows, train_report = data[cfg.data.train_split]
    if not train_windows:
        raise ConfigError(f"no training windows from {cfg.data.corpus}: {train_report.as_dict()['skipped_tunes']}")
    model = MusicGAN(model_config(cfg, train_windows, data["vocab"]))
    rolls, conditions = to_tensors(model, train_windows)
    eval_windows, eval_report = data.get(eval_split(cfg), ([], WindowReport())) if eval_split(cfg) else ([], WindowReport())
    eval_unknown = len(eval_windows)
    eval_windows = known_windows(model, eval_windows)
    eval_unknown -= len(eval_windows)
    eval_rolls, eval_conditions = to_tensors(model, eval_windows)
    if len(rolls) < batch_size * accelerator.num_processes:
        raise ConfigError(f"{len(rolls)} training windows are fewer than one batch of optim.micro_batch_size="
                          f"{batch_size} on {accelerator.num_processes} process(es): lower the batch size or add tunes")
    parameters = count_parameters(model)
    log.info("MusicGAN (%s): %s parameters (generator %s, critic %s); modes %s, meters %s, rhythms %s", g.loss,
             f"{parameters['total']:,}", f"{parameters['generator']:,}", f"{parameters['critic']:,}",
             model.config.modes, model.config.meters, model.config.rhythms)

    loader = DataLoader(TensorDataset(rolls, conditions), batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.optim.seed))
    optimizer_g = torch.optim.Adam(model.generator.parameters(), lr=g.lr_generator, betas=(g.beta1, g.beta2))
    optimizer_c = torch.optim.Adam(model.critic.parameters(), lr=g.lr_critic, betas=(g.beta1, g.beta2))
    generator, critic, optimizer_g, optimizer_c, loader = accelerator.prepare(
        model.generator, model.critic, optimizer_g, optimizer_c, loader)
    # Noise of this process: seeded apart from the global RNG, and different on every process.
    noise = torch.Generator(device="cpu").manual_seed(cfg.optim.seed * 1000 + accelerator.process_index)
    start_run_folder(cfg, accelerator, run_identity(cfg, None), fresh=True)  # the GAN loop never resumes
    accelerator.init_trackers("abcgen", config=tracker_config(cfg))

    def draw_latent() -> torch.Tensor:
        return torch.randn(batch_size, g.latent_size, generator=noise).to(accelerator.device)

    history: list[dict[str, Any]] = []
    batches = endless(loader)
    progress = tqdm(total=cfg.optim.max_steps, desc="gan", disable=not accelerator.is_local_main_process)
    generator.train()
    critic.train()
    for step in range(1, cfg.optim.max_steps + 1):
        critic_stats: list[dict[str, float]] = []
        for _ in range(g.critic_steps):
            real_uint8, cond = next(batches)
            real = real_uint8.float()
            with torch.no_grad():
                fake = generator(draw_latent(), cond)
            loss_c, stats = critic_loss(critic, real, fake, cond, g.loss, g.gp_weight)
            optimizer_c.zero_grad(set_to_none=True)
            accelerator.backward(loss_c)
            optimizer_c.step()
            critic_stats.append(stats)
        # The generator step: the last real batch's conditions, fresh noise.
        loss_g = generator_loss(critic, generator(draw_latent(), cond), cond)
        optimizer_g.zero_grad(set_to_none=True)
        accelerator.backward(loss_g)
        optimizer_g.step()
        progress.update()

        evaluate_now = evaluation_due(cfg, step)
        if log_due(cfg, step) or evaluate_now:
            local = {key: float(np.mean([s[key] for s in critic_stats])) for key in critic_stats[0]}
            local["generator_loss"] = float(loss_g)
            values = accelerator.reduce(torch.tensor(list(local.values()), device=accelerator.device), "mean")
            record: dict[str, Any] = {"step": step, **dict(zip(local, values.tolist(), strict=True))}
            progress.set_postfix(W=f"{record['wasserstein']:.3f}", G=f"{record['generator_loss']:.3f}")
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
            history.append(record)
        if evaluate_now and accelerator.is_main_process:
            metrics: dict[str, Any] = {}
            estimate = wasserstein_estimate(model, eval_rolls, eval_conditions, batch_size, eval_batch_limit(cfg),
                                            cfg.optim.seed)
            if estimate is not None:  # no eval window: no evaluation, never a score
                metrics["eval_wasserstein"] = estimate
            samples = sample_tunes(model, eval_windows or train_windows, cfg.logging.num_samples, cfg.optim.seed + step)
            metrics["samples_valid"] = sum(s["valid"] for s in samples)
            accelerator.log(metrics, step=step)
            log.info("step %d: W estimate %.4f (eval %s), generator loss %.4f, %d of %d samples valid", step,
                     history[-1]["wasserstein"], f"{metrics['eval_wasserstein']:.4f}" if "eval_wasserstein" in metrics
                     else "-", history[-1]["generator_loss"], metrics["samples_valid"], len(samples))
            for sample in samples:
                log.info("sample (%s, %s):\n%s", sample["conditions"], "ok" if sample["valid"] else "INVALID",
                         sample["abc"])
            history[-1].update(metrics, samples=samples)
    progress.close()
    seconds = time.perf_counter() - started

    summary = {
        "family": "gan",
        "config": section_config(cfg),
        "model": model.config.to_dict(),
        "data": {"train": train_report.as_dict(), "eval": eval_report.as_dict(),
                 "eval_windows_with_unseen_conditions": eval_unknown,
                 "train_conditions": {"modes": dict(Counter(w.mode for w in train_windows).most_common()),
                                      "meters": dict(Counter(w.meter for w in train_windows).most_common()),
                                      "rhythms": dict(Counter(w.rhythm or NO_RHYTHM for w in train_windows).most_common())}},
        "steps": cfg.optim.max_steps,
        "windows_seen": cfg.optim.max_steps * g.critic_steps * batch_size * accelerator.num_processes,
        "first": {k: v for k, v in history[0].items() if k != "samples"},
        "final": {k: v for k, v in history[-1].items() if k != "samples"},
        "history": [{k: v for k, v in h.items() if k != "samples"} for h in history],
        "samples": next((h["samples"] for h in reversed(history) if "samples" in h), []),
        "parameters": parameters,
        "seconds": round(seconds, 1),
        "steps_per_second": round(cfg.optim.max_steps / seconds, 2),
        "hardware": hardware_summary(accelerator),
    }
    final = save_final(cfg, accelerator, model, summary)
    accelerator.end_training()
    log.info("done: %d steps in %.1f s, W estimate %.4f -> %.4f, model in %s", cfg.optim.max_steps, seconds,
             summary["first"]["wasserstein"], summary["final"]["wasserstein"], final)
    return summary


def save_final(cfg: TrainConfig, accelerator: Accelerator, model: MusicGAN, summary: dict[str, Any]) -> Path:
    """``final/``: the MusicGAN folder, the control vocabulary, the run config and the summary."""
    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        write_run_record(folder, cfg, summary)

    # a temporary sibling renamed into place: a kill during the save leaves the previous final/
    return save_final_folder(cfg, accelerator, write)


train = train_gan  # what train/finetune.py calls for model.architecture: gan
