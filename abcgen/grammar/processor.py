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
    the logit bonus of weighted rules (``AbcConstraint.bonus``) to the allowed ones.

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
        if any(b is not None for b in bonuses):  # weighted rules (cadence) favour some allowed tokens
            zero = torch.zeros(width, device=device)
            scores = scores + torch.stack([zero if b is None else b for b in bonuses]).to(scores.dtype)
        return scores


__all__ = ["AbcLogitsProcessor"]
