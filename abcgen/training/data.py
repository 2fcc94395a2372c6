"""Training examples from corpus rows, packed into fixed-length rows that never attend across tunes.

**Example layout** is the prompt contract's (``abcgen.tokenization.prompt``): ``[BOS] + control prefix +
tune + EOS``, long tunes split at bar lines. This module adds what is training-only: which conditions a
tune is labelled with (``conditions``, condition dropout, unconditional dropout), the whole-tune length
statistics logged at training start (``TrainingStats``), and the loss mask choice: ``loss_on="tune"``
masks BOS and the prefix; ``loss_on="all"`` also trains the prefix (the model then learns the condition
distribution, useful for unconditioned sampling). The first token of every example is never a target.

**Dropout.** Per tune, first one draw for ``unconditional_dropout``: on a hit every condition is dropped
together and the prompt is exactly the unconditional prompt classifier-free guidance runs
(``AbcPromptFormat.unconditional_prompt_ids``: BOS + the empty prefix's newline + the text). Otherwise one
draw per condition for ``condition_dropout``. Independent drops of 3-5 conditions at 0.1 leave the empty
prefix on only 0.1^3..0.1^5 of tunes: without the unconditional draw the branch guidance contrasts with
is barely trained. Both draw from the one seeded ``random.Random``; at ``unconditional_dropout=0`` no draw
is made, so the examples are those of a run without it.

**Packing.** ``pack_examples`` puts examples into rows of exactly ``row_length`` tokens by best-fit
decreasing (ties in length broken by a seeded shuffle, rows then shuffled with the same seed: the result
is a pure function of the examples and the seed). The tail of a row is one padding segment (pad id,
labels -100) with its own position ids. ``position_ids`` restart at 0 for every segment.

**Which attention path keeps packed tunes apart** (checked in transformers 5.24's
``masking_utils.create_causal_mask`` and ``_flash_attention_forward``, and by ``tests/test_packing.py``;
``abcgen.training.attention.packed_attention_path`` picks one per attention implementation):

* ``attention_mask=None`` + restarting ``position_ids`` (``collate_packed(..., attention="position_ids")``,
  the default): ``find_packed_sequence_indices`` turns the position ids into a block-diagonal causal
  mask (dense for ``sdpa``/``eager``, a block-sparse ``BlockMask`` for ``flex_attention``) -- **but only
  when the model runs without a cache**. ``_preprocess_mask_arguments`` skips the detection when
  ``cache is not None``, and ``LlamaModel.forward`` creates a ``DynamicCache`` whenever ``use_cache`` is
  true, which is the config default *even in training mode*. With ``use_cache`` left at its default,
  tunes in one row silently attend to each other (logits differ by ~0.2 on a tiny Llama). So call the
  model with ``use_cache=False`` (``forward_kwargs(batch)`` adds it) or set
  ``model.config.use_cache = False``. Not for ``flash_attention_2``: it reads packing from position ids
  only when the batch has one row.
* ``attention="varlen"``: no mask; ``cu_seq_lens_q/k`` and ``max_length_q/k`` (the tunes' offsets in the
  flattened batch) for ``flash_attention_2/3`` and ``torch_varlen`` (``abcgen.training.attention``): no
  ``T x T`` mask and no work between tunes. Position ids still restart per tune (RoPE).
* a 4D additive float mask ``(B, 1, T, T)`` (0 = attend, dtype min = blocked;
  ``attention="mask"``): returned as-is by ``create_causal_mask`` (whatever ``use_cache`` is) and
  correct for both ``sdpa`` and ``eager``. A 4D **bool** mask is *wrong* with ``eager``
  (``attn_weights + mask`` adds 1 to the allowed scores instead of blocking), so only float masks are
  built here. Costs ``B*T*T`` floats per batch and is not usable with flash-attention-2: the fallback.

**Order and resume.** ``epoch_order(num_rows, seed, epoch)`` is the row order of an epoch, a pure
function of its arguments; ``EpochSampler`` yields it and has ``set_epoch`` (accelerate's prepared
loader forwards ``set_epoch`` to it). The data position of a run is ``(epoch, batch index within the
epoch)`` counted in micro-batches of this process's prepared dataloader: resume with
``loader.set_epoch(epoch)`` then ``accelerator.skip_first_batches(loader, batch_index)``.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from abcgen.controls import ControlVocabulary, condition_names, row_controls
from abcgen.errors import ConfigError
from abcgen.tokenization.prompt import (
    IGNORE_INDEX,
    LOSS_ON,
    REPRESENTATION_COLUMNS,
    AbcPromptFormat,
    Example,
    PromptFormat,
    SplitStats,
    bos_ids,
    check_loss_on,
    prompt_format_for,
)
from abcgen.tokenization.prompt import body_cuts as _body_cuts  # noqa: F401  (re-exported for tests)
from abcgen.training.attention import varlen_kwargs

logger = logging.getLogger(__name__)

ATTENTION = ("position_ids", "varlen", "mask")
# IGNORE_INDEX, LOSS_ON, Example, SplitStats and bos_ids are re-exported: the example layout is the prompt
# contract's (abcgen.tokenization.prompt).
__all__ = ["IGNORE_INDEX", "LOSS_ON", "ATTENTION", "EpochSampler", "Example", "PackedDataset", "PackedRow", "SplitStats",
           "TrainingStats", "bos_ids", "build_examples", "collate_packed", "epoch_order", "forward_kwargs",
           "length_stats", "make_row", "pack_examples", "packing_stats", "tune_to_examples"]
_check_loss_on = check_loss_on


LENGTH_QUANTILES = (50, 90, 95, 98, 99)  # percent; logged as length_p50 .. length_p99
WHOLE_SHARE = 98  # percent of tunes that max_length_98 keeps whole
ROW_MULTIPLE = 64  # max_length_98 is rounded up to a multiple of this (tensor-core and kernel friendly)


@dataclass
class TrainingStats(SplitStats):
    """``SplitStats`` plus what training logs at start: unconditional examples and the whole-tune lengths.

    ``lengths`` holds, per tune, the length in tokens of its whole example as ``encode_example`` builds it
    (BOS + the prefix of the conditions kept + header + body + EOS), split or dropped tunes included;
    ``as_dict`` gives its quantiles (``length_stats``) instead of the list.
    """

    unconditional_drops: int = 0  # tunes whose conditions were all dropped together (unconditional_dropout)
    unconditional_examples: int = 0  # examples with an empty prefix, for any reason (also: no labels, every draw)
    no_text: int = 0  # rows without text in the representation's column (a REMI conversion that failed)
    max_length: int = 0  # the max_length the lengths are compared with
    lengths: list[int] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                               if f.name not in ("max_length", "lengths")}
        return {**out, **length_stats(self.lengths, self.max_length)}


def length_stats(lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    """Quantiles of whole-tune lengths (tokens) and what ``max_length`` keeps whole.

    ``length_pNN`` is the nearest-rank quantile (the smallest length with at least NN % of tunes at or
    below it), ``whole_at_max_length`` the percentage of tunes whose whole example fits ``max_length``
    (not split, not dropped), ``max_length_98`` the smallest multiple of 64 that keeps 98 % whole. ``None``
    values for no tunes.
    """
    ranked = sorted(lengths)
    if not ranked:
        return {**{f"length_p{q}": None for q in LENGTH_QUANTILES}, "length_max": None,
                "whole_at_max_length": None, "max_length_98": None}
    out: dict[str, Any] = {f"length_p{q}": _nearest_rank(ranked, q) for q in LENGTH_QUANTILES}
    out["length_max"] = ranked[-1]
    out["whole_at_max_length"] = round(100 * bisect.bisect_right(ranked, max_length) / len(ranked), 1)
    out["max_length_98"] = ROW_MULTIPLE * math.ceil(_nearest_rank(ranked, WHOLE_SHARE) / ROW_MULTIPLE)
    return out


def _nearest_rank(ranked: Sequence[int], percent: int) -> int:
    # integer arithmetic: ceil(percent * n / 100) without float rounding at exact ranks
    return ranked[max(0, -(-percent * len(ranked) // 100) - 1)]


def _draw(p: float, rng: random.Random | None, key: str) -> bool:
    """One seeded Bernoulli(p) draw; no draw at all when ``p <= 0`` (the rng stream stays as without it)."""
    if p <= 0.0:
        return False
    if rng is None:
        raise ConfigError(f"{key} > 0 needs an rng (random.Random(seed)) so the dropout is reproducible")
    return rng.random() < p


def _drop_conditions(labels: Mapping[str, str], condition_dropout: float, rng: random.Random | None,
                     stats: SplitStats) -> dict[str, str]:
    if condition_dropout <= 0.0:
        return dict(labels)
    if rng is None:
        raise ConfigError("condition_dropout > 0 needs an rng (random.Random(seed)) so the dropout is reproducible")
    kept = {}
    for name, value in labels.items():  # one draw per condition, in the mapping's order
        if rng.random() < condition_dropout:
            stats.conditions_dropped += 1
        else:
            kept[name] = value
    return kept


def tune_to_examples(
    abc: str,
    labels: Mapping[str, str],
    tokenizer: Any,
    vocab: ControlVocabulary,
    *,
    max_length: int,
    loss_on: str = "tune",
    condition_dropout: float = 0.0,
    unconditional_dropout: float = 0.0,
    rng: random.Random | None = None,
    stats: SplitStats | None = None,
    prompt_format: PromptFormat | None = None,
) -> list[Example]:
    """The examples of one normalised tune (one, or several chunks when it is longer than ``max_length``).

    ``labels`` are the tune's conditions (``row_controls(row)``, restricted to the ones trained on). With
    probability ``unconditional_dropout`` all of them are dropped together (the unconditional prompt of
    guidance); otherwise each is dropped with probability ``condition_dropout`` (draws from ``rng``, in
    that order). ``stats`` is updated in place; a ``TrainingStats`` also gets the unconditional counts and
    the tune's whole length. The layout is ``prompt_format``'s (default: ``AbcPromptFormat(tokenizer, vocab)``).
    """
    check_loss_on(loss_on)
    if max_length < 2:
        raise ConfigError(f"max_length={max_length} is too small: an example needs at least 2 tokens")
    stats = stats if stats is not None else SplitStats()
    stats.tunes += 1
    dropped_together = _draw(unconditional_dropout, rng, "unconditional_dropout")
    if dropped_together:
        stats.conditions_dropped += len(labels)
        kept: dict[str, str] = {}
    else:
        kept = _drop_conditions(labels, condition_dropout, rng, stats)
    fmt = prompt_format if prompt_format is not None else AbcPromptFormat(tokenizer, vocab)
    not_whole = stats.split_tunes + stats.dropped_tunes
    examples = fmt.encode_example(abc, kept, max_length=max_length, loss_on=loss_on, stats=stats)
    stats.examples += len(examples)
    for example in examples:
        stats.tokens += len(example)
        stats.label_tokens += sum(label != IGNORE_INDEX for label in example.labels)
    if isinstance(stats, TrainingStats):  # the prompt contract's SplitStats has no room for these
        stats.unconditional_drops += dropped_together
        stats.unconditional_examples += 0 if kept else len(examples)
        whole = stats.split_tunes + stats.dropped_tunes == not_whole
        # a split or dropped tune's whole length: its prompt ids (context + text) + EOS, tokenized once more
        stats.lengths.append(len(examples[0]) if whole else len(fmt.prompt_ids(kept, abc)) + 1)
    return examples


def build_examples(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    vocab: ControlVocabulary,
    *,
    max_length: int,
    loss_on: str = "tune",
    conditions: Sequence[str] | None = None,
    condition_dropout: float = 0.0,
    unconditional_dropout: float = 0.0,
    seed: int = 0,
    detailed: bool = False,
    representation: str = "abc",
) -> tuple[list[Example], dict[str, Any]]:
    """Examples of corpus rows (the representation's text column, ``abc`` or ``remi``, + label columns) and
    their ``SplitStats`` as a dict.

    ``representation`` picks the prompt format (``abcgen.tokenization.prompt.prompt_format_for``) and the
    column; a row with an empty text (a tune whose REMI could not be made) gives no example and is counted
    (``no_text``, logged), never silently lost.

    ``conditions`` names the conditions put in the prefix (others are left out; default: every registered
    condition, ``abcgen.controls.condition_names()``). Unconditional and condition dropout draw
    from ``random.Random(seed)`` in row order, so the result is a pure function of the arguments; call
    again with another seed (e.g. ``seed + epoch``) for fresh dropout each epoch. ``detailed`` adds
    ``TrainingStats``'s keys (unconditional counts, whole-tune length quantiles; what training logs), off
    by default so the ``SplitStats`` dict stays as the prompt contract pins it.
    """
    check_loss_on(loss_on)
    names = condition_names()
    conditions = names if conditions is None else conditions
    unknown = [name for name in conditions if name not in names]
    if unknown:
        raise ConfigError(f"unknown conditions {unknown}; valid conditions: {', '.join(names)}")
    for key, p in (("condition_dropout", condition_dropout), ("unconditional_dropout", unconditional_dropout)):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{key}={p} must be between 0 and 1")
    rng = random.Random(seed)
    stats = TrainingStats(max_length=max_length)
    examples: list[Example] = []
    wanted = set(conditions)
    fmt = prompt_format_for(representation, tokenizer, vocab)
    column = REPRESENTATION_COLUMNS[representation]
    for row in rows:
        text = str(row.get(column) or "")
        if not text.strip():
            stats.no_text += 1
            continue
        labels = {name: value for name, value in row_controls(row).items() if name in wanted}
        examples += tune_to_examples(text, labels, tokenizer, vocab, max_length=max_length,
                                     loss_on=loss_on, condition_dropout=condition_dropout,
                                     unconditional_dropout=unconditional_dropout, rng=rng, stats=stats,
                                     prompt_format=fmt)
    if stats.no_text:
        logger.warning("%d rows have no %r text and give no example (rebuild the corpus with --remi for REMI; "
                       "its report.json says why a tune has none)", stats.no_text, column)
    if detailed:
        return examples, stats.as_dict()
    return examples, {f.name: getattr(stats, f.name) for f in fields(SplitStats)}


# --- packing -----------------------------------------------------------------------------------------


@dataclass
class PackedRow:
    """One row of ``row_length`` tokens: 1-D long tensors and the lengths of its segments (the last
    segment is padding when the examples do not fill the row)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    seq_lens: list[int] = field(default_factory=list)
    num_pad: int = 0


def pack_examples(examples: Sequence[Example], row_length: int, *, seed: int, pad_id: int = 0) -> list[PackedRow]:
    """Pack examples into rows of exactly ``row_length`` tokens (best-fit decreasing), deterministically.

    ``pad_id`` fills the tail segment (pass ``tokenizer.pad_token_id``; the value cannot change the loss:
    pad segments have no labels and attend only to themselves). Raises ``ConfigError`` when an example is
    longer than a row (build the examples with ``max_length <= row_length``).
    """
    too_long = [len(e) for e in examples if len(e) > row_length]
    if too_long:
        raise ConfigError(f"{len(too_long)} examples are longer than row_length={row_length} (longest "
                          f"{max(too_long)}); build them with max_length <= row_length")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)  # ties in length in a seeded order, not corpus order
    order.sort(key=lambda i: -len(examples[i]))  # stable sort: the shuffle survives among equal lengths

    bins: list[list[int]] = []  # example indices per row
    free: list[int] = []  # free tokens per row
    by_free: dict[int, list[int]] = {}  # free capacity -> rows with it (the last one is used first)
    capacities: list[int] = []  # sorted free capacities that have rows
    for i in order:
        length = len(examples[i])
        k = bisect.bisect_left(capacities, length)
        if k == len(capacities):
            row = len(bins)
            bins.append([])
            free.append(row_length)
        else:
            capacity = capacities[k]
            row = by_free[capacity].pop()
            if not by_free[capacity]:
                del by_free[capacity]
                capacities.pop(k)
        bins[row].append(i)
        free[row] -= length
        if free[row] > 0:
            if free[row] not in by_free:
                by_free[free[row]] = []
                bisect.insort(capacities, free[row])
            by_free[free[row]].append(row)

    rows = [make_row([examples[i] for i in members], row_length, pad_id=pad_id) for members in bins]
    random.Random(seed + 1).shuffle(rows)
    return rows


