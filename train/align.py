"""Preference alignment with music rewards: rounds of generate -> score -> pair -> DPO, on a fine-tuned model.

    accelerate launch train/align.py --config train/configs/quickstart-align.yaml [--align.rounds 4 ...]
    python -m torch.distributed.run --nproc_per_node 2 train/align.py --config ...    # two processes on CPU

Read it top to bottom; each round is four plain function calls:

1. **generate** (``generate_round``): ``align.requests_per_round`` condition sets drawn from the training
   split's labels (``draw_requests``, as ``abcgen evaluate`` draws from the test split), and for each
   ``align.samples_per_request`` tunes from the ``abc-generation`` pipeline on the live policy, with the
   pipeline's default decoding (constrained, its priors at their defaults: the tunes the model would give a
   user), or with ``align.priors: false`` constrained decoding alone (the model's own distribution, the one
   DPO's log-ratios are computed under: ``prior_options``). Requests are shared out over the processes and
   gathered back.
2. **score** (main process; ``abcgen.evaluation.reward``): validity gates (ours and abc2midi), then key,
   rhythm, tonic ending, repetition near the corpus's, no copies, diversity within the round.
3. **pair** (``build_pairs``): per request, its best valid tune against its worst (an invalid one first),
   and with ``align.pairs_per_request`` above 1 its second best against its second worst, and so on; the
   reference log-probabilities of both are computed now, before any update, with the adapter off.
   Written to ``OUTPUT_DIR/rounds/round-NNN/pairs.jsonl`` (conditions, both tunes, their rewards and
   terms) beside ``report.json`` (counts, mean reward and terms, validity, diversity, and from round 2
   ``fresh_pairs``: the share of the new pairs the policy already prefers, before training on them -- a
   held-out preference accuracy that stays near 0.5 when the pairs teach nothing that generalises), atomically.
4. **DPO** (``dpo_epoch``): ``align.epochs_per_round`` passes over the pairs in a seeded order,
   ``align.pair_batch_size`` pairs per process per optimiser step (``abcgen.training.preference``).

Then a checkpoint (model, optimiser, scheduler, RNG, round, history). The reference is the model as it was
before alignment: ``model.name_or_path`` (a ``final/`` folder of ``train/finetune.py``) is loaded once, a
fresh LoRA adapter (``lora.*``) is the only thing trained, and ``disable_adapter()`` gives the reference --
no second copy of the weights. ``OUTPUT_DIR/final`` is then a model folder like finetune's (merged weights,
the alignment adapter in ``adapter/``, tokenizer, control vocabulary, profiles, ``training_summary.json``
with every round's report), so ``abcgen evaluate`` and the pipeline read it as any other.

Guarantees, as ``train/finetune.py``'s: a user error is one line and exit code 2 before any work; a fresh
run into a used folder is refused without ``checkpoint.overwrite``; ``--checkpoint.resume latest``
continues after the last finished round and gives the same pairs and losses as an uninterrupted run
(generation seeds depend on the round and the request only; ``tests/test_align.py`` kills a run and
resumes it); the diversity guard stops alignment when a round's distinct bar bigrams fall below
``align.diversity_floor`` of round 1's (the model collapsing onto what the reward likes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finetune.py beside this file, however it is run

from finetune import VERBOSE_FLAGS, resume_point, setup_accelerator  # noqa: E402

from abcgen.atomic import write_text_atomic  # noqa: E402
from abcgen.corpus.build import load_corpus  # noqa: E402
from abcgen.errors import ConfigError  # noqa: E402
from abcgen.evaluation.generate import Request, draw_requests  # noqa: E402
from abcgen.evaluation.metrics import distinct_bar_ngrams  # noqa: E402
from abcgen.evaluation.reward import TERMS, RewardScorer, build_pairs  # noqa: E402
from abcgen.generation.model_files import load_control_vocabulary, trained_conditions  # noqa: E402
from abcgen.model_folder import check_tokenizer_matches  # noqa: E402
from abcgen.notation.piece import read_pieces  # noqa: E402
from abcgen.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from abcgen.training.config import TrainConfig, parse_args  # noqa: E402
from abcgen.training.model import apply_lora, build_tokenizer, count_parameters, load_model  # noqa: E402
from abcgen.training.outputs import finish_step, make_optimizer, write_run_files  # noqa: E402
from abcgen.training.preference import collate_pairs, completion_logps, dpo_loss  # noqa: E402
from abcgen.training.run import (  # noqa: E402
    check_corpus,
    check_launch,
    check_model_inputs,
    check_output,
    hardware_summary,
    run_identity,
    save_final_folder,
    section_config,
    start_run_folder,
    tracker_config,
)

log = logging.getLogger("abcgen.align")
ROUNDS = "rounds"


# --- setup ---------------------------------------------------------------------------------------------

def preflight(cfg: TrainConfig) -> None:
    """What a user can get wrong, checked before any work: the launcher, the output folder, the corpus,
    the model folder; the method (a fresh LoRA adapter: the reference is the model with it off); the
    conditions (those the model was fine-tuned with, so the control prefix is the one it knows)."""
    check_launch()
    check_output(cfg)
    check_corpus(cfg)
    check_model_inputs(cfg)
    if cfg.model.method != "lora":
        raise ConfigError(f"model.method={cfg.model.method!r}: alignment trains a fresh LoRA adapter on the model "
                          "and uses the model without it as the reference; set model.method=lora")
    if not cfg.model.name_or_path:
        raise ConfigError("model.name_or_path is empty: give the model to align (OUTPUT_DIR/final of finetune.py)")
    trained = trained_conditions(cfg.model.name_or_path)
    if list(cfg.data.conditions) != list(trained):
        raise ConfigError(f"data.conditions={list(cfg.data.conditions)} but {cfg.model.name_or_path!r} was fine-tuned "
                          f"with {list(trained)}: pass --data.conditions {','.join(trained)}")


def load_policy(cfg: TrainConfig, accelerator: Accelerator) -> tuple[Any, Any]:
    """The model with a fresh LoRA adapter (the policy; with the adapter off, the reference) and its tokenizer.
    The corpus must need no token the model lacks: alignment does not grow the vocabulary."""
    out = Path(cfg.checkpoint.output_dir)
    with accelerator.main_process_first():
        tokenizer, base_tokenizer = build_tokenizer(cfg.model, cfg.data.corpus, out)
    model, new_token_ids = load_model(cfg.model, tokenizer, base_tokenizer)
    if new_token_ids:
        raise ConfigError(f"data.corpus={cfg.data.corpus!r} has {len(new_token_ids)} control tokens "
                          f"{cfg.model.name_or_path!r} lacks: align on the corpus the model was fine-tuned on")
    check_tokenizer_matches(model, tokenizer, fingerprint=False)
    # Dropout stays off in every forward pass (the model is in eval mode throughout, as TRL disables it):
    # the policy must equal the reference until the first update, and a resumed run must redo the same sums.
    return apply_lora(model, cfg.lora, token_rows=[]), tokenizer


def generation_pipeline(model: Any, tokenizer: Any) -> Any:
    """The ``abc-generation`` pipeline on the live policy: the PEFT model's base module carries the LoRA
    layers in place, and its ``name_or_path`` is the model folder (control vocabulary, theory profiles)."""
    from transformers import pipeline

    from abcgen.generation.pipeline import TASK

    return pipeline(TASK, model=model.get_base_model(), tokenizer=tokenizer)


def optimiser_steps_bound(cfg: TrainConfig, processes: int) -> int:
    """The most optimiser steps the run can take (every request paired): the schedule's length."""
    pairs = cfg.align.requests_per_round * cfg.align.pairs_per_request
    per_epoch = math.ceil(pairs / (cfg.align.pair_batch_size * processes))
    return max(1, cfg.align.rounds * cfg.align.epochs_per_round * per_epoch)


