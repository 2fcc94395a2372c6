"""The prompt contract: what a model sees before a tune's body, and where the body starts and ends.

Every sequence a model is trained on or prompted with has one layout::

    [BOS] + control prefix | header | body | EOS

* ``[BOS]`` only when the tokenizer adds one by itself (``bos_ids``: Llama-3 style bases do, GPT-2/Qwen
  style bases do not).
* the **control prefix** is ``ControlVocabulary.prefix(labels)``: one token per condition in registry
  order, then a newline (``<key=D_major><meter=6/8>\\n``; just ``\\n`` when no condition is given).
  BOS + prefix are the *context* (``context_ids``); the prefix is tokenized apart from what follows,
  at training and at generation time alike.
* the **header**: in training, the tune's own normalised header (``X:``, ``T:``, ..., ``K:`` last); at
  generation time the one the pipeline writes (``abc_header``: ``X:1``, ``M:``, ``L:``, ``V:1`` ..
  ``V:n`` for several voices, ``K:``), or just ``X:1`` when the model writes its own header (plain
  sampling, ``FREE_HEADER``). Header and body are tokenized together, as one text.
* the **body** starts right after ``K:`` (with several voices after ``V:1``: ``body_start``); EOS ends
  it. A decoded body is the header's continuation: ``header + decode(generated ids)``.
* the **unconditional prompt** (classifier-free guidance, ``abcgen.generation.guidance``) is a prompt with
  its control prefix emptied, the header and body kept: ``unconditional_prompt_ids(prompt_ids(labels,
  text), labels) == prompt_ids({}, text)`` -- what condition dropout trains when it drops every condition.

``PromptFormat`` is the seam a second representation (REMI, for one) implements; ``AbcPromptFormat`` is
the first implementation, used by the training data (``abcgen.training.data``), the ``abc-generation``
pipeline, plain sampling, the VAE's decoder prompt and evaluation.

**Long tunes** (more than ``max_length`` tokens) are split at bar lines by ``encode_example``: the lexer's
``BAR`` events give the cut points (a cut goes after the bar line and the spaces/newlines that follow it,
so a chunk never starts with a blank line). Every chunk is ``[BOS] + prefix + header + whole bars``; only
the last ends with EOS. In continuation chunks the repeated BOS + prefix + header (+ the ``V:`` line of
the voice the chunk starts in) are context only (label -100). A single bar longer than the budget is cut
at token level (``cut_bars``). A long tune whose prefix + header take more than half of ``max_length`` is
dropped and counted (``dropped_tunes``), with a warning. A tune that fits is tokenized whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.notation import events as ev
from abcgen.notation.tune import parse_tune
from abcgen.tokenization.extend import abc_to_ids, ids_to_abc
from abcgen.tokenization.remi import remi_token_ids

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of a token that is not trained on (torch cross_entropy's ignore_index)
LOSS_ON = ("tune", "all")
# What plain sampling gives a model that writes its own header: the first header line only.
FREE_HEADER = "X:1\n"
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
    """What the training examples of a set of tunes hold, summed over tunes: ``tunes = used + dropped_tunes``.

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


