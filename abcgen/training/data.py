"""Training examples from corpus rows, packed into fixed-length rows that never attend across tunes.

**Example layout.** ``[BOS] + control prefix + tune + EOS``: ``BOS`` only when the tokenizer itself adds
one (``bos_ids``: Llama-3 style bases do, GPT-2/Qwen style bases do not); the prefix is
``vocab.prefix(labels)`` (``<key=D_major><meter=6/8>\\n``, or just ``\\n`` when every condition was
dropped) and is tokenized apart from the tune, exactly as a generation prompt is. ``loss_on="tune"``
masks BOS and the prefix; ``loss_on="all"`` also trains the prefix (the model then learns the condition
distribution, useful for unconditioned sampling). The first token of every example is never a target:
nothing in the example precedes it, and in a packed row it would otherwise be "predicted" by the previous
tune's EOS.

**Long tunes** (more than ``max_length`` tokens) are split at bar lines: the lexer's ``BAR`` events give
the cut points (a cut goes after the bar line and the spaces/newlines that follow it, so a chunk never
starts with a blank line). Every chunk is ``[BOS] + prefix + header + whole bars``, so it is a valid tune
fragment with its key, meter and unit length in view; only the last chunk ends with EOS (an earlier chunk
must not teach the model to stop there). In continuation chunks the repeated BOS + prefix + header are
context only (label -100): every header token is trained on exactly once, in the first chunk. In a
multi-voice body a continuation chunk also gets, as context, the ``V:`` line of the voice it starts in;
other inline changes earlier in the body (``[K:G]``, ``[M:3/4]``) are not repeated. A single bar longer than the budget is
cut at token level and counted (``cut_bars``). A long tune whose prefix + header take more than half of
``max_length`` (its chunks would be mostly repeated context) is dropped and counted (``dropped_tunes``),
with a warning. Chunks of a split tune are tokenized bar by
bar; a tune that fits is tokenized whole (``abc_to_ids``), as at generation time.

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
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from abcgen.controls import CONTROL_NAMES, ControlVocabulary, row_controls
from abcgen.errors import ConfigError
from abcgen.notation import events as ev
from abcgen.notation.tune import parse_tune
from abcgen.tokenization.extend import abc_to_ids
from abcgen.training.attention import varlen_kwargs

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of a token that is not trained on (torch cross_entropy's ignore_index)
LOSS_ON = ("tune", "all")
ATTENTION = ("position_ids", "varlen", "mask")
_WHITESPACE_KINDS = frozenset({ev.SPACE, ev.NEWLINE, ev.CONTINUATION})


@dataclass
class Example:
    """One training sequence: token ids and labels of the same length (-100 where no loss)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class SplitStats:
    """What ``tune_to_examples`` did, summed over tunes: ``tunes = used + dropped_tunes``.

    ``tokens`` counts every token of every example (context repeated in chunks included),
    ``label_tokens`` those with a label (the first token of an example never has one).
    """

    tunes: int = 0
    examples: int = 0
    split_tunes: int = 0  # tunes longer than max_length, split at bar lines
    cut_bars: int = 0  # single bars longer than the budget, cut at token level
    dropped_tunes: int = 0  # prefix + header leave no room for music; counted and logged, never silent
    conditions_dropped: int = 0  # conditions removed by condition dropout
    tokens: int = 0
    label_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def bos_ids(tokenizer: Any) -> list[int]:
    """``[bos_token_id]`` when the tokenizer adds a BOS by itself (Llama-3 style), else ``[]``."""
    ids = list(tokenizer("", add_special_tokens=True)["input_ids"])
    bos = tokenizer.bos_token_id
    return [bos] if ids and bos is not None and ids[0] == bos else []


def _check_loss_on(loss_on: str) -> None:
    if loss_on not in LOSS_ON:
        raise ConfigError(f"loss_on={loss_on!r} is not one of {', '.join(LOSS_ON)}: 'tune' trains on the tune "
                          "only, 'all' on the control prefix too")


def _body_cuts(body: str, events: list[ev.Event]) -> list[int]:
    """Character offsets in ``body`` where a chunk may start: 0, after each bar line and the whitespace
    that follows it, and ``len(body)``."""
    cuts = [0]
    i = 0
    while i < len(events):
        if events[i].kind == ev.BAR:
            j = i + 1
            while j < len(events) and events[j].kind in _WHITESPACE_KINDS:
                j += 1
            cut = events[j].start if j < len(events) else len(body)
            if cut > cuts[-1]:
                cuts.append(cut)
            i = j
        else:
            i += 1
    if cuts[-1] != len(body):
        cuts.append(len(body))
    return cuts


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
    rng: random.Random | None = None,
    stats: SplitStats | None = None,
) -> list[Example]:
    """The examples of one normalised tune (one, or several chunks when it is longer than ``max_length``).

    ``labels`` are the tune's conditions (``row_controls(row)``, restricted to the ones trained on); each
    is dropped with probability ``condition_dropout`` (draws from ``rng``). ``stats`` is updated in place.
    See the module docstring for the layout, the label mask and how long tunes are split.
    """
    _check_loss_on(loss_on)
    if max_length < 2:
        raise ConfigError(f"max_length={max_length} is too small: an example needs at least 2 tokens")
    stats = stats if stats is not None else SplitStats()
    stats.tunes += 1
    kept = _drop_conditions(labels, condition_dropout, rng, stats)
    context = bos_ids(tokenizer) + abc_to_ids(tokenizer, vocab.prefix(kept))
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token: set one (tokenizer.eos_token) before building examples")
    masked_context = loss_on == "tune"

    tune_ids = abc_to_ids(tokenizer, abc)
    if len(context) + len(tune_ids) + 1 <= max_length:
        examples = [_example(context, tune_ids + [eos], context_labelled=not masked_context)]
    else:
        examples = _split_tune(abc, context, eos, tokenizer, max_length=max_length,
                               context_labelled=not masked_context, stats=stats)
    stats.examples += len(examples)
    for example in examples:
        stats.tokens += len(example)
        stats.label_tokens += sum(label != IGNORE_INDEX for label in example.labels)
    return examples


