"""Direct preference optimisation on pairs of tunes: the batch, the sequence log-probabilities, the loss.

A pair is one prompt (BOS, control prefix, header: what the pipeline fed the model) and two completions the
model generated for it, *chosen* and *rejected* (token ids as sampled, ``return_token_ids``). The loss
compares how much more likely the policy makes the chosen tune than the reference does, against the same
for the rejected tune (Rafailov et al., 2023)::

    delta = [log pi(chosen) - log ref(chosen)] - [log pi(rejected) - log ref(rejected)]
    sigmoid: -log sigmoid(beta * delta)                 (DPO)
    hinge:   max(0, 1 - beta * delta)                   (SLiC)
    ipo:     (delta' - 1 / (2 beta))^2, delta' with each log-ratio divided by its completion's tokens (IPO)
    + sft_weight x the chosen tune's negative log-likelihood per token (RPO; TRL's ``rpo_alpha``)

with the names, the beta convention and IPO's per-token normalisation of TRL's ``DPOTrainer`` (``loss_type``).
TRL 1.x computes its loss inside ``DPOTrainer._compute_loss``, interleaved with its own model forward and
trainer state, so a loop of our own (on-policy generation between updates, our checkpoints) cannot call it;
these few lines are checked against a hand computation in ``tests/test_align.py``.

The log-probability of a completion is the sum over its tokens of log p(token | everything before), in
float32; prompt tokens are context only. ``log ref`` is computed once per round, before any update, and
stored with the pairs (TRL's ``precompute_ref_log_probs``): the reference is frozen by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from abcgen.training.config_checks import DPO_LOSS_TYPES


def collate_pairs(pairs: Sequence[Any], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of ``2 n`` rows from ``n`` pairs (each with ``prompt_ids``, ``chosen_ids``, ``rejected_ids``):
    the chosen completions first, then the rejected ones (TRL's layout), right-padded with ``pad_id``.

    Returns ``input_ids`` and ``attention_mask`` (2n, T) and ``completion_mask`` (2n, T): 1 on the
    completion's tokens, 0 on the prompt and the padding."""
    rows, masks = [], []
    for side in ("chosen_ids", "rejected_ids"):
        for pair in pairs:
            prompt, completion = list(_get(pair, "prompt_ids")), list(_get(pair, side))
            if not completion:
                raise ValueError(f"a pair has an empty {side.removesuffix('_ids')} completion: nothing to score")
            rows.append(prompt + completion)
            masks.append([0] * len(prompt) + [1] * len(completion))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        completion[i, : len(row)] = torch.tensor(mask)
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


def _get(pair: Any, name: str) -> Any:
    return pair[name] if isinstance(pair, dict) else getattr(pair, name)


def completion_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each row's completion, (rows,) float32, and its token counts, (rows,).

    The logits are turned into log-probabilities row by row, so the float32 copy is one row's
    (positions x vocabulary), not the batch's."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    targets = batch["input_ids"][:, 1:]  # token t is predicted at position t - 1
    mask = batch["completion_mask"][:, 1:].to(torch.float32)
    sums = []
    for row in range(logits.shape[0]):
        log_probs = torch.log_softmax(logits[row, :-1].float(), dim=-1)  # (T - 1, vocabulary)
        picked = log_probs.gather(-1, targets[row].unsqueeze(-1)).squeeze(-1)  # (T - 1,)
        sums.append((picked * mask[row]).sum())
    return torch.stack(sums), mask.sum(dim=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, *, beta: float, loss_type: str = "sigmoid",
             chosen_tokens: torch.Tensor | None = None, rejected_tokens: torch.Tensor | None = None,
             sft_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The per-pair loss, (pairs,), and the implicit rewards ``beta * log-ratio`` of both sides (pairs,).
    All log-probabilities are sums over the completion's tokens; ``ipo`` and ``sft_weight`` also need the
    token counts. ``sft_weight`` adds that weight times the chosen completion's mean negative log-likelihood
    per token (RPO, Pang et al. 2024; TRL's ``rpo_alpha``): DPO alone can lower the likelihood of the chosen
    tunes too, as long as the rejected ones fall faster, and a small model then drifts off the music."""
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
    needs_tokens = loss_type == "ipo" or sft_weight
    if needs_tokens and (chosen_tokens is None or rejected_tokens is None):
        raise ValueError("loss_type='ipo' and sft_weight average per token: give chosen_tokens and rejected_tokens")
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss_type == "ipo":
        delta = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (delta - 1.0 / (2.0 * beta)) ** 2
    else:
        delta = chosen_ratio - rejected_ratio
        losses = -F.logsigmoid(beta * delta) if loss_type == "sigmoid" else torch.relu(1.0 - beta * delta)
    if sft_weight:
        losses = losses + sft_weight * (-policy_chosen / chosen_tokens.clamp(min=1))
    rewards = {"chosen": beta * chosen_ratio.detach(), "rejected": beta * rejected_ratio.detach()}
    return losses, rewards


__all__ = ["collate_pairs", "completion_logps", "dpo_loss"]