def eos_id(tokenizer: Any) -> int:
    """The token that ends a body; ``ConfigError`` when the tokenizer has none."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token: set one (tokenizer.eos_token) before building examples")
    return int(eos)


def check_loss_on(loss_on: str) -> None:
    if loss_on not in LOSS_ON:
        raise ConfigError(f"loss_on={loss_on!r} is not one of {', '.join(LOSS_ON)}: 'tune' trains on the tune "
                          "only, 'all' on the control prefix too")


def abc_header(*, meter: str, unit_length: str, key: str, voices: int = 1) -> str:
    """The header generation writes: ``X:1``, ``M:``, ``L:``, ``V:1`` .. ``V:n`` when ``voices > 1``, then
    ``K:`` last (values as written: ``abc_header(meter="6/8", unit_length="1/8", key="D")``)."""
    definitions = "".join(f"V:{k}\n" for k in range(1, voices + 1)) if voices > 1 else ""
    return f"X:1\nM:{meter}\nL:{unit_length}\n{definitions}K:{key}\n"


@runtime_checkable
class PromptFormat(Protocol):
    """How one representation lays out a tune for a model (see the module docstring). An implementation
    holds its tokenizer and control vocabulary."""

    name: str

    @property
    def end_id(self) -> int:
        """The token that ends a body (EOS)."""

    def context_ids(self, labels: Mapping[str, str]) -> list[int]:
        """``[BOS] + control prefix`` of these condition labels."""

    def header(self, *, meter: str, unit_length: str, key: str, voices: int = 1) -> str:
        """The header text a generated tune gets."""

    def body_start(self, voice: int = 1, voices: int = 1) -> str:
        """The text between the header (or the voices before) and the body of voice ``voice``."""

    def prompt_ids(self, labels: Mapping[str, str], text: str = FREE_HEADER) -> list[int]:
        """The ids a model is prompted with: the context of ``labels``, then ``text`` (header + body so far)."""

    def unconditional_prompt_ids(self, prompt_ids: Sequence[int], labels: Mapping[str, str]) -> list[int]:
        """``prompt_ids`` (= ``prompt_ids(labels, text)``) without its control tokens: ``prompt_ids({}, text)``,
        the unconditional branch of classifier-free guidance."""

    def decode(self, ids: Sequence[int]) -> str:
        """Generated ids back to text, to be appended to the prompt's text."""

    def encode_example(self, abc: str, labels: Mapping[str, str], *, max_length: int, loss_on: str = "tune",
                       stats: SplitStats | None = None) -> list[Example]:
        """The training examples of one tune under these (already dropped-out) condition labels."""


class _ControlPrefixFormat:
    """What every representation shares: the tokenizer, the control vocabulary, EOS, the context (BOS +
    control prefix) and the unconditional prompt of guidance."""

    def __init__(self, tokenizer: Any, vocab: ControlVocabulary) -> None:
        self.tokenizer = tokenizer
        self.vocab = vocab

    @property
    def end_id(self) -> int:
        return eos_id(self.tokenizer)

    def context_ids(self, labels: Mapping[str, str]) -> list[int]:
        return bos_ids(self.tokenizer) + abc_to_ids(self.tokenizer, self.vocab.prefix(labels))

    def unconditional_prompt_ids(self, prompt_ids: Sequence[int], labels: Mapping[str, str]) -> list[int]:
        """The same prompt with every condition dropped: BOS, the empty prefix (its newline alone), then the
        same text ids -- what training shows when condition dropout drops every condition of a tune. The
        prefix is tokenized apart from the text, so this is ``prompt_ids({}, text)`` exactly, and the text
        ids stay those of the conditional prompt (the two branches differ in the prefix only). ``ValueError``
        when ``prompt_ids`` does not start with the context of ``labels``."""
        context = self.context_ids(labels)
        if list(prompt_ids[: len(context)]) != context:
            raise ValueError("unconditional_prompt_ids: the prompt does not start with the control prefix of "
                             f"{dict(labels)!r}")
        return self.context_ids({}) + list(prompt_ids[len(context):])


class AbcPromptFormat(_ControlPrefixFormat):
    """The ABC text representation: control tokens, an ABC header, the ABC body, EOS."""

    name = "abc"

    def header(self, *, meter: str, unit_length: str, key: str, voices: int = 1) -> str:
        return abc_header(meter=meter, unit_length=unit_length, key=key, voices=voices)

    def body_start(self, voice: int = 1, voices: int = 1) -> str:
        return f"V:{voice}\n" if voices > 1 else ""

    def join_voices(self, bodies: Sequence[str]) -> str:
        """The body of several voices: ``V:1``, voice 1's text, ``V:2``, ... each on lines of its own."""
        return "".join(f"{self.body_start(k, 2)}{body.strip()}\n" for k, body in enumerate(bodies, 1))

    def prompt_ids(self, labels: Mapping[str, str], text: str = FREE_HEADER) -> list[int]:
        return self.context_ids(labels) + abc_to_ids(self.tokenizer, text)

    def decode(self, ids: Sequence[int]) -> str:
        return ids_to_abc(self.tokenizer, list(ids))

    def encode_example(self, abc: str, labels: Mapping[str, str], *, max_length: int, loss_on: str = "tune",
                       stats: SplitStats | None = None) -> list[Example]:
        stats = _check_example_request(loss_on, max_length, stats)
        context = self.context_ids(labels)
        eos = self.end_id
        context_labelled = loss_on != "tune"
        tune_ids = abc_to_ids(self.tokenizer, abc)
        if len(context) + len(tune_ids) + 1 <= max_length:
            return [_example(context, tune_ids + [eos], context_labelled=context_labelled)]
        return _split_tune(abc, context, eos, self.tokenizer, max_length=max_length,
                           context_labelled=context_labelled, stats=stats)


