"""Bar lines fixed in advance: the sections of a ``form`` and the bar template of a later voice.

Both rules decide, at each full bar, which bar line must end it (one or two tokens: a bar line such as
``:||:`` that is no single token is written as ``:|`` then ``|:``; the engine forces the second token,
``State.pending``). Every other bar line is refused there, and no bar line opens the body unless forced
at the start.

**Form** (``form="AABB"``, needs ``num_bars``): the letters are read as runs (``AABB`` -> A twice, B
twice; ``ABAC`` -> A, B, A, C); a run of two is one repeated section ``|: ... :|``, a run of one a
plain section ended by ``||`` (``|]`` at the end). Here ``num_bars`` counts *written* bars and is split
evenly over the written sections (earlier sections take one more when it does not divide); the pipeline's
``bars`` counts *played* bars, as players do (``written_bars``: a 32-bar AABB reel writes 16). Within a
section only ``|`` is allowed, and the section boundaries are forced (``:|`` / ``::`` / ``|:`` / ``||``).
That a returning letter repeats its music (the second ``A`` of ``ABAC``) is ``abcgen.grammar.recurrence``.
With ``endings`` a repeated section ends ``|1 <bar> :|2 <bar>`` (first and second endings, one bar each:
one written bar more than its played length, ``written_bars``).

**Bar templates** (``bar_lines``, for the later voices of a multi-voice tune): ``bar_template`` reads the
bar lines voice 1 wrote -- the opening one (``""`` or ``"|:"``), then the text ending each bar, the pickup
bar first (``["|:", "|", "::", "|", ":|"]``) -- and the template rule forces exactly that text at the end
of each bar, and EOS after the last one. The bars are filled freely as usual, so every voice has the
bars, lengths, repeats and endings of voice 1: the voices stay in step bar by bar. The template's own
repeats must be balanced.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from abcgen.grammar.errors import BarTemplateError, FormError, UnclosedRepeatError
from abcgen.grammar.rules.base import OFFER, REFUSE, Rule
from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import BAR, BAR_KINDS, MusicVocabulary, Unit, split_bar_line
from abcgen.notation.lexer import lex_body
from abcgen.notation.structure import repeat_problems

Forced = tuple[frozenset[str], ...]  # per token, the bar-line texts accepted


@dataclass(frozen=True, slots=True)
class Section:
    end_bar: int  # number of the full bar that ends it (1-based, pickup not counted)
    repeated: bool
    endings: bool = False  # a repeated section ending |1 <bar> :|2 <bar> (its last two written bars)


def form_runs(form: str) -> list[tuple[str, int]]:
    """The written sections of a form: runs of one letter, ``"AABB"`` -> ``[("A", 2), ("B", 2)]``."""
    if not re.fullmatch(r"[A-Z]+", form):
        raise FormError(f"form={form!r}: give section letters such as 'AABB' or 'ABAC'")
    return [(m.group(0)[0], len(m.group(0))) for m in re.finditer(r"(.)\1*", form)]


def written_bars(form: str, played: int, endings: bool = False) -> int:
    """The bars written for ``played`` bars played in ``form`` (how players count: a 32-bar ``AABB`` reel
    is two 8-bar parts, each played twice, 16 bars written). Each letter plays ``played / len(form)``
    bars; a run of two letters is written once, between repeat signs -- with ``endings`` one bar more
    (``|1 <bar> :|2 <bar>``: the second ending replaces the first when the part is played again)."""
    if played % len(form):
        raise FormError(f"bars={played} cannot be split into the {len(form)} sections of form {form!r}")
    runs = form_runs(form)
    return played // len(form) * len(runs) + (sum(count == 2 for _, count in runs) if endings else 0)


def played_bars(form: str, written: int, endings: bool = False) -> int | None:
    """The inverse of ``written_bars`` (a real tune's played length), None when ``written`` does not split
    evenly into the form's written sections."""
    runs = form_runs(form)
    core = written - (sum(count == 2 for _, count in runs) if endings else 0)
    return core // len(runs) * len(form) if core > 0 and core % len(runs) == 0 else None


def parse_form(form: str, num_bars: int, endings: bool = False) -> list[Section]:
    """Sections of a form: runs of one letter (``AABB`` -> A x2, B x2), ``num_bars`` *written* bars split
    evenly over them (earlier sections take one more when it does not divide); with ``endings`` each
    repeated section has one bar more, its second ending."""
    runs = form_runs(form)
    repeated = sum(count == 2 for _, count in runs) if endings else 0
    too_long = [letter * count for letter, count in runs if count > 2]
    if too_long:
        raise FormError(f"form={form!r}: {too_long[0]!r} repeats a section more than twice; constrained decoding "
                        "writes a section at most twice (as a |: ... :| repeat)")
    if num_bars - repeated < len(runs) * (2 if endings else 1):
        raise FormError(f"form={form!r} has {len(runs)} written sections but only {num_bars} bars were requested"
                        + (" (first and second endings need 2 bars a section and one more)" if endings else ""))
    base, extra = divmod(num_bars - repeated, len(runs))
    sections, end = [], 0
    for index, (_, count) in enumerate(runs):
        with_endings = endings and count == 2
        end += base + (1 if index < extra else 0) + (1 if with_endings else 0)
        sections.append(Section(end_bar=end, repeated=count == 2, endings=with_endings))
    return sections


class _ForcedBarLines(Rule):
    """Shared by the form and template rules: ``boundaries[bar]`` (the tokens after full bar ``bar``),
    ``pickup_tokens``, ``opening`` (forced at the start); the rest of the bar lines are ``plain``."""

    classes = frozenset({BAR})
    boundaries: dict[int, Forced]
    pickup_tokens: Forced
    opening: Forced
    plain: Forced | None  # the bar line inside a section (form), None: every bar is a boundary (template)

    def _finish_bind(self) -> None:
        top = (self.g.num_bars or 0) + 2
        extra = [0] * (top + 1)  # extra[b]: forced tokens beyond the bar line itself, at bars numbered >= b
        for b in range(top - 1, -1, -1):
            extra[b] = extra[b + 1] + max(len(self.boundaries.get(b, ())) - 1, 0)
        self.extra_ge = extra
        self.pickup_extra = max(len(self.pickup_tokens) - 1, 0)

    def start(self, s: State) -> None:
        s.pending = self.opening

    def bar_end(self, s: State) -> Forced | None:
        """The tokens that must end the current (full) bar."""
        if s.in_pickup:
            return self.pickup_tokens
        return self.boundaries.get(s.bars_done + 1, self.plain)

    def step(self, s: State, ns: State, unit: Unit) -> int:
        if s.room:  # an opening bar line is only ever forced (State.pending)
            return REFUSE
        tokens = self.bar_end(s)
        if not tokens or unit.text not in tokens[0]:
            return REFUSE
        ns.pending = tokens[1:]
        return OFFER

    def finish_cost(self, s: State) -> int:
        done = s.bars_done + (0 if s.in_pickup else 1)
        return self.extra_ge[max(done, 1)] + (self.pickup_extra if s.in_pickup else 0)

    def key(self, s: State) -> Hashable:
        return None if s.room else self.bar_end(s)


def texts_of_kind(vocab: MusicVocabulary, kind: str) -> frozenset[str]:
    """The single-token bar-line texts that count as ``kind`` (``:|`` and ``:||``)."""
    return frozenset(t for t in vocab.bar_text_masks if BAR_KINDS[t] == kind)


class FormRule(_ForcedBarLines):
    name = "form"

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        assert g.form is not None and g.num_bars is not None
        self.sections = parse_form(g.form, g.num_bars, g.settings.endings)
        kinds = g.vocab.bar_masks
        out: dict[int, tuple[str, ...]] = {}
        for index, section in enumerate(self.sections):
            following = None if index == len(self.sections) - 1 else self.sections[index + 1]
            if section.endings:  # ... |1 <first ending> :|2 <second ending> then the next section's bar line
                out[section.end_bar - 2], out[section.end_bar - 1] = ("|1",), (":|2",)
                tokens: tuple[str, ...] = ("|]",) if following is None else ("|:",) if following.repeated else ("||",)
            elif following is None:
                tokens = (":|",) if section.repeated else ("|]",)
            elif section.repeated and following.repeated:
                tokens = ("::",) if "::" in kinds else (":|", "|:")
            elif section.repeated:
                tokens = (":|",)
            elif following.repeated:
                tokens = ("|:",)
            else:
                tokens = ("||",)
            out[section.end_bar] = tokens
        needed = {k for tokens in out.values() for k in tokens}
        if self.sections[0].repeated:
            needed.add("|:")
        missing = sorted(needed - set(kinds))
        if missing:
            raise FormError(f"form={g.form!r} needs the bar lines {missing}, which are not single tokens of "
                            "this tokenizer")

        def forced(tokens: tuple[str, ...]) -> Forced:
            return tuple(texts_of_kind(g.vocab, k) for k in tokens)

        self.boundaries = {bar: forced(tokens) for bar, tokens in out.items()}
        first = "|:" if self.sections[0].repeated else "|"
        self.plain = forced(("|",))
        self.pickup_tokens = ()  # the pickup's bar line is one token: the first section's opening
        self.opening = forced(("|:",)) if self.sections[0].repeated and not g.pickup_steps else ()
        self._pickup_bar = forced((first,))
        self._finish_bind()

    def bar_end(self, s: State) -> Forced | None:
        if s.in_pickup:
            return self._pickup_bar
        return self.boundaries.get(s.bars_done + 1, self.plain)


class TemplateRule(_ForcedBarLines):
    name = "template"

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        assert g.bar_lines is not None
        template = read_template(g.vocab, g.bar_lines)
        forced = [tuple(frozenset({t}) for t in tokens) for tokens in template]
        self.opening = forced[0]
        self.pickup_tokens = forced[1] if g.pickup_steps else ()
        first = 2 if g.pickup_steps else 1
        self.boundaries = {bar: forced[first + bar - 1] for bar in range(1, (g.num_bars or 0) + 1)}
        self.plain = None
        self._finish_bind()


def read_template(vocab: MusicVocabulary, bar_lines: Sequence[str]) -> list[tuple[str, ...]]:
    """Each ``bar_lines`` entry as single-token bar-line texts, checked: known bar lines, and repeats and
    endings balanced and in order."""
    out: list[tuple[str, ...]] = []
    for index, text in enumerate(bar_lines):
        tokens = split_bar_line(vocab, text) if text or index == 0 else None
        if tokens is None:
            raise BarTemplateError(f"bar_lines[{index}]={text!r} is not a bar line this tokenizer writes with single "
                                   f"bar-line tokens ({', '.join(sorted(vocab.bar_text_masks))})")
        out.append(tokens)
    events = lex_body(bar_lines[0] + "".join("C" + text for text in bar_lines[1:]), Fraction(1), None)
    problems = repeat_problems(events)
    if problems:
        raise UnclosedRepeatError(f"bar_lines={list(bar_lines)!r}: {problems[0]}")
    return out
