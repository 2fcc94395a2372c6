"""Plain conditioned sampling: control prefix + ``X:1`` -> ``model.generate`` -> ABC, with a bar check.

This is what training logs at each evaluation and what the quickstart writes. It does not constrain
decoding, so a sample can fail the bar check; the share that passes is reported, not hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from abcgen.controls import ControlVocabulary
from abcgen.errors import AbcgenError


@dataclass
class Sample:
    conditions: dict[str, str]
    abc: str
    bar_check_ok: bool
    problems: list[str] = field(default_factory=list)


def check_sample(abc: str, *, with_bars: bool = False) -> Any:
    """Normalise, lex, bar-check and repeat-check a generated tune with the corpus's own checks.

    Returns ``(passes, problems)``, or ``(passes, problems, bars)`` with ``with_bars``: one dict per bar
    (``index``, ``duration`` and ``meter`` as fraction strings of a whole note, ``ok``)."""
    from abcgen.notation.checks import check_tune
    from abcgen.notation.tune import normalise_tune

    bars: list[dict[str, Any]] = []
    try:
        check = check_tune(normalise_tune(abc))
        problems = check.problems
        bad = {p.bar for p in check.report.problems}
        bars = [{"index": b.index, "duration": str(b.duration), "meter": str(b.meter), "ok": b.index not in bad}
                for b in check.report.bars if b.has_notes]
    except AbcgenError as exc:
        problems = [str(exc)]
    return (not problems, problems, bars) if with_bars else (not problems, problems)


@torch.no_grad()
def sample_tunes(model: Any, tokenizer: Any, vocab: ControlVocabulary, conditions: Sequence[Mapping[str, str]], *,
                 max_new_tokens: int = 256, seed: int = 0, top_p: float = 0.95, temperature: float = 1.0) -> list[Sample]:
    """One tune per conditions mapping. The global torch RNG is restored afterwards, so sampling in the
    middle of training does not change the training run."""
    from abcgen.tokenization.extend import abc_to_ids, ids_to_abc
    from abcgen.training.data import bos_ids

    was_training = model.training
    model.eval()
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    out = []
    try:
        for labels in conditions:
            # Built like a training example: [BOS] + prefix tokens + tune tokens, tokenised apart.
            prompt = bos_ids(tokenizer) + abc_to_ids(tokenizer, vocab.prefix(labels)) + abc_to_ids(tokenizer, "X:1\n")
            ids = torch.tensor([prompt], device=model.device)
            generated = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=True, top_p=top_p,
                                       temperature=temperature, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=tokenizer.eos_token_id)
            abc = "X:1\n" + ids_to_abc(tokenizer, generated[0, ids.shape[1]:].tolist())
            ok, problems = check_sample(abc)
            out.append(Sample(dict(labels), abc, ok, problems))
    finally:
        torch.random.set_rng_state(rng_state)
        model.train(was_training)
    return out