def make_row(members: Sequence[Example], row_length: int, *, pad_id: int = 0) -> PackedRow:
    """One packed row of ``members`` in the given order, padded to ``row_length`` with a pad segment."""
    if sum(len(e) for e in members) > row_length:
        raise ConfigError(f"examples of {sum(len(e) for e in members)} tokens do not fit a row of {row_length}")
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    seq_lens: list[int] = []
    for example in members:
        input_ids += example.input_ids
        labels += example.labels
        positions += range(len(example))
        seq_lens.append(len(example))
    num_pad = row_length - len(input_ids)
    if num_pad:
        input_ids += [pad_id] * num_pad
        labels += [IGNORE_INDEX] * num_pad
        positions += range(num_pad)
        seq_lens.append(num_pad)
    return PackedRow(torch.tensor(input_ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long),
                     torch.tensor(positions, dtype=torch.long), seq_lens, num_pad)


def packing_stats(rows: Sequence[PackedRow]) -> dict[str, float]:
    """Rows, tokens, padding tokens, ``padding_share`` (pad / all tokens) and label tokens of packed rows."""
    tokens = sum(int(r.input_ids.numel()) for r in rows)
    pad = sum(r.num_pad for r in rows)
    examples = sum(len(r.seq_lens) - (1 if r.num_pad else 0) for r in rows)
    return {
        "rows": len(rows),
        "examples": examples,
        "tokens": tokens,
        "pad_tokens": pad,
        "padding_share": pad / tokens if tokens else 0.0,
        "label_tokens": sum(int((r.labels != IGNORE_INDEX).sum()) for r in rows),
    }