def _check_example_request(loss_on: str, max_length: int, stats: SplitStats | None) -> SplitStats:
    """``encode_example``'s arguments checked; the stats to update (a fresh one when none is given)."""
    check_loss_on(loss_on)
    if max_length < 2:
        raise ConfigError(f"max_length={max_length} is too small: an example needs at least 2 tokens")
    return stats if stats is not None else SplitStats()


def _example(context: list[int], target: list[int], *, context_labelled: bool) -> Example:
    """``context + target`` with the target labelled (and the context too when ``context_labelled``);
    the first token is never labelled: nothing in the example precedes it, and in a packed row it would
    otherwise be "predicted" by the previous tune's EOS."""
    input_ids = context + target
    labels = (list(context) if context_labelled else [IGNORE_INDEX] * len(context)) + list(target)
    labels[0] = IGNORE_INDEX
    return Example(input_ids=input_ids, labels=labels)


def body_cuts(body: str, events: list[ev.Event]) -> list[int]:
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


def _split_tune(abc: str, context: list[int], eos: int, tokenizer: Any, *, max_length: int,
                context_labelled: bool, stats: SplitStats) -> list[Example]:
    tune = parse_tune(abc)
    body_offset = len(abc) - len(tune.body)
    if abc[body_offset:] != tune.body:  # normalised text: header lines, then the body verbatim
        raise ValueError("tune_to_examples expects normalised ABC (normalise_abc); the body is not a suffix of the text")
    header_ids = abc_to_ids(tokenizer, abc[:body_offset])
    events = tune.events()
    cuts = body_cuts(tune.body, events)
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