def _example(context: list[int], target: list[int], *, context_labelled: bool) -> Example:
    """``context + target`` with the target labelled (and the context too when ``context_labelled``);
    the first token is never labelled."""
    input_ids = context + target
    labels = (list(context) if context_labelled else [IGNORE_INDEX] * len(context)) + list(target)
    labels[0] = IGNORE_INDEX
    return Example(input_ids=input_ids, labels=labels)


def _split_tune(abc: str, context: list[int], eos: int, tokenizer: Any, *, max_length: int,
                context_labelled: bool, stats: SplitStats) -> list[Example]:
    tune = parse_tune(abc)
    body_offset = len(abc) - len(tune.body)
    if abc[body_offset:] != tune.body:  # normalised text: header lines, then the body verbatim
        raise ValueError("tune_to_examples expects normalised ABC (normalise_abc); the body is not a suffix of the text")
    header_ids = abc_to_ids(tokenizer, abc[:body_offset])
    events = tune.events()
    cuts = _body_cuts(tune.body, events)
    segments = [abc_to_ids(tokenizer, tune.body[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    # Multi-voice bodies: a continuation chunk gets the body line of the voice it starts in ("V:2"), as
    # context, unless it starts with that line itself.
    voices = [(e.start, e.text) for e in events if e.kind == ev.VOICE]
    voice_ids = {text: abc_to_ids(tokenizer, text + "\n") for _, text in voices}
    longest_voice = max((len(ids) for ids in voice_ids.values()), default=0)
    # One token is kept free in every chunk for EOS: simpler than knowing in advance which chunk is last.
    budget = max_length - len(context) - len(header_ids) - longest_voice - 1
    if len(context) + len(header_ids) + longest_voice > max_length // 2:  # chunks: mostly repeated context
        stats.dropped_tunes += 1
        logger.warning("tune %r dropped: its control prefix + header take %d tokens, more than half of "
                       "max_length=%d; raise max_length", tune.name, len(context) + len(header_ids) + longest_voice,
                       max_length)
        return []
    stats.split_tunes += 1

    bodies: list[tuple[int, list[int]]] = []  # (body offset where the chunk starts, its token ids)
    current: list[int] = []
    current_start = 0
    for start, segment in zip(cuts, segments, strict=False):
        if len(current) + len(segment) <= budget:
            current_start = current_start if current else start
            current += segment
            continue
        if current:
            bodies.append((current_start, current))
            current = []
        piece_start = start
        if len(segment) > budget:  # one bar longer than a whole chunk: cut at token level
            stats.cut_bars += 1
            while len(segment) > budget:
                bodies.append((piece_start, segment[:budget]))
                segment = segment[budget:]
                piece_start = start + 1  # later pieces start inside the bar, after any voice line it opens
        current, current_start = list(segment), piece_start
    if current:
        bodies.append((current_start, current))

    examples = []
    for i, (start, body) in enumerate(bodies):
        last = i == len(bodies) - 1
        target = body + [eos] if last else body
        if i == 0:
            examples.append(_example(context, header_ids + target, context_labelled=context_labelled))
            continue
        # the repeated prefix + header (+ the voice line, unless the chunk starts with it) are context only
        active = [(offset, text) for offset, text in voices if offset <= start]
        voice = voice_ids[active[-1][1]] if active and active[-1][0] < start else []
        examples.append(_example(context + header_ids + voice, target, context_labelled=False))
    return examples


def build_examples(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    vocab: ControlVocabulary,
    *,
    max_length: int,
    loss_on: str = "tune",
    conditions: Sequence[str] = CONTROL_NAMES,
    condition_dropout: float = 0.0,
    seed: int = 0,
) -> tuple[list[Example], dict[str, int]]:
    """Examples of corpus rows (column ``abc`` + label columns) and their ``SplitStats`` as a dict.

    ``conditions`` names the conditions put in the prefix (others are left out). Condition dropout draws
    from ``random.Random(seed)`` in row order, so the result is a pure function of the arguments; call
    again with another seed (e.g. ``seed + epoch``) for fresh dropout each epoch.
    """
    _check_loss_on(loss_on)
    unknown = [name for name in conditions if name not in CONTROL_NAMES]
    if unknown:
        raise ConfigError(f"unknown conditions {unknown}; valid conditions: {', '.join(CONTROL_NAMES)}")
    if not 0.0 <= condition_dropout <= 1.0:
        raise ConfigError(f"condition_dropout={condition_dropout} must be between 0 and 1")
    rng = random.Random(seed)
    stats = SplitStats()
    examples: list[Example] = []
    wanted = set(conditions)
    for row in rows:
        labels = {name: value for name, value in row_controls(row).items() if name in wanted}
        examples += tune_to_examples(str(row["abc"]), labels, tokenizer, vocab, max_length=max_length,
                                     loss_on=loss_on, condition_dropout=condition_dropout, rng=rng, stats=stats)
    return examples, stats.as_dict()


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