# --- 1. generate ---------------------------------------------------------------------------------------

def generation_seed(cfg: TrainConfig, round_index: int, request_index: int) -> int:
    """A request's sampling seed: the same whatever the process count and however often the run resumed."""
    return (cfg.optim.seed * 1_000_003 + round_index * 10_007 + request_index) % (2 ** 31)


# The pipeline's decoding priors, all off: constrained decoding of the model's own distribution.
NO_PRIORS = {"theory_prior": 0.0, "opening_prior": 0.0, "rhythm_prior": 0.0, "interval_prior": 0.0,
             "unison_penalty": 0.0}


def prior_options(cfg: TrainConfig) -> dict[str, float]:
    """The pipeline arguments of ``align.priors``: none (the pipeline's defaults) or ``NO_PRIORS``."""
    return {} if cfg.align.priors else dict(NO_PRIORS)


def generate_round(cfg: TrainConfig, pipe: Any, requests: list[Request], round_index: int,
                   accelerator: Accelerator) -> list[dict[str, Any]]:
    """``samples_per_request`` tunes per request, each process generating every ``num_processes``-th request;
    returns every tune on every process, in request order, each with ``request`` (its index)."""
    a = cfg.align
    mine = list(range(accelerator.process_index, len(requests), accelerator.num_processes))
    tunes: list[dict[str, Any]] = []
    for index in tqdm(mine, desc=f"round {round_index}: generate", disable=not accelerator.is_main_process):
        results = pipe(**requests[index].conditions, num_return_sequences=a.samples_per_request,
                       temperature=a.temperature, top_p=a.top_p, seed=generation_seed(cfg, round_index, index),
                       return_token_ids=True, **prior_options(cfg))
        tunes += [{"request": index, "abc": r["abc"], "valid": r["valid"], "problems": r["problems"],
                   "prompt_ids": r["prompt_ids"], "token_ids": r["token_ids"]} for r in results]
    gathered = gather_object(tunes) if accelerator.num_processes > 1 else tunes
    return sorted(gathered, key=lambda t: t["request"])  # stable: a request's tunes keep their order


