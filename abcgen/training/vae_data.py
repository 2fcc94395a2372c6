"""The VAE's data: tunes cut into segments (whole tunes or N bars), their token ids, and batches.

**A segment** is what one latent encodes: a whole tune's body (``segment_bars=0``) or ``N`` consecutive
bars of it. Its decoder sequence is ``[BOS] + control prefix + header + body + EOS``, tokenised in those
pieces exactly as a generation prompt is (``abc-generation`` pipeline): the header is written as the
pipeline writes it, ``X:1\\nM:..\\nL:..\\nK:..\\n``, whatever else the tune's header had, and the body ends
at its last bar line with EOS right after it -- as constrained decoding ends a tune. The encoder reads the
body tokens alone; the loss is on the body and EOS (the prompt is context).

**Cutting into bars.** A bar ends at a bar line that follows music (``:| |:`` between two bars is one
boundary, not an empty bar); the text between two boundaries is kept verbatim, including the line breaks
inside it. A last group shorter than ``N`` bars is kept (the end of the tune). In bar segments the
``bars`` and ``form`` conditions are left out: they describe the whole tune.

**Skipped, counted, never silent** (``SegmentStats``): multi-voice tunes, tunes in free meter (they cannot
be decoded bar by bar), tunes that do not parse, and segments whose body is longer than ``max_tokens``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import torch

from abcgen.controls import CONTROL_NAMES, ControlVocabulary, conditions, row_controls
from abcgen.errors import AbcgenError, ConfigError
from abcgen.notation import events as ev
from abcgen.notation.bars import check_bars, events_by_voice
from abcgen.notation.keys import format_key, parse_key
from abcgen.notation.lexer import default_unit_length, is_compound_meter, lex_body, parse_fraction
from abcgen.notation.tune import Tune, normalise_tune
from abcgen.tokenization.extend import abc_to_ids
from abcgen.tokenization.prompt import IGNORE_INDEX, AbcPromptFormat, abc_header

log = logging.getLogger(__name__)

# Conditions that describe a whole tune; a bar segment is not conditioned on them.
WHOLE_TUNE_CONDITIONS = tuple(c.name for c in conditions() if c.whole_tune)  # the registry's: bars, form


@dataclass(frozen=True)
class TuneFrame:
    """What the decoder's header and the constraint need of a tune: the texts written in the header,
    the meter and unit length in whole notes, the pickup (0 = none) and the number of full bars."""

    meter_text: str
    unit_text: str
    key_text: str
    meter: Fraction
    unit_length: Fraction
    pickup: Fraction
    num_bars: int

    @classmethod
    def from_header(cls, meter: str, unit_length: str | None, key: str) -> TuneFrame:
        """The frame of a tune to be written from scratch (no pickup, bars not yet known) from header
        values as a user gives them: ``("6/8", None, "D")``; the unit length defaults as in ABC."""
        meter_value = parse_fraction(meter)
        if meter_value is None:
            raise ConfigError(f"meter={meter!r} cannot be read (e.g. '6/8', '4/4', 'C'); free meter cannot be "
                              "generated bar by bar")
        unit_value = parse_fraction(unit_length) if unit_length else default_unit_length(meter_value)
        if unit_value is None:
            raise ConfigError(f"unit_length={unit_length!r} cannot be read (e.g. '1/8')")
        return cls(meter_text=meter, unit_text=f"{unit_value.numerator}/{unit_value.denominator}",
                   key_text=format_key(parse_key(key)), meter=meter_value, unit_length=unit_value,
                   pickup=Fraction(0), num_bars=0)

    @property
    def header(self) -> str:
        """The header as the ``abc-generation`` pipeline writes it (``K:`` last)."""
        return abc_header(meter=self.meter_text, unit_length=self.unit_text, key=self.key_text)


@dataclass(frozen=True)
class Segment:
    """One unit the VAE encodes and decodes. ``prompt_ids``: ``[BOS] + control prefix + header``;
    ``body_ids``: the body's tokens (without EOS), also the encoder's input; ``frame``: the tune's."""

    prompt_ids: list[int]
    body_ids: list[int]
    frame: TuneFrame
    body: str


