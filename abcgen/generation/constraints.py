"""Constrained decoding: a ``LogitsProcessor`` under which a model cannot write an invalid tune body.

The pipeline writes the header itself (``X:1``, ``M:``, ``L:``, ``K:`` last, with the requested values), so
what is constrained here is the *body* the model writes after the prompt's ``K:...\\n``. Every state of
the tune being written allows only the tokens that keep it completable into a valid tune within the
token budget; everything else gets ``-inf``.

**The grammar (a safe subset of ABC).** Each token the model may emit in the body is one complete unit,
read once per tokenizer by lexing every vocabulary entry's text with ``abcgen.notation.lexer.lex_body``:

* a single note or rest (``A``, ``^c'``, ``B,2``, ``d3/``, ``z4``) with its duration in ``L:`` units
  (not ``C'`` or ``c,``: legal ABC, but abc2midi rejects octave marks against the letter's case);
* a single bar line of the kinds ``|  ||  |]  |:  :|  ::`` (``:||`` counts as ``:|``, ``:|:`` as ``::``),
  a first ending ``|1``/``|[1`` or a second ending ``:|2``/``:|[2``;
* a run of spaces, a newline, EOS (and pad after EOS).

Everything else is masked in the body: BPE merges of several units (``AB``, `` |``), partial units (a
bare digit or ``/``, an accidental, an octave mark -- so a note's length can never be changed by what
follows it), decorations, chord symbols, annotations, tuplets, broken rhythm, ties, slurs, chords,
grace notes, invisible and multi-bar rests (``x``, ``Z``), inline fields, header letters, control tokens.

**Bars.** The processor tracks how much of the current bar is filled. A note is allowed only when it
fits *and* the rest of the bar can still be filled exactly with the note lengths the vocabulary has
(a table of the fewest notes that make each remainder, computed once). A bar line comes only when the
bar is exactly full -- so no bar is empty, short or long -- except the first bar when ``pickup`` is set,
which lasts exactly ``pickup``. The bars after the pickup are all full, the last one included.

**Repeats** (no ``form``): ``|:`` opens a repeat (at the start of the body or at a bar line while none
is open), ``:|`` closes it, ``::`` closes and reopens it; ``|1`` starts a first ending inside an open
repeat, ``:|2`` closes it and starts the second ending, which ``||``, ``|:`` or the final bar line ends.
``||`` only outside a repeat. ``|]`` is the final bar line only.

**End.** With ``num_bars`` the tune has exactly that many full bars (a pickup is not counted, as in
``BarReport.num_bars``); the bar line after the last one is ``|]`` -- or ``:|`` when a repeat is open --
and EOS follows at once. Without ``num_bars`` the model may end after any complete bar with ``|]`` (or
with EOS right after a ``:|`` that closes a repeat).

**Form** (``form="AABB"``, needs ``num_bars``): the letters are read as runs (``AABB`` -> A twice, B
twice; ``ABAC`` -> A, B, A, C); a run of two is one repeated section ``|: ... :|``, a run of one a
plain section ended by ``||`` (``|]`` at the end). ``num_bars`` counts *written* bars and is split evenly
over the written sections (earlier sections take one more when it does not divide); within a section
only ``|`` is allowed, and the section boundaries are forced (``:|`` / ``::`` / ``|:`` / ``||``). The
sections are not made to repeat each other's music (the second ``A`` of ``ABAC`` is new music).

**Bar templates** (``bar_lines``, for the later voices of a multi-voice tune): ``bar_template`` reads the
bar lines voice 1 wrote -- the opening one (``""`` or ``"|:"``), then the text ending each bar, the pickup
bar first (``["|:", "|", "::", "|", ":|"]``) -- and a constraint built with ``bar_lines=`` that list and
the same ``pickup`` forces exactly that text at the end of each bar (every other bar-line token masked;
an entry of two tokens such as ``":||:"`` is written as ``":|"`` then ``"|:"``) and EOS after the last
one. The bars are filled freely as usual, so every voice has the bars, lengths, repeats and endings of
voice 1: the voices stay in step bar by bar. Not combined with ``form`` or ``open_repeat`` (the
template already fixes them); the template's own repeats must be balanced.

**Budget.** ``max_new_tokens`` is the same number given to ``generate`` (EOS included). The fewest tokens
that finish the tune from the current state (fill the bar with the longest notes that fit, e.g. one
``A8`` per 4/4 bar at ``L:1/8``, bar lines, forced boundary tokens, EOS) are known at every step; a token
is allowed only when the tune can still be finished in the tokens left after it. So the tune is never
cut off, and when the budget is tight only tokens on a shortest completion path remain. A budget that
cannot hold the requested bars raises ``ConfigError`` at construction.

**Lines.** A newline is allowed only right after a non-final bar line; a space not at the start of the
body, after a newline or after another space; a line never starts with a lone letter note followed by
a bar line beginning with ``:`` (``A:|`` would read as a header field ``A:``).

**Speed.** The token table, one boolean vocabulary mask per note length and per unit class are built
once per tokenizer; the mask of each state (remaining bar length, phase, budget slack capped where it
stops mattering) is built once and cached, shared by all constraints of the same settings. A step costs
a few dictionary look-ups per row in Python, one ``stack`` and one ``masked_fill`` over the batch.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch
from transformers import LogitsProcessor

from abcgen.errors import AbcgenError, AbcParseError, ConfigError
from abcgen.notation import events as ev
from abcgen.notation.keys import parse_key
from abcgen.notation.lexer import lex_body

# Token classes of the table.
OTHER, NOTE, SPACE, NEWLINE, BAR, EOS, PAD = range(7)

# Bar line texts the grammar uses, with the kind each one counts as.
BAR_KINDS: dict[str, str] = {
    "|": "|", "||": "||", "|]": "|]", "|:": "|:", ":|": ":|", ":||": ":|", "::": "::", ":|:": "::",
    "|1": "|1", "|[1": "|1", ":|2": ":|2", ":|[2": ":|2",
}
# Texts worth lexing (cheap filter before the lexer): note/rest/bar characters, or spaces, or a newline.
_CANDIDATE_RE = re.compile(r"[A-Ga-gz_^=,'/0-9|:\[\]]+| +|\n")
_LETTER_RE = re.compile(r"[A-Za-z]")
# Legal ABC that abc2midi rejects ("Bad pitch specifier"): octave marks against the letter's case.
_WRONG_OCTAVE_RE = re.compile(r"[A-G][',]*'|[a-g][',]*,")

# Repeat states (free mode): no repeat open, repeat open, inside a first ending, inside a second ending.
R0, R1, E1, E2 = "none", "open", "first", "second"
_INF = 10**9
_MAX_CACHED = 20_000  # cached masks per settings before the cache is emptied


class ConstraintViolation(AbcgenError, ValueError):
    """A token the constraint does not allow was fed to ``AbcConstraint.advance``."""


# --- the token table, once per tokenizer ---------------------------------------------------------------


def _token_texts(tokenizer: Any, n: int) -> list[str]:
    """The text each token adds when it follows other body text. Decoded after a reference token (``|``)
    so that decoders which strip a leading space from the first piece (SentencePiece) give the text
    the token has inside a body."""
    kwargs = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    plain = tokenizer.batch_decode([[i] for i in range(n)], **kwargs)
    ref_ids = tokenizer.encode("|", add_special_tokens=False)
    if len(ref_ids) != 1:
        return plain
    ref_text = tokenizer.decode(ref_ids, **kwargs)
    joined = tokenizer.batch_decode([[ref_ids[0], i] for i in range(n)], **kwargs)
    return [j[len(ref_text):] if j.startswith(ref_text) else p for j, p in zip(joined, plain, strict=True)]


def parse_unit(text: str) -> tuple[int, Any]:
    """``(class, value)`` of one token text: ``(NOTE, duration)``, ``(BAR, kind)``, ``(SPACE, None)``,
    ``(NEWLINE, None)`` or ``(OTHER, None)`` for anything the body grammar does not use."""
    if not _CANDIDATE_RE.fullmatch(text):
        return OTHER, None
    if text == "\n":
        return NEWLINE, None
    if text.strip(" ") == "":
        return SPACE, None
    try:
        events = lex_body(text, Fraction(1), None)
    except (AbcParseError, ValueError):
        return OTHER, None
    if len(events) != 1 or events[0].text != text:
        return OTHER, None
    event = events[0]
    if event.kind == ev.NOTE and _WRONG_OCTAVE_RE.search(text):
        return OTHER, None
    if event.kind == ev.NOTE or (event.kind == ev.REST and text[0] == "z"):
        if event.duration is not None and event.duration > 0:
            return NOTE, event.duration
        return OTHER, None
    if event.kind == ev.BAR and text in BAR_KINDS:
        return BAR, BAR_KINDS[text]
    return OTHER, None


class MusicVocabulary:
    """The token table of one tokenizer: what unit each token id is, and boolean masks per unit class.

    ``cls[i]`` is the class of token ``i``; ``dur_index[i]`` indexes ``durations`` for notes/rests;
    ``bar_kind[i]`` is the bar kind for bar lines. Built by ``music_vocabulary`` (cached per tokenizer)."""

    def __init__(self, tokenizer: Any) -> None:
        n = len(tokenizer)
        self.size = n
        texts = _token_texts(tokenizer, n)
        special = set(tokenizer.all_special_ids)
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id
        cls = [OTHER] * n
        value: list[Any] = [None] * n
        for i, text in enumerate(texts):
            if i in special:
                continue
            cls[i], value[i] = parse_unit(text)
        if self.eos_token_id is None:
            raise ConfigError("the tokenizer has no EOS token: constrained decoding needs one to end the tune")
        cls[self.eos_token_id] = EOS
        if self.pad_token_id is not None and self.pad_token_id != self.eos_token_id:
            cls[self.pad_token_id] = PAD
        self.texts = texts
        self.cls = cls
        self.durations: tuple[Fraction, ...] = tuple(sorted({v for c, v in zip(cls, value, strict=True) if c == NOTE}))
        where = {d: j for j, d in enumerate(self.durations)}
        self.dur_index = [where[v] if c == NOTE else -1 for c, v in zip(cls, value, strict=True)]
        self.bar_kind = [v if c == BAR else None for c, v in zip(cls, value, strict=True)]
        cls_t = torch.tensor(cls)
        dur_t = torch.tensor(self.dur_index)
        self.note_by_duration = torch.stack([dur_t == j for j in range(len(self.durations))]) if self.durations \
            else torch.zeros(0, n, dtype=torch.bool)
        self.single_letter = torch.tensor([c == NOTE and len(t) == 1 and bool(_LETTER_RE.fullmatch(t))
                                           for c, t in zip(cls, texts, strict=True)])
        self.space = cls_t == SPACE
        self.newline = cls_t == NEWLINE
        self.eos = cls_t == EOS
        self.done = self.eos | (cls_t == PAD)
        kinds = sorted({k for k in self.bar_kind if k is not None})
        self.bar_masks = {k: torch.tensor([b == k for b in self.bar_kind]) for k in kinds}
        bar_texts = sorted({t for t, k in zip(texts, self.bar_kind, strict=True) if k is not None})
        self.bar_text_masks = {t: torch.tensor([k is not None and x == t for x, k in zip(texts, self.bar_kind, strict=True)])
                               for t in bar_texts}

    def describe(self) -> dict[str, Any]:
        """Counts of each unit class (for reports and tests)."""
        return {
            "vocab_size": self.size,
            "notes": int(sum(c == NOTE for c in self.cls)),
            "durations": [str(d) for d in self.durations],
            "bar_kinds": sorted(self.bar_masks),
            "spaces": int(self.space.sum()),
            "newlines": int(self.newline.sum()),
        }


_VOCABULARIES: weakref.WeakKeyDictionary[Any, MusicVocabulary] = weakref.WeakKeyDictionary()


def music_vocabulary(tokenizer: Any) -> MusicVocabulary:
    """The ``MusicVocabulary`` of a tokenizer, built once and cached (rebuilt if tokens were added)."""
    try:
        cached = _VOCABULARIES.get(tokenizer)
    except TypeError:  # not weak-referenceable or hashable: build every time
        return MusicVocabulary(tokenizer)
    if cached is None or cached.size != len(tokenizer):
        cached = MusicVocabulary(tokenizer)
        _VOCABULARIES[tokenizer] = cached
    return cached


# --- one tune's state machine ---------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    generated: int = 0  # tokens fed so far (the budget spent)
    finished: bool = False  # EOS written
    closed: bool = False  # final bar line written: only EOS may follow
    can_end: bool = False  # EOS may follow (no num_bars, after a ':|' closing a repeat)
    pending: tuple[str, ...] = ()  # bar kinds (texts with a bar template) forced next
    in_pickup: bool = False
    filled: int = 0  # grid steps of the current bar written so far
    bars_done: int = 0  # complete full bars (pickup not counted)
    repeat: str = R0
    last: str = "start"  # start, note, bar, space, newline


@dataclass(frozen=True, slots=True)
class _Decision:
    mask: torch.Tensor  # bool over the tokenizer's vocabulary
    allowed: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Section:
    end_bar: int  # number of the full bar that ends it (1-based, pickup not counted)
    repeated: bool


def parse_form(form: str, num_bars: int) -> list[_Section]:
    """Sections of a form: runs of one letter (``AABB`` -> A x2, B x2), ``num_bars`` written bars split
    evenly over them (earlier sections take one more when it does not divide)."""
    if not re.fullmatch(r"[A-Z]+", form):
        raise ConfigError(f"form={form!r}: give section letters such as 'AABB' or 'ABAC'")
    runs = [(m.group(0)[0], len(m.group(0))) for m in re.finditer(r"(.)\1*", form)]
    too_long = [letter * count for letter, count in runs if count > 2]
    if too_long:
        raise ConfigError(f"form={form!r}: {too_long[0]!r} repeats a section more than twice; constrained decoding "
                          "writes a section at most twice (as a |: ... :| repeat)")
    if num_bars < len(runs):
        raise ConfigError(f"form={form!r} has {len(runs)} written sections but only {num_bars} bars were requested")
    base, extra = divmod(num_bars, len(runs))
    sections, end = [], 0
    for index, (_, count) in enumerate(runs):
        end += base + (1 if index < extra else 0)
        sections.append(_Section(end_bar=end, repeated=count == 2))
    return sections


def split_bar_line(vocab: MusicVocabulary, text: str) -> tuple[str, ...] | None:
    """``text`` (one or more bar lines written together, e.g. ``":||:"``) as the fewest single-token bar
    lines of the vocabulary (``(":|", "|:")``), or None when it cannot be written with them."""
    pieces = sorted(vocab.bar_text_masks, key=len, reverse=True)
    best: list[tuple[str, ...] | None] = [None] * (len(text) + 1)
    best[len(text)] = ()
    for i in range(len(text) - 1, -1, -1):
        for piece in pieces:
            rest = best[i + len(piece)] if text.startswith(piece, i) else None
            if rest is not None and (best[i] is None or len(rest) + 1 < len(best[i])):
                best[i] = (piece, *rest)
    return best[0]


def bar_template(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """The bar lines of a body written under ``AbcConstraint``, as ``AbcConstraint(bar_lines=...)`` takes
    them: entry 0 the bar-line text before the first note (``""`` or ``"|:"``), then one entry per bar
    (the pickup bar first) with the text that ends it (``"|"``, ``"::"``, ``":|2"``, ``"|]"``, ...; two
    tokens written together, ``":|"`` + ``"|:"``, give ``":||:"``). Spaces and newlines are left out;
    tokens after EOS are ignored."""
    vocab = music_vocabulary(tokenizer)
    entries: list[str] = []
    current = ""  # bar-line text since the last note
    seen_note = False
    for token_id in map(int, token_ids):
        c = vocab.cls[token_id] if 0 <= token_id < vocab.size else OTHER
        if c in (EOS, PAD):
            break
        if c == NOTE:
            if not seen_note or current:
                entries.append(current)  # the opening bar line, or the one ending the previous bar
            current, seen_note = "", True
        elif c == BAR:
            current += vocab.texts[token_id]
    entries.append(current)
    return entries


class AbcConstraint:
    """The state of one tune body being written, and the tokens it allows next.

    ``meter``, ``unit_length`` and ``pickup`` are in whole notes (``Fraction(3, 4)`` for 6/8 or 3/4,
    ``Fraction(1, 8)``); ``pickup`` 0 means no pickup bar. ``key`` is the ``K:`` value written in the
    prompt (checked, not otherwise used: the body grammar does not depend on it). ``num_bars`` is the
    number of full bars to write (``None``: the model decides, within the budget); ``max_new_tokens`` the
    budget given to ``generate``; ``form`` e.g. ``"AABB"`` (see the module docstring); ``open_repeat``:
    the body continues a melody prompt that opened a ``|:`` it did not close (the model must close it);
    ``bar_lines``: a bar template (see the module docstring; ``num_bars`` may then be None). Raises
    ``ConfigError`` when the settings contradict each other or the budget cannot hold the bars.

    Feed each generated token to ``advance``; ``allowed_mask()`` / ``allowed_ids()`` say what may come
    next. ``AbcLogitsProcessor`` does both for a batch.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        meter: Fraction,
        unit_length: Fraction,
        key: str,
        num_bars: int | None,
        max_new_tokens: int,
        pickup: Fraction = Fraction(0),
        form: str | None = None,
        open_repeat: bool = False,
        bar_lines: Sequence[str] | None = None,
    ) -> None:
        meter, unit_length, pickup = Fraction(meter), Fraction(unit_length), Fraction(pickup or 0)
        if bar_lines is not None:
            bar_lines = tuple(str(text) for text in bar_lines)
            if form or open_repeat:
                raise ConfigError("bar_lines (a bar template) already fixes the repeats and sections: it cannot be "
                                  "combined with form or open_repeat")
            template_bars = len(bar_lines) - 1 - (1 if pickup else 0)
            if template_bars < 1:
                raise ConfigError(f"bar_lines={list(bar_lines)!r}: give the opening bar line ('' for none), then "
                                  f"the bar line ending each bar{' (the pickup bar first)' if pickup else ''}")
            if num_bars is not None and num_bars != template_bars:
                raise ConfigError(f"num_bars={num_bars} but bar_lines holds {template_bars} full bars")
            num_bars = template_bars
        if meter <= 0 or unit_length <= 0:
            raise ConfigError(f"meter={meter} and unit_length={unit_length} must be positive (free meter cannot be "
                              "generated bar by bar)")
        if not 0 <= pickup < meter:
            raise ConfigError(f"pickup={pickup} must be shorter than the bar ({meter} of a whole note)")
        if num_bars is not None and num_bars < 1:
            raise ConfigError(f"num_bars={num_bars}: need at least one bar")
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens} must be at least 1")
        try:
            parse_key(key)
        except AbcParseError as exc:
            raise ConfigError(f"key={key!r}: {exc.reason}") from exc
        if open_repeat and form:
            raise ConfigError("open_repeat (a melody prompt that left a |: open) cannot be combined with form")
        if form and num_bars is None:
            raise ConfigError(f"form={form!r} needs a number of bars to split into sections")
        self.vocab = music_vocabulary(tokenizer)
        self.meter, self.unit_length, self.pickup = meter, unit_length, pickup
        self.key, self.num_bars, self.max_new_tokens, self.form = key, num_bars, max_new_tokens, form or None
        self.open_repeat = bool(open_repeat)
        self.bar_lines: tuple[str, ...] | None = bar_lines
        bar_units, pickup_units = meter / unit_length, pickup / unit_length
        usable = [d for d in self.vocab.durations if d <= bar_units]
        denominator = math.lcm(bar_units.denominator, pickup_units.denominator, *(d.denominator for d in usable))
        self.step = Fraction(1, denominator)  # the grid every length is a whole number of, in L: units
        self.bar_steps = int(bar_units * denominator)
        self.pickup_steps = int(pickup_units * denominator)
        self.dur_steps = [int(d * denominator) if d <= bar_units else _INF for d in self.vocab.durations]
        self.fill = self._fill_table()
        if self.fill[self.bar_steps] >= _INF:
            raise ConfigError(f"the tokenizer has no single-token notes that add up to a bar of M={meter} at "
                              f"L={unit_length} (note lengths: {[str(d) for d in usable]})")
        if self.pickup_steps and self.fill[self.pickup_steps] >= _INF:
            raise ConfigError(f"pickup={pickup} cannot be written with the tokenizer's single-token notes")
        self.full_cost = self.fill[self.bar_steps]
        self.sections = parse_form(form, num_bars) if form and num_bars is not None else []
        self.template = self._template() if bar_lines is not None else None
        if self.template is not None:
            # the opening bar line is forced by reset(), the pickup bar's by _template_next
            self._pickup_tokens = self.template[1] if self.pickup_steps else ()
            first = 2 if self.pickup_steps else 1
            self.boundaries = {bar: self.template[first + bar - 1] for bar in range(1, (num_bars or 0) + 1)}
        else:
            self._pickup_tokens = ()
            self.boundaries = self._boundaries()
        self._pickup_extra = max(len(self._pickup_tokens) - 1, 0)
        self._extra_ge = self._extra_suffix()
        # The budget slack beyond which a state's mask no longer changes: at a bar line, the dearest
        # choice (a first ending needs two more bars); inside a bar, the dearest note for that remainder.
        self._cap = max(f for f in self.fill if f < _INF) + 2 * (self.full_cost + 1) + 4
        self._note_cap = [
            max([1] + [self.fill[r - d] + 1 - self.fill[r] for d in self.dur_steps if d <= r and self.fill[r - d] < _INF])
            if self.fill[r] < _INF else 1
            for r in range(self.bar_steps + 1)
        ]
        self._cache = _shared_cache(self)
        self.reset()
        needed = self.min_tokens_to_finish()
        if needed > max_new_tokens:
            what = f"{num_bars} bars" if num_bars is not None else "one bar"
            raise ConfigError(f"max_new_tokens={max_new_tokens} cannot hold {what} of M={meter} at L={unit_length}"
                              f"{' with a pickup' if pickup else ''}: at least {needed} tokens are needed (one "
                              f"longest note per bar, bar lines and EOS); raise max_new_tokens or ask for fewer bars")

    # --- setup ---

    def _fill_table(self) -> list[int]:
        """``fill[k]``: the fewest single-token notes whose lengths add up to ``k`` grid steps."""
        size = self.bar_steps
        fill = [0] + [_INF] * size
        steps = sorted({s for s in self.dur_steps if s <= size})
        for k in range(1, size + 1):
            best = _INF
            for s in steps:
                if s > k:
                    break
                if fill[k - s] + 1 < best:
                    best = fill[k - s] + 1
            fill[k] = best
        return fill

    def _boundaries(self) -> dict[int, tuple[str, ...]]:
        """Form mode: the bar kinds written after the last bar of each section (keyed by that bar)."""
        out: dict[int, tuple[str, ...]] = {}
        kinds = self.vocab.bar_masks
        for index, section in enumerate(self.sections):
            last = index == len(self.sections) - 1
            following = None if last else self.sections[index + 1]
            if last:
                tokens: tuple[str, ...] = (":|",) if section.repeated else ("|]",)
            elif section.repeated and following and following.repeated:
                tokens = ("::",) if "::" in kinds else (":|", "|:")
            elif section.repeated:
                tokens = (":|",)
            elif following and following.repeated:
                tokens = ("|:",)
            else:
                tokens = ("||",)
            out[section.end_bar] = tokens
        needed = {k for tokens in out.values() for k in tokens}
        if self.sections and self.sections[0].repeated:
            needed.add("|:")
        missing = sorted(needed - set(kinds))
        if missing:
            raise ConfigError(f"form={self.form!r} needs the bar lines {missing}, which are not single tokens of "
                              "this tokenizer")
        return out

    def _template(self) -> list[tuple[str, ...]]:
        """Bar-template mode: each ``bar_lines`` entry as single-token bar-line texts, checked."""
        from abcgen.notation.structure import repeat_problems

        assert self.bar_lines is not None
        out: list[tuple[str, ...]] = []
        for index, text in enumerate(self.bar_lines):
            tokens = split_bar_line(self.vocab, text) if text or index == 0 else None
            if tokens is None:
                raise ConfigError(f"bar_lines[{index}]={text!r} is not a bar line this tokenizer writes with single "
                                  f"bar-line tokens ({', '.join(sorted(self.vocab.bar_text_masks))})")
            out.append(tokens)
        # The repeats and endings of the template itself must be balanced and ordered.
        events = lex_body(self.bar_lines[0] + "".join("C" + text for text in self.bar_lines[1:]), Fraction(1), None)
        problems = repeat_problems(events)
        if problems:
            raise ConfigError(f"bar_lines={list(self.bar_lines)!r}: {problems[0]}")
        return out

    def _template_next(self, s: _State, text: str) -> _State | None:
        """Bar-template mode: the state after bar line ``text`` (a token's text), None unless it is the one
        the template puts at the end of the current bar."""
        if s.filled == 0:
            return None
        ns = replace(s, filled=0, last="bar", can_end=False)
        if s.in_pickup:
            ns.in_pickup = False
            tokens = self._pickup_tokens
        else:
            ns.bars_done = s.bars_done + 1
            tokens = self.boundaries[ns.bars_done]
            ns.closed = ns.bars_done == self.num_bars
        if text != tokens[0]:
            return None
        ns.pending = tokens[1:]
        return ns

    def _extra_suffix(self) -> list[int]:
        """``extra_ge[b]``: forced boundary tokens beyond the bar line itself, at bars numbered >= b."""
        top = (self.num_bars or 0) + 2
        extra = [0] * (top + 1)
        for b in range(top - 1, -1, -1):
            extra[b] = extra[b + 1] + max(len(self.boundaries.get(b, ())) - 1, 0)
        return extra

    def reset(self) -> None:
        """Back to the start of the body."""
        pending = ("|:",) if self.sections and self.sections[0].repeated and not self.pickup_steps else ()
        if self.template is not None:
            pending = self.template[0]
        self.state = _State(pending=pending, in_pickup=bool(self.pickup_steps), repeat=R1 if self.open_repeat else R0)

    # --- costs ---

    @property
    def tokens_left(self) -> int:
        """Tokens that may still be generated (EOS included)."""
        return self.max_new_tokens - self.state.generated

    @property
    def finished(self) -> bool:
        return self.state.finished

    def _min_finish(self, s: _State) -> int:
        """The fewest tokens that finish the tune from state ``s`` (EOS included)."""
        if s.finished:
            return 0
        if s.closed:
            return len(s.pending) + 1
        if s.can_end:
            return 1
        target = self.pickup_steps if s.in_pickup else self.bar_steps
        cost = len(s.pending) + self.fill[target - s.filled] + 1  # fill the bar, its bar line
        if s.in_pickup:
            cost += self._pickup_extra  # a template's pickup bar line written as two tokens
        if self.num_bars is None:
            more = 1 if (s.in_pickup or s.repeat == E1) else 0
            extra = 0
        else:
            done = s.bars_done + (0 if s.in_pickup else 1)  # bars complete after this bar line
            more = self.num_bars - done
            extra = self._extra_ge[max(done, 1)]
        return cost + more * (self.full_cost + 1) + extra + 1

    def min_tokens_to_finish(self) -> int:
        """The fewest tokens that finish the tune from where it stands."""
        return self._min_finish(self.state)

    # --- transitions ---

    def _bar_next(self, s: _State, kind: str) -> _State | None:
        """The state after bar line ``kind`` at a full bar (or at the start of the body), None if not allowed.
        With a bar template ``kind`` is the token's text."""
        if self.template is not None:
            return self._template_next(s, kind)
        ns = replace(s, filled=0, last="bar", can_end=False)
        if s.filled == 0:  # no empty bars: the only bar line before a note is a |: opening the body
            if s.last == "start" and kind == "|:" and not self.sections and not self.pickup_steps and s.repeat == R0:
                ns.repeat = R1
                return ns
            return None
        if s.in_pickup:
            ns.in_pickup = False
            if self.sections:
                want = "|:" if self.sections[0].repeated else "|"
                return ns if kind == want else None
            if kind == "|" or kind == "|:":
                ns.repeat = R1 if kind == "|:" else R0
                return ns
            return None
        done = s.bars_done + 1
        ns.bars_done = done
        final = self.num_bars is not None and done == self.num_bars
        if self.sections:
            tokens = self.boundaries.get(done)
            if tokens is None:
                return ns if kind == "|" else None
            if kind != tokens[0]:
                return None
            ns.pending = tokens[1:]
            ns.closed = final
            return ns
        rep = s.repeat
        if final:
            if (kind == "|]" and rep in (R0, E2)) or (kind == ":|" and rep == R1):
                ns.closed, ns.repeat = True, R0
                return ns
            return None
        left = None if self.num_bars is None else self.num_bars - done
        room_for_endings = left is None or left >= 2  # a first-ending bar, then a second-ending bar
        if kind == "|]":
            if left is None and rep in (R0, E2):
                ns.closed = True
                return ns
            return None
        if kind == "|":
            return ns if rep != E1 or room_for_endings else None
        if kind == "||" and rep in (R0, E2):
            ns.repeat = R0
            return ns
        if kind == "|:" and rep in (R0, E2):
            ns.repeat = R1
            return ns
        if kind == "::" and rep == R1:
            return ns
        if kind == ":|" and rep == R1:
            ns.repeat, ns.can_end = R0, left is None
            return ns
        if kind == "|1" and rep == R1 and room_for_endings:
            ns.repeat = E1
            return ns
        if kind == ":|2" and rep == E1:
            ns.repeat = E2
            return ns
        return None

    # --- masks ---

    def _slack(self, s: _State) -> int:
        return max(self.max_new_tokens - s.generated - self._min_finish(s), 0)

    def _key(self, s: _State) -> tuple[Any, ...]:
        """Everything the allowed set depends on (the state, with the budget slack capped)."""
        if s.finished:
            return ("finished",)
        if s.pending:
            return ("pending", s.pending[0])
        if s.closed:
            return ("closed",)
        slack = self._slack(s)
        target = self.pickup_steps if s.in_pickup else self.bar_steps
        remaining = target - s.filled
        if remaining == 0:
            bars = s.bars_done if self.num_bars is not None else None
            return ("boundary", s.in_pickup, bars, s.repeat, s.last, min(slack, self._cap))
        cap = self._note_cap[remaining] + (self.full_cost + 2 if s.can_end else 0)
        return ("bar", remaining, s.in_pickup, s.last, s.can_end, s.repeat if s.last == "start" else None,
                min(slack, cap))

    def _decide(self, s: _State) -> _Decision:
        key = self._key(s)
        decision = self._cache.get(key)
        if decision is None:
            if len(self._cache) > _MAX_CACHED:  # a bound for huge vocabularies; states repeat, so rarely hit
                vocab = self._cache["__vocab__"]
                self._cache.clear()
                self._cache["__vocab__"] = vocab
            decision = self._cache[key] = self._build(s)
        return decision

    def _build(self, s: _State) -> _Decision:
        v = self.vocab
        mask = torch.zeros(v.size, dtype=torch.bool)
        bar_masks = v.bar_masks if self.template is None else v.bar_text_masks  # by kind, or by text
        if s.finished:
            mask |= v.done
        elif s.pending:
            mask |= bar_masks[s.pending[0]]
        elif s.closed:
            mask |= v.eos
        else:
            slack = self._slack(s)
            base = self._min_finish(s)
            tokens_left = base + slack
            target = self.pickup_steps if s.in_pickup else self.bar_steps
            remaining = target - s.filled
            line_start = s.last in ("start", "newline")
            # After a ':|' that may end the tune, going on costs more than the EOS the base counts.
            going_on = self._min_finish(replace(s, can_end=False)) if s.can_end else base
            for j, steps in enumerate(self.dur_steps):
                if steps > remaining or self.fill[remaining - steps] >= _INF:
                    continue
                if going_on - self.fill[remaining] + self.fill[remaining - steps] + 1 > tokens_left:
                    continue
                if line_start and steps == remaining and not s.in_pickup:
                    # 'A' alone on a line before ':|' would read as a header field 'A:'.
                    mask |= v.note_by_duration[j] & ~v.single_letter
                else:
                    mask |= v.note_by_duration[j]
            if remaining == 0 or (s.last == "start" and s.filled == 0):
                for kind, kind_mask in bar_masks.items():
                    ns = self._bar_next(s, kind)
                    if ns is not None and self._min_finish(ns) + 1 <= tokens_left:
                        mask |= kind_mask
            if slack >= 1 and s.last not in ("start", "space", "newline"):
                mask |= v.space
            if slack >= 1 and s.last == "bar" and self.bar_steps * self.step > 1:
                mask |= v.newline
            if s.can_end:
                mask |= v.eos
        allowed = frozenset(mask.nonzero().flatten().tolist())
        if not allowed:
            raise ConstraintViolation(f"no token can continue the tune from state {s}; this is a bug")
        return _Decision(mask=mask, allowed=allowed)

    def allowed_mask(self) -> torch.Tensor:
        """Boolean mask over the tokenizer's vocabulary of the tokens allowed next (CPU, do not modify)."""
        return self._decide(self.state).mask

    def allowed_ids(self) -> list[int]:
        """Sorted ids of the tokens allowed next."""
        return sorted(self._decide(self.state).allowed)

    def device_mask(self, device: torch.device, width: int, *, blocked: bool = False) -> torch.Tensor:
        """``allowed_mask()`` on ``device``, padded with False to ``width`` (the model's vocabulary size);
        ``blocked=True`` gives its complement (the tokens to mask). Cached per state, device and width."""
        key = self._key(self.state)
        dkey = (key, device, width, blocked)
        cached = self._cache.get(dkey)
        if cached is None:
            mask = self._decide(self.state).mask
            if width > mask.numel():
                mask = torch.cat([mask, torch.zeros(width - mask.numel(), dtype=torch.bool)])
            mask = mask[:width]
            cached = self._cache[dkey] = (~mask if blocked else mask).to(device)
        return cached

    def advance(self, token_id: int) -> None:
        """Feed one generated token. Raises ``ConstraintViolation`` for a token that is not allowed."""
        s = self.state
        if s.finished:  # generate pads finished rows; nothing after EOS matters
            s.generated += 1
            return
        if token_id not in self._decide(s).allowed:
            text = self.vocab.texts[token_id] if 0 <= token_id < self.vocab.size else "?"
            raise ConstraintViolation(f"token {token_id} ({text!r}) is not allowed after {self.state}")
        v = self.vocab
        c = v.cls[token_id]
        if c == NOTE:
            s.filled += self.dur_steps[v.dur_index[token_id]]
            s.last = "note"
            s.can_end = False
        elif c == SPACE:
            s.last = "space"
        elif c == NEWLINE:
            s.last = "newline"
        elif c == BAR:
            kind = v.bar_kind[token_id]
            if s.pending:
                s.pending = s.pending[1:]
                s.last = "bar"
                if kind == "|:" and self.template is None:
                    s.repeat = R1
            else:
                ns = self._bar_next(s, kind if self.template is None else v.texts[token_id])
                assert ns is not None  # allowed tokens have a transition
                self.state = s = ns
        elif c in (EOS, PAD):
            s.finished = True
        s.generated += 1

    def feed(self, token_ids: Sequence[int]) -> None:
        """``advance`` each token in turn."""
        for token_id in token_ids:
            self.advance(int(token_id))

    @property
    def bars_done(self) -> int:
        """Full bars completed so far (a pickup is not counted)."""
        return self.state.bars_done