# --- 2. score and 3. pair --------------------------------------------------------------------------------

def score_and_pair(cfg: TrainConfig, scorer: RewardScorer | None, tunes: list[dict[str, Any]],
                   requests: list[Request], accelerator: Accelerator) -> dict[str, Any]:
    """Rewards (main process: abc2midi and the classifier run once), the round's pairs and the distinct bar
    bigrams of its valid tunes, on every process."""
    payload: list[Any] = [None]
    if accelerator.is_main_process:
        pieces = read_pieces([t["abc"] for t in tunes])
        rewards = scorer.score(tunes, [requests[t["request"]].conditions for t in tunes], pieces)
        valid = [piece for piece, reward in zip(pieces, rewards, strict=True) if reward.valid]
        groups: dict[int, list[int]] = {}
        for i, tune in enumerate(tunes):
            groups.setdefault(tune["request"], []).append(i)
        outcome = build_pairs(list(groups.values()), rewards, cfg.align.min_margin, cfg.align.pairs_per_request)
        payload = [{"rewards": [r.as_dict() for r in rewards], "pairs": outcome.pairs, "skipped": outcome.skipped,
                    "distinct_bar_bigrams": round(distinct_bar_ngrams(valid, 2), 4) if valid else None}]
    if accelerator.num_processes > 1:
        broadcast_object_list(payload, from_process=0)
    return payload[0]


@torch.no_grad()
def pair_logps(model: Any, pairs: list[dict[str, Any]], pad_id: int, batch_size: int, accelerator: Accelerator,
               *, adapter: bool) -> list[tuple[float, float]]:
    """(chosen, rejected) summed log-probabilities of every pair, in the pairs' order, on every process: under
    the policy (``adapter``) or the reference (the adapter off). The batches are those of one process whatever
    the count (the same numbers to the last bit), dealt out to the processes and gathered back."""
    starts = list(range(0, len(pairs), batch_size))
    mine = []
    for start in starts[accelerator.process_index::accelerator.num_processes]:
        chunk = pairs[start:start + batch_size]
        with contextlib.nullcontext() if adapter else model.disable_adapter():
            logps, _ = completion_logps(model, collate_pairs(chunk, pad_id))
        chosen, rejected = logps.split(len(chunk))
        mine += [(start + i, c, r) for i, (c, r) in enumerate(zip(chosen.tolist(), rejected.tolist(), strict=True))]
    gathered = gather_object(mine) if accelerator.num_processes > 1 else mine
    return [(c, r) for _, c, r in sorted(gathered)]


def reference_logps(model: Any, pairs: list[dict[str, Any]], pad_id: int, batch_size: int,
                    accelerator: Accelerator) -> None:
    """``ref_chosen_logp``/``ref_rejected_logp`` of every pair under the reference (the adapter off), in place."""
    for pair, (c, r) in zip(pairs, pair_logps(model, pairs, pad_id, batch_size, accelerator, adapter=False),
                            strict=True):
        pair["ref_chosen_logp"], pair["ref_rejected_logp"] = c, r