@dataclass
class SegmentStats:
    """What ``build_segments`` did: ``tunes = used_tunes + skipped_multi_voice + skipped_free_meter +
    skipped_unreadable``; ``segments`` kept, ``skipped_long`` segments over ``max_tokens``."""

    tunes: int = 0
    used_tunes: int = 0
    segments: int = 0
    skipped_long: int = 0
    skipped_multi_voice: int = 0
    skipped_free_meter: int = 0
    skipped_unreadable: int = 0
    conditions_dropped: int = 0
    body_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class UnsegmentableTuneError(AbcgenError):
    """A tune the VAE cannot encode; ``reason`` is ``"multi_voice"`` or ``"free_meter"``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def tune_frame(tune: Tune) -> TuneFrame:
    """The frame of a normalised single-voice tune; raises ``UnsegmentableTuneError`` for several voices
    or free meter."""
    events = tune.events()
    if len(events_by_voice(events)) > 1 or tune.get_all("V"):
        raise UnsegmentableTuneError(f"tune {tune.name or tune.title!r} has several voices; the VAE encodes "
                                     "single-voice tunes", reason="multi_voice")
    meter = tune.meter
    if meter is None:
        raise UnsegmentableTuneError(f"tune {tune.name or tune.title!r} is in free meter (M:{tune.get('M')}); "
                                     "it cannot be decoded bar by bar: give it a meter", reason="free_meter")
    report = check_bars(events, tune.unit_length, meter)
    music = [bar for bar in report.bars if bar.has_notes]
    pickup = music[0].duration if music and music[0].meter and music[0].duration < music[0].meter else Fraction(0)
    unit = tune.unit_length
    return TuneFrame(meter_text=tune.get("M") or "4/4", unit_text=f"{unit.numerator}/{unit.denominator}",
                     key_text=tune.get("K") or "C", meter=meter, unit_length=unit, pickup=pickup,
                     num_bars=report.num_bars)


def cut_bars(tune: Tune, segment_bars: int) -> list[str]:
    """The body of a normalised tune as segment texts: the whole body (``segment_bars`` 0) or groups of
    ``segment_bars`` bars (see the module docstring), each stripped of surrounding whitespace."""
    if segment_bars < 0:
        raise ConfigError(f"segment_bars={segment_bars} must be >= 0 (0 = whole tunes)")
    body = tune.body
    if segment_bars == 0:
        return [body.strip()] if body.strip() else []
    pieces: list[str] = []
    start, bars_in_piece, music_since_bar_line = 0, 0, False
    for event in tune.events():
        if event.is_timed:
            music_since_bar_line = True
        elif event.kind == ev.BAR and music_since_bar_line:
            music_since_bar_line = False
            bars_in_piece += 1
            if bars_in_piece == segment_bars:
                end = event.start + len(event.text)
                pieces.append(body[start:end].strip())
                start, bars_in_piece = end, 0
    rest = body[start:].strip()
    if music_since_bar_line or bars_in_piece:
        pieces.append(rest)
    return [piece for piece in pieces if piece]


def count_bars(body: str, frame: TuneFrame) -> int:
    """Full bars of a segment body in its tune's frame, a leading pickup not counted (as
    ``BarReport.num_bars``): the number of bars to ask the constraint for when decoding it again."""
    events = lex_body(body, frame.unit_length, frame.meter, compound=is_compound_meter(frame.meter_text))
    return check_bars(events, frame.unit_length, frame.meter).num_bars


def segment_tune(abc: str, segment_bars: int) -> tuple[TuneFrame, list[str]]:
    """``(frame, segment bodies)`` of one tune (any ABC text: it is normalised first). Raises
    ``UnsegmentableTuneError`` / ``AbcParseError`` for a tune the VAE cannot encode."""
    tune = normalise_tune(abc)
    return tune_frame(tune), cut_bars(tune, segment_bars)


def prompt_ids(tokenizer: Any, vocab: ControlVocabulary, conditions: Mapping[str, str], header: str) -> list[int]:
    """``[BOS] + control prefix + header``, tokenised in pieces as the pipeline does (with no conditions
    the prefix is its newline alone, as in training when every condition was dropped)."""
    return AbcPromptFormat(tokenizer, vocab).prompt_ids(conditions, header)


def build_segments(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    vocab: ControlVocabulary,
    *,
    segment_bars: int,
    max_tokens: int,
    conditions: Sequence[str] = CONTROL_NAMES,
    condition_dropout: float = 0.0,
    seed: int = 0,
) -> tuple[list[Segment], SegmentStats]:
    """The segments of corpus rows (column ``abc`` + label columns) and what was skipped.

    Each condition in ``conditions`` (less ``bars``/``form`` for bar segments) is dropped with probability
    ``condition_dropout``, one draw per condition from ``random.Random(seed)`` in row order: the result is
    a pure function of the arguments."""
    if not 0.0 <= condition_dropout <= 1.0:
        raise ConfigError(f"condition_dropout={condition_dropout} must be between 0 and 1")
    if max_tokens < 1:
        raise ConfigError(f"max_tokens={max_tokens} must be >= 1")
    wanted = [name for name in conditions if not (segment_bars and name in WHOLE_TUNE_CONDITIONS)]
    rng = random.Random(seed)
    stats = SegmentStats()
    segments: list[Segment] = []
    for row in rows:
        stats.tunes += 1
        try:
            frame, bodies = segment_tune(str(row["abc"]), segment_bars)
        except UnsegmentableTuneError as exc:
            if exc.reason == "multi_voice":
                stats.skipped_multi_voice += 1
            else:
                stats.skipped_free_meter += 1
            continue
        except AbcgenError as exc:
            stats.skipped_unreadable += 1
            log.debug("skipped an unreadable tune: %s", exc)
            continue
        stats.used_tunes += 1
        labels = {name: value for name, value in row_controls(row).items() if name in wanted}
        for body in bodies:
            kept = {}
            for name, value in labels.items():
                if condition_dropout and rng.random() < condition_dropout:
                    stats.conditions_dropped += 1
                else:
                    kept[name] = value
            body_ids = abc_to_ids(tokenizer, body)
            if len(body_ids) > max_tokens:
                stats.skipped_long += 1
                continue
            segments.append(Segment(prompt_ids(tokenizer, vocab, kept, frame.header), body_ids, frame, body))
            stats.segments += 1
            stats.body_tokens += len(body_ids)
    return segments, stats


def collate_segments(segments: Sequence[Segment], pad_id: int, eos_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch of segments.

    ``input_ids``/``attention_mask`` ``(B, T)``: prompt + body + EOS; ``labels`` ``(B, T)``: the body and EOS,
    -100 on the prompt and padding (unshifted: position t predicts ``labels[t + 1]``, as
    ``abcgen.training.loss`` expects); ``body_mask`` ``(B, T)``: the positions holding body tokens as
    inputs (where word dropout may blank them); ``encoder_input_ids``/``encoder_attention_mask``
    ``(B, S)``: the bodies alone."""
    if not segments:
        raise ValueError("collate_segments needs at least one segment")
    width = max(len(s.prompt_ids) + len(s.body_ids) + 1 for s in segments)
    body_width = max(len(s.body_ids) for s in segments)
    batch = {name: torch.full((len(segments), size), fill, dtype=torch.long)
             for name, size, fill in (("input_ids", width, pad_id), ("attention_mask", width, 0),
                                      ("labels", width, IGNORE_INDEX), ("body_mask", width, 0),
                                      ("encoder_input_ids", body_width, pad_id),
                                      ("encoder_attention_mask", body_width, 0))}
    for row, segment in enumerate(segments):
        prompt, body = segment.prompt_ids, segment.body_ids
        sequence = prompt + body + [eos_id]
        batch["input_ids"][row, : len(sequence)] = torch.tensor(sequence)
        batch["attention_mask"][row, : len(sequence)] = 1
        batch["labels"][row, len(prompt): len(sequence)] = torch.tensor(body + [eos_id])
        batch["body_mask"][row, len(prompt): len(prompt) + len(body)] = 1
        batch["encoder_input_ids"][row, : len(body)] = torch.tensor(body)
        batch["encoder_attention_mask"][row, : len(body)] = 1
    batch["body_mask"] = batch["body_mask"].bool()
    return batch


def word_dropout(input_ids: torch.Tensor, body_mask: torch.Tensor, rate: float, blank_id: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``input_ids`` with each body token replaced by ``blank_id`` with probability ``rate`` (Bowman et
    al. 2016): the decoder then cannot copy the previous token and has to read the latent."""
    if rate <= 0.0:
        return input_ids
    draws = torch.rand(input_ids.shape, generator=generator, device="cpu").to(input_ids.device)
    return input_ids.masked_fill(body_mask & (draws < rate), blank_id)


__all__ = ["Segment", "SegmentStats", "TuneFrame", "UnsegmentableTuneError", "build_segments", "collate_segments",
           "count_bars", "cut_bars", "prompt_ids", "segment_tune", "tune_frame", "word_dropout"]
