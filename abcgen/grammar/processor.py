"""The ``LogitsProcessor`` that applies one ``AbcConstraint`` per batch row during ``generate``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from abcgen.errors import ConfigError
from abcgen.grammar.constraint import AbcConstraint


class AbcLogitsProcessor(LogitsProcessor):
    """Masks, per batch row, every token its ``AbcConstraint`` does not allow (score ``-inf``), and adds
    the logit bonus of weighted rules (``AbcConstraint.bonus``) to the allowed ones, keeping the total
    probability of the notes (``weigh``).

    ``constraints``: one per batch row (a fresh state each: build them per ``generate`` call). When
    ``generate`` expands the batch (``num_return_sequences=k``) and there are ``rows / k`` constraints,
    each is copied ``k`` times in ``repeat_interleave`` order. ``prompt_lengths``: the length of each row's
    prompt in ``input_ids`` (an int for all rows; with left padding, the padded length). Put it before
    temperature / top-p (``generate`` applies a ``logits_processor`` list before its warpers) and do
    not combine it with ``min_new_tokens``, which could mask the only token allowed.
    """

    def __init__(self, constraints: Sequence[AbcConstraint], prompt_lengths: int | Sequence[int]) -> None:
        self.constraints = list(constraints)
        if not self.constraints:
            raise ConfigError("AbcLogitsProcessor needs at least one constraint")
        if isinstance(prompt_lengths, int):
            prompt_lengths = [prompt_lengths] * len(self.constraints)
        self.prompt_lengths = [int(n) for n in prompt_lengths]
        if len(self.prompt_lengths) != len(self.constraints):
            raise ConfigError(f"{len(self.constraints)} constraints but {len(self.prompt_lengths)} prompt lengths")

    def _expand(self, rows: int) -> None:
        count = len(self.constraints)
        if rows == count:
            return
        if rows % count:
            raise ConfigError(f"the batch has {rows} rows but {count} constraints were given")
        k = rows // count
        expanded, lengths = [], []
        for c, n in zip(self.constraints, self.prompt_lengths, strict=True):
            expanded += [c] + [c.copy() for _ in range(k - 1)]
            lengths += [n] * k
        self.constraints, self.prompt_lengths = expanded, lengths

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, length = input_ids.shape
        self._expand(rows)
        constraints = self.constraints
        new = [length - n - c.state.generated for c, n in zip(constraints, self.prompt_lengths, strict=True)]
        most = max(new)
        if most > 0:
            tail = input_ids[:, length - most:].tolist()
            for c, count, row in zip(constraints, new, tail, strict=True):
                for token_id in row[most - count:]:
                    c.advance(token_id)
        device, width = scores.device, scores.shape[-1]
        blocked = torch.stack([c.device_mask(device, width, blocked=True) for c in constraints])
        scores = scores.masked_fill(blocked, -math.inf)
        bonuses = [c.device_bonus(device, width) for c in constraints]
        if any(b is not None for b in bonuses):  # weighted rules (cadence, theory prior) favour some allowed notes
            zero = torch.zeros(width, device=device)
            notes = self._notes(constraints[0], device, width)
            scores = weigh(scores, torch.stack([zero if b is None else b for b in bonuses]).to(scores.dtype), notes)
        return scores

    def _notes(self, c: AbcConstraint, device: torch.device, width: int) -> torch.Tensor:
        """The vocabulary's note tokens (``MusicVocabulary.notes``) on ``device``, padded to ``width``, cached."""
        cached = getattr(self, "_note_mask", None)
        if cached is None or cached.device != device or cached.numel() != width:
            mask = c.vocab.notes
            mask = torch.cat([mask, torch.zeros(max(0, width - mask.numel()), dtype=torch.bool)])[:width]
            cached = self._note_mask = mask.to(device)
        return cached


def weigh(scores: torch.Tensor, bonus: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``scores + bonus`` (rows, V), shifted so that the allowed tokens of ``group`` (V,: the notes) keep their
    total probability.

    A weighted rule decides *which* note (its degree, its length, the cadence note), not whether a note comes at
    all: adding a log-prior to the notes alone would also move probability from everything else (bar lines,
    spaces, ornaments) to the notes whenever the model already agrees with the prior. So per row, the group's
    allowed tokens are shifted by one constant, ``logsumexp(scores + bonus) - logsumexp(scores)`` over them:
    their share of the distribution is the model's, the order within it the product of the model and the
    prior. A bonus outside the group is added as it is."""
    weighted = group.unsqueeze(0) & torch.isfinite(scores)
    if not bool(weighted.any()):
        return scores + bonus
    low = torch.finfo(scores.dtype).min
    before = torch.logsumexp(torch.where(weighted, scores, low), dim=-1, keepdim=True)
    after = torch.logsumexp(torch.where(weighted, scores + bonus, low), dim=-1, keepdim=True)
    shift = torch.where(weighted.any(dim=-1, keepdim=True), after - before, torch.zeros_like(before))
    return torch.where(weighted, scores + bonus - shift, scores + bonus)


__all__ = ["AbcLogitsProcessor", "weigh"]