class RemiPromptFormat(_ControlPrefixFormat):
    """The REMI representation: control tokens, a track list, the REMI events, EOS.

    ``[BOS] + control prefix | Program_a Program_b ... | Bar_None TimeSig_6/8 Position_0 ... | EOS``

    * the control prefix is the ABC format's (the same conditions, the same tokens);
    * the **header** is the track list: one ``Program_`` token per instrument of the tune, in increasing
      program order (training reads it off the tune's notes, generation writes the requested programs), so
      the instruments and their number are asked for the way the key is, and the grammar
      (``abcgen.grammar.remi``) lets only those programs play;
    * the **body** is miditok's REMI token stream (``abcgen.notation.remi``), from the first ``Bar_None``;
      the meter is in its ``TimeSig_`` tokens and the tempo in its first ``Tempo_`` token;
    * text <-> ids token by token (every REMI token is one added token): ``decode(text_ids(x)) == x``.

    Long tunes are split at ``Bar_None`` as ABC tunes are at bar lines: every chunk is ``context + header +
    whole bars``, the repeated context and header label-free in continuation chunks, only the last with EOS;
    a single bar longer than the budget is cut at token level (``cut_bars``).
    """

    name = "remi"

    def __init__(self, tokenizer: Any, vocab: ControlVocabulary) -> None:
        super().__init__(tokenizer, vocab)
        self.token_ids = remi_token_ids(tokenizer)  # ConfigError when the tokenizer has no REMI tokens
        self.id_tokens = {index: token for token, index in self.token_ids.items()}

    def header(self, *, programs: Sequence[int] = (), meter: str = "", unit_length: str = "", key: str = "",
               voices: int = 1) -> str:
        """The track list of ``programs`` (meter, key, unit length: in the body and the prefix, not here)."""
        if not programs:
            raise ConfigError("a REMI header needs at least one program (instrument), e.g. programs=[40]")
        return " ".join(f"Program_{p}" for p in sorted(set(int(p) for p in programs)))

    def body_start(self, voice: int = 1, voices: int = 1) -> str:
        return ""  # one token stream: every track's notes interleaved in time

    def text_ids(self, text: str) -> list[int]:
        """Ids of REMI text (tokens separated by whitespace); ``ConfigError`` naming an unknown token."""
        try:
            return [self.token_ids[token] for token in text.split()]
        except KeyError as exc:
            raise ConfigError(f"{exc.args[0]!r} is not a REMI token of this tokenizer; REMI text is miditok's "
                              "tokens separated by spaces (abcgen.notation.remi)") from None

    def prompt_ids(self, labels: Mapping[str, str], text: str = "") -> list[int]:
        return self.context_ids(labels) + self.text_ids(text)

    def decode(self, ids: Sequence[int]) -> str:
        """REMI text of ids; ids that are not REMI tokens (EOS, pad, control tokens) are left out."""
        return " ".join(self.id_tokens[i] for i in ids if i in self.id_tokens)

    def tune_header(self, remi: str) -> str:
        """The track list of a tune's REMI text: the programs its notes use."""
        programs = {int(token[8:]) for token in remi.split() if token.startswith("Program_")}
        if not programs:
            raise ConfigError(f"REMI text {remi[:60]!r} has no Program_ token: it holds no notes")
        return self.header(programs=sorted(programs))

    def encode_example(self, abc: str, labels: Mapping[str, str], *, max_length: int, loss_on: str = "tune",
                       stats: SplitStats | None = None) -> list[Example]:
        """The training examples of one tune's REMI text (``abc`` is the ``remi`` column's text)."""
        stats = _check_example_request(loss_on, max_length, stats)
        remi = abc
        context, eos = self.context_ids(labels), self.end_id
        header_ids = self.text_ids(self.tune_header(remi))
        body_ids = self.text_ids(remi)
        context_labelled = loss_on != "tune"
        if len(context) + len(header_ids) + len(body_ids) + 1 <= max_length:
            return [_example(context, header_ids + body_ids + [eos], context_labelled=context_labelled)]
        if len(context) + len(header_ids) > max_length // 2:
            stats.dropped_tunes += 1
            logger.warning("REMI tune dropped: its control prefix + track list take %d tokens, more than half of "
                           "max_length=%d; raise max_length", len(context) + len(header_ids), max_length)
            return []
        stats.split_tunes += 1
        bar = self.token_ids["Bar_None"]
        starts = [i for i, token in enumerate(body_ids) if token == bar] or [0]
        bars = [body_ids[a:b] for a, b in zip(starts, starts[1:] + [len(body_ids)], strict=True)]
        budget = max_length - len(context) - len(header_ids) - 1  # one token free for EOS in every chunk
        chunks: list[list[int]] = []
        current: list[int] = []
        for ids in bars:
            if len(current) + len(ids) <= budget:
                current += ids
                continue
            if current:
                chunks.append(current)
            if len(ids) > budget:  # one bar longer than a whole chunk: cut at token level
                stats.cut_bars += 1
                while len(ids) > budget:
                    chunks.append(ids[:budget])
                    ids = ids[budget:]
            current = list(ids)
        if current:
            chunks.append(current)
        examples = []
        for i, chunk in enumerate(chunks):
            target = chunk + [eos] if i == len(chunks) - 1 else chunk
            if i == 0:
                examples.append(_example(context, header_ids + target, context_labelled=context_labelled))
            else:
                examples.append(_example(context + header_ids, target, context_labelled=False))
        return examples


REPRESENTATIONS = {"abc": AbcPromptFormat, "remi": RemiPromptFormat}
# The corpus column each representation trains on.
REPRESENTATION_COLUMNS = {"abc": "abc", "remi": "remi"}


def prompt_format_for(representation: str, tokenizer: Any, vocab: ControlVocabulary) -> PromptFormat:
    """The prompt format of ``representation`` (``abc`` | ``remi``) over this tokenizer and vocabulary."""
    if representation not in REPRESENTATIONS:
        raise ConfigError(f"representation={representation!r} is not one of {', '.join(REPRESENTATIONS)}")
    return REPRESENTATIONS[representation](tokenizer, vocab)


__all__ = ["FREE_HEADER", "IGNORE_INDEX", "REPRESENTATIONS", "REPRESENTATION_COLUMNS", "AbcPromptFormat", "Example",
           "PromptFormat", "RemiPromptFormat", "SplitStats", "abc_header", "bos_ids", "check_loss_on",
           "prompt_format_for"]