class PackedDataset(torch.utils.data.Dataset):
    """A map-style dataset over packed rows (use with ``collate_packed``)."""

    def __init__(self, rows: Sequence[PackedRow]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> PackedRow:
        return self.rows[index]


def block_causal_mask(seq_lens_per_row: Sequence[Sequence[int]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive ``(B, 1, T, T)`` mask of packed rows: 0 where a token may attend (same segment, not in
    its future), ``torch.finfo(dtype).min`` elsewhere. Use the model's compute dtype."""
    masks = []
    for seq_lens in seq_lens_per_row:
        segment = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(list(seq_lens)))
        length = segment.numel()
        allowed = (segment[:, None] == segment[None, :]) & torch.ones(length, length, dtype=torch.bool).tril()
        masks.append(allowed)
    allowed = torch.stack(masks)[:, None]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def collate_packed(rows: Sequence[PackedRow], *, attention: str = "position_ids",
                   mask_dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Stack rows into ``input_ids``, ``labels``, ``position_ids`` (each ``(B, T)`` long).

    ``attention="position_ids"`` (default) adds no mask: the model must then run with ``use_cache=False``
    (see the module docstring; ``forward_kwargs`` does it). ``attention="varlen"`` adds ``cu_seq_lens_q/k``
    (int32 ``(segments + 1,)``) and ``max_length_q/k`` (int) for flash-attention and ``torch_varlen``.
    ``attention="mask"`` adds ``attention_mask``, the ``(B, 1, T, T)`` additive block-causal mask in
    ``mask_dtype`` (the model's compute dtype), honoured whatever ``use_cache`` is.
    Raises ``ValueError`` on a batch without a single label token (it would train on nothing).
    """
    if attention not in ATTENTION:
        raise ConfigError(f"attention={attention!r} is not one of {', '.join(ATTENTION)}")
    batch: dict[str, Any] = {
        "input_ids": torch.stack([r.input_ids for r in rows]),
        "labels": torch.stack([r.labels for r in rows]),
        "position_ids": torch.stack([r.position_ids for r in rows]),
    }
    if not bool((batch["labels"][:, 1:] != IGNORE_INDEX).any()):
        raise ValueError("a batch of packed rows has no label tokens: every example is fully masked")
    if attention == "mask":
        batch["attention_mask"] = block_causal_mask([r.seq_lens for r in rows], mask_dtype)
    elif attention == "varlen":
        batch.update(varlen_kwargs([r.seq_lens for r in rows]))
    return batch


def forward_kwargs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The model's keyword arguments for a collated batch: everything but ``labels`` (the loss is computed
    outside the model, ``abcgen.training.loss``) and ``use_cache=False``, without which transformers
    ignores restarting position ids and lets packed tunes attend to each other."""
    kwargs: dict[str, Any] = {key: value for key, value in batch.items() if key != "labels"}
    kwargs["use_cache"] = False
    return kwargs


# --- order -------------------------------------------------------------------------------------------


def epoch_order(num_rows: int, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch: a permutation of ``range(num_rows)``, a pure function of its arguments."""
    order = list(range(num_rows))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


class EpochSampler(torch.utils.data.Sampler[int]):
    """Yields ``epoch_order(num_rows, seed, epoch)``; ``set_epoch`` picks the epoch (accelerate's prepared
    dataloader forwards its ``set_epoch`` here). Resume inside an epoch with ``skip_first_batches``."""

    def __init__(self, num_rows: int, seed: int) -> None:
        self.num_rows = num_rows
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.num_rows, self.seed, self.epoch))