def fresh_pair_preference(model: Any, pairs: list[dict[str, Any]], pad_id: int, batch_size: int,
                          accelerator: Accelerator, beta: float) -> dict[str, float] | None:
    """Does what the policy learned in the earlier rounds carry over to this round's pairs, which it has not
    trained on? The share of them whose chosen tune it already prefers (its implicit reward, ``beta`` x the
    log-ratio to the reference, higher for the chosen tune) and the mean implicit-reward margin, before this
    round's first update: a held-out preference accuracy (TRL's ``rewards/accuracies`` on an eval split).
    Near 0.5 round after round, the pairs teach the policy nothing that generalises. ``None`` without pairs."""
    if not pairs:
        return None
    policy = pair_logps(model, pairs, pad_id, batch_size, accelerator, adapter=True)
    margins = [beta * ((pc - p["ref_chosen_logp"]) - (pr - p["ref_rejected_logp"]))
               for p, (pc, pr) in zip(pairs, policy, strict=True)]
    return {"accuracy": round(sum(m > 0 for m in margins) / len(margins), 4),
            "margin": round(sum(margins) / len(margins), 4)}


def round_pairs(tunes: list[dict[str, Any]], requests: list[Request], scored: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSONL records of the round's pairs: conditions, both tunes with their rewards, the token ids."""
    rewards = scored["rewards"]
    records = []
    for chosen, rejected in scored["pairs"]:
        c, r = tunes[chosen], tunes[rejected]
        records.append({
            "request": c["request"], "conditions": requests[c["request"]].conditions,
            "chosen": {"abc": c["abc"], **rewards[chosen]}, "rejected": {"abc": r["abc"], **rewards[rejected]},
            "prompt_ids": c["prompt_ids"], "chosen_ids": c["token_ids"], "rejected_ids": r["token_ids"],
        })
    return records


def round_report(round_index: int, tunes: list[dict[str, Any]], scored: dict[str, Any], pairs: list[dict[str, Any]],
                 seconds: float) -> dict[str, Any]:
    """What a round generated and how it scored: counts (tunes = valid + invalid; requests = paired requests +
    skipped), mean reward and mean of each term over the valid tunes, distinct bar bigrams of the round."""
    rewards = scored["rewards"]
    valid = [r for r in rewards if r["valid"]]

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return round(sum(kept) / len(kept), 4) if kept else None

    requests = len({t["request"] for t in tunes})
    return {
        "round": round_index,
        "tunes": len(tunes), "valid": len(valid), "invalid": len(tunes) - len(valid),
        "requests": requests, "paired_requests": len({p["request"] for p in pairs}), "pairs": len(pairs),
        "skipped": scored["skipped"],
        "mean_reward": mean([r["total"] for r in valid]),
        "terms": {name: mean([r["terms"].get(name) for r in valid]) for name in TERMS},
        "copies": sum(r["copied"] for r in valid),
        "distinct_bar_bigrams": scored["distinct_bar_bigrams"],
        "mean_margin": mean([p["chosen"]["total"] - p["rejected"]["total"] for p in pairs
                             if p["rejected"]["total"] is not None]),
        "seconds": round(seconds, 1),
    }


def write_round(out: Path, round_index: int, pairs: list[dict[str, Any]], report: dict[str, Any]) -> Path:
    """``rounds/round-NNN/pairs.jsonl`` and ``report.json``, each written to a temporary sibling and renamed."""
    folder = out / ROUNDS / f"round-{round_index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "pairs.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    write_text_atomic(folder / "report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return folder


# --- 4. DPO ----------------------------------------------------------------------------------------------

def dpo_epoch(cfg: TrainConfig, model: Any, optimizer: Any, scheduler: Any, pairs: list[dict[str, Any]],
              order: list[int], accelerator: Accelerator, pad_id: int) -> list[dict[str, float]]:
    """One pass over the pairs in ``order``: each optimiser step takes ``pair_batch_size`` x processes pairs,
    every process its own ``pair_batch_size``. The loss is the mean over the step's pairs on all processes
    (times the process count: DDP averages gradients). A last step too small to give every process a pair
    is left out (logged). Returns one record per step."""
    a, world, rank = cfg.align, accelerator.num_processes, accelerator.process_index
    width = a.pair_batch_size * world
    records = []
    for start in range(0, len(order), width):
        step_pairs = order[start:start + width]
        if len(step_pairs) < world:
            log.info("%d pair(s) left over at the end of the epoch: fewer than the %d processes", len(step_pairs), world)
            break
        share = [pairs[i] for i in step_pairs[rank::world]]
        batch = {k: v.to(accelerator.device) for k, v in collate_pairs(share, pad_id).items()}
        logps, tokens = completion_logps(model, batch)
        chosen, rejected = logps.split(len(share))
        chosen_tokens, rejected_tokens = tokens.split(len(share))
        ref = torch.tensor([[p["ref_chosen_logp"], p["ref_rejected_logp"]] for p in share], device=logps.device)
        losses, rewards = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], beta=a.beta, loss_type=a.loss_type,
                                   chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens, sft_weight=a.sft_weight)
        accelerator.backward(losses.sum() * world / len(step_pairs))
        grad_norm = finish_step(model, optimizer, scheduler, accelerator, cfg.optim.max_grad_norm)
        sums = torch.stack([losses.detach().sum(), (rewards["chosen"] > rewards["rejected"]).float().sum(),
                            (rewards["chosen"] - rewards["rejected"]).sum()])
        sums = accelerator.reduce(sums, "sum")
        records.append({"loss": float(sums[0]) / len(step_pairs), "reward_accuracy": float(sums[1]) / len(step_pairs),
                        "reward_margin": float(sums[2]) / len(step_pairs), "pairs": len(step_pairs),
                        "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm})
    return records


# --- save ------------------------------------------------------------------------------------------------

def save_final(cfg: TrainConfig, accelerator: Accelerator, model: Any, tokenizer: Any, summary: dict[str, Any]) -> Path:
    """``final/``: the merged aligned weights (loadable by ``from_pretrained`` and the pipeline), the alignment
    adapter in ``adapter/`` (on top of ``model.name_or_path``), tokenizer, vocabulary, profiles, summary."""
    unwrapped = accelerator.unwrap_model(model)

    def write(folder: Path) -> None:
        unwrapped.save_pretrained(folder / "adapter")
        unwrapped.merge_and_unload().save_pretrained(folder, safe_serialization=True)
        write_run_files(folder, cfg, tokenizer, summary)

    return save_final_folder(cfg, accelerator, write)


# --- main ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command: a user error is one line on stderr and exit code 2 (the traceback with ``-v``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg in VERBOSE_FLAGS for arg in argv)
    try:
        return align([arg for arg in argv if arg not in VERBOSE_FLAGS])
    except ConfigError as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None


def align(argv: list[str]) -> dict[str, Any]:
    cfg = parse_args(argv)
    preflight(cfg)
    accelerator = setup_accelerator(cfg)
    out = Path(cfg.checkpoint.output_dir)
    started = time.perf_counter()
    a = cfg.align

    model, tokenizer = load_policy(cfg, accelerator)
    identity = run_identity(cfg, tokenizer)
    resume_from = resume_point(cfg, identity)
    parameters = count_parameters(model)
    log.info("aligning %s: %s parameters, %s trainable (a fresh LoRA adapter, r=%d); reference = the adapter off",
             cfg.model.name_or_path, f"{parameters['total']:,}", f"{parameters['trainable']:,}", cfg.lora.r)
    train_rows = [dict(row) for row in load_corpus(cfg.data.corpus)[cfg.data.train_split]]
    vocabulary = load_control_vocabulary(cfg.model.name_or_path)
    trained = trained_conditions(cfg.model.name_or_path)
    scorer = RewardScorer(train_rows, a.reward, seed=cfg.optim.seed + 1) if accelerator.is_main_process else None
    # The schedule spans the most steps the run can take; optim.max_steps is not used (see AlignSettings).
    bounded = dataclasses.replace(cfg, optim=dataclasses.replace(
        cfg.optim, max_steps=optimiser_steps_bound(cfg, accelerator.num_processes)))
    optimizer, scheduler = make_optimizer(bounded, model)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    policy = accelerator.unwrap_model(model)  # the PeftModel: disable_adapter() is the reference
    policy.eval()  # no dropout anywhere (see load_policy); gradients flow all the same
    pipe = generation_pipeline(policy, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start_run_folder(cfg, accelerator, identity, fresh=resume_from is None)
    accelerator.init_trackers("abcgen-align", config=tracker_config(cfg))

    done, step, history, reports, stopped = 0, 0, [], [], ""
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from)
        done, step, history, reports = state["round"], state["step"], state["history"], state["reports"]
        stopped = state.get("stopped", "")
        log.info("resumed after round %d (step %d)", done, step)

    for round_index in range(done + 1, a.rounds + 1):
        if stopped:
            break
        round_started = time.perf_counter()
        requests = draw_requests(train_rows, vocabulary, trained, a.requests_per_round,
                                 seed=cfg.optim.seed * 1_000_003 + round_index, max_bars=a.max_bars,
                                 voices_from_data=False)
        tunes = generate_round(cfg, pipe, requests, round_index, accelerator)
        scored = score_and_pair(cfg, scorer, tunes, requests, accelerator)
        pairs = round_pairs(tunes, requests, scored)
        reference_logps(policy, pairs, pad_id, a.pair_batch_size, accelerator)
        report = round_report(round_index, tunes, scored, pairs, time.perf_counter() - round_started)
        # None in round 1, where the policy is the reference (every margin 0), and for a round without pairs
        report["fresh_pairs"] = (fresh_pair_preference(policy, pairs, pad_id, a.pair_batch_size, accelerator, a.beta)
                                 if round_index > 1 else None)
        if accelerator.is_main_process:
            write_round(out, round_index, pairs, report)
        log.info("round %d: %d/%d tunes valid, mean reward %s, %d pairs (%s skipped), distinct bar bigrams %s%s",
                 round_index, report["valid"], report["tunes"], report["mean_reward"], len(pairs),
                 sum(report["skipped"].values()), report["distinct_bar_bigrams"],
                 f"; the policy already prefers {report['fresh_pairs']['accuracy']:.0%} of the chosen tunes"
                 if report.get("fresh_pairs") else "")

        rng = random.Random(cfg.optim.seed * 1_000_003 + round_index)
        for epoch in range(a.epochs_per_round):
            order = list(range(len(pairs)))
            rng.shuffle(order)
            for record in dpo_epoch(cfg, model, optimizer, scheduler, pairs, order, accelerator, pad_id):
                step += 1
                history.append({"step": step, "round": round_index, "epoch": epoch, **record})
                accelerator.log({k: v for k, v in record.items() if k != "pairs"}, step=step)
        losses = [h["loss"] for h in history if h["round"] == round_index]
        report["dpo_steps"], report["mean_loss"] = len(losses), (round(sum(losses) / len(losses), 4) if losses else None)
        report["seconds"] = round(time.perf_counter() - round_started, 1)
        reports.append(report)
        if accelerator.is_main_process:
            write_round(out, round_index, pairs, report)
        first = reports[0]["distinct_bar_bigrams"]
        if a.diversity_floor and first and report["distinct_bar_bigrams"] is not None and \
                report["distinct_bar_bigrams"] < a.diversity_floor * first:
            stopped = (f"round {round_index}: distinct bar bigrams {report['distinct_bar_bigrams']} fell below "
                       f"align.diversity_floor={a.diversity_floor} x round 1's {first}")
            log.warning("diversity guard: %s; alignment stops here", stopped)
        save_checkpoint(accelerator, out, step, {"round": round_index, "step": step, "history": history,
                                                 "reports": reports, "stopped": stopped, "identity": identity},
                        keep_last=cfg.checkpoint.keep_last)

    summary = {
        "config": section_config(cfg),
        "aligned": cfg.model.name_or_path,
        "rounds": reports,
        "steps": step,
        "stopped": stopped,
        "history": history,
        "parameters": parameters,
        "seconds": round(time.perf_counter() - started, 1),
        "hardware": hardware_summary(accelerator),
    }
    final = save_final(cfg, accelerator, model, tokenizer, summary)
    accelerator.end_training()
    log.info("done: %d rounds, %d DPO steps, model in %s", len(reports), step, final)
    return summary


if __name__ == "__main__":
    main()