_SHARED: dict[tuple[Any, ...], dict[tuple[Any, ...], Any]] = {}


def _shared_cache(c: AbcConstraint) -> dict[tuple[Any, ...], Any]:
    """One mask cache for all constraints with the same vocabulary and settings."""
    key = (id(c.vocab), c.vocab.size, c.meter, c.unit_length, c.pickup, c.num_bars, c.form, c.open_repeat,
           c.bar_lines)
    cache = _SHARED.get(key)
    if cache is None or cache.get("__vocab__") is not c.vocab:
        if len(_SHARED) > 256:
            _SHARED.clear()
        cache = _SHARED[key] = {"__vocab__": c.vocab}
    return cache


# --- the processor --------------------------------------------------------------------------------------


class AbcLogitsProcessor(LogitsProcessor):
    """Masks, per batch row, every token its ``AbcConstraint`` does not allow (score ``-inf``).

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
            for copy_index in range(k):
                if copy_index == 0:
                    expanded.append(c)
                else:
                    twin = object.__new__(AbcConstraint)
                    twin.__dict__.update(c.__dict__)
                    twin.state = replace(c.state)
                    expanded.append(twin)
                lengths.append(n)
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
        return scores.masked_fill(blocked, -math.inf)


__all__ = ["AbcConstraint", "AbcLogitsProcessor", "ConstraintViolation", "MusicVocabulary", "bar_template",
           "music_vocabulary", "parse_form", "parse_unit", "split_bar_line"]
