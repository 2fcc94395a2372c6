"""The music units of a tokenizer: which token is which complete unit of the body grammar.

Each vocabulary entry's text is lexed once with ``abcgen.notation.lexer.lex_body``; a token is a unit only
when its text is exactly one note or rest, one bar line, a run of spaces or a newline (see the package
docstring for what is masked and why). Tokens the rules cannot tell apart are grouped into ``Unit``s, each
with a boolean mask over the vocabulary, so a mask is built from a few dozen units, not token by token.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

from abcgen.errors import AbcParseError
from abcgen.grammar.errors import VocabularyError
from abcgen.notation import events as ev
from abcgen.notation.lexer import lex_body

# Token classes of the table. The idiom classes come after PAD so the classes of the original grammar keep
# their numbers (a random walk that picks a class by number picks the same ones under the old rules).
OTHER, NOTE, SPACE, NEWLINE, BAR, EOS, PAD = range(7)
(BROKEN, TUPLET, TIE, GRACE_OPEN, GRACE_CLOSE, DECORATION, SLUR_OPEN, SLUR_CLOSE, CHORD_SYMBOL, CHORD_OPEN,
 CHORD_CLOSE) = range(7, 18)
IDIOM_CLASSES = frozenset(range(7, 18))
# A token whose text is two units written together (BPE merges such as " (", " |]", "A2 ", "AB"): the rules
# see its two parts in turn (``Unit.parts``), so a model keeps the merged tokens its tokenizer gives it.
COMPOSITE = 18
IDIOM_CLASS_NAMES = {"broken": BROKEN, "tuplet": TUPLET, "tie": TIE, "grace_open": GRACE_OPEN,
                     "grace_close": GRACE_CLOSE, "decoration": DECORATION, "slur_open": SLUR_OPEN,
                     "slur_close": SLUR_CLOSE, "chord_symbol": CHORD_SYMBOL, "chord_open": CHORD_OPEN,
                     "chord_close": CHORD_CLOSE}

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
# One-character idiom tokens, read by their exact text (alone they are not lexable ABC).
_IDIOM_TEXTS = {"{": GRACE_OPEN, "}": GRACE_CLOSE, "[": CHORD_OPEN, "]": CHORD_CLOSE, "(": SLUR_OPEN,
                ")": SLUR_CLOSE, "-": TIE}
# Broken rhythm: the factors of the first and the second note (a>b: 3/2 and 1/2; a>>b: 7/4 and 1/4).
_BROKEN = {">": (Fraction(3, 2), Fraction(1, 2)), "<": (Fraction(1, 2), Fraction(3, 2)),
           ">>": (Fraction(7, 4), Fraction(1, 4)), "<<": (Fraction(1, 4), Fraction(7, 4))}
_TUPLET_RE = re.compile(r"\(([2-9])(?::([1-9]?))?(?::([1-9]?))?")
_DECORATION_RE = re.compile(r"[~.HLMOPSTuvJR]|![A-Za-z0-9.<>()+^-]+!")
# A chord name of a chord symbol ("Am", "D7", "G/B", "F#m7b5"); quoted texts that are not chords
# (fingerings "4", "D.C.", "tr") are not offered as chord symbols.
CHORD_NAME_RE = re.compile(r"[A-G][#b]?(?:m|min|maj|dim|aug|sus|M)?(?:[0-9]{1,2})?(?:sus[24]|add[29]|b5|#5|b9)?"
                           r"(?:/[A-G][#b]?)?")


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


def parse_idiom(text: str) -> tuple[int, Any]:
    """``(class, value)`` of an idiom token, ``(OTHER, None)`` for anything else: ``(BROKEN, (first,
    second))`` factors, ``(TUPLET, (p, q, r))`` with q and r None when not written, ``(DECORATION, text)``,
    ``(CHORD_SYMBOL, name)`` and the one-character tokens ``{ } [ ] ( ) -`` (value None)."""
    if text in _IDIOM_TEXTS:
        return _IDIOM_TEXTS[text], None
    if text in _BROKEN:
        return BROKEN, _BROKEN[text]
    if m := _TUPLET_RE.fullmatch(text):
        return TUPLET, (int(m.group(1)), int(m.group(2)) if m.group(2) else None,
                        int(m.group(3)) if m.group(3) else None)
    if _DECORATION_RE.fullmatch(text):
        return DECORATION, text
    if len(text) > 2 and text[0] == text[-1] == '"' and CHORD_NAME_RE.fullmatch(text[1:-1]):
        return CHORD_SYMBOL, text[1:-1]
    return OTHER, None


def parse_unit(text: str) -> tuple[int, Any]:
    """``(class, value)`` of one token text: ``(NOTE, duration)``, ``(BAR, kind)``, ``(SPACE, None)``,
    ``(NEWLINE, None)``, an idiom (``parse_idiom``) or ``(OTHER, None)`` for anything the body grammar
    does not use."""
    idiom = parse_idiom(text)
    if idiom[0] != OTHER:
        return idiom
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


@dataclass(frozen=True, slots=True, eq=False)
class Unit:
    """Tokens the rules treat alike: what a rule sees of a candidate token.

    ``cls`` is the token class (``NOTE``, ``BAR``, ...); a note has ``dur`` (index into
    ``MusicVocabulary.durations``), ``lone`` (a single letter such as ``A`` or ``z``, which must not
    start a line before a ``:``-bar line), ``rest`` and, in the pitched units only, ``pitch`` (letter
    upper case, octave as ``abcgen.notation.events.Pitch``, accidental as written); a bar line has its
    ``text`` and its ``kind`` (``:||`` counts as ``:|``); an idiom token its ``text`` and ``value``
    (``parse_idiom``); a ``COMPOSITE`` token its two ``parts``. ``mask`` is the unit's tokens over the
    vocabulary."""

    cls: int
    mask: torch.Tensor = field(repr=False)
    dur: int = -1
    lone: bool = False
    text: str = ""
    kind: str = ""
    rest: bool = False
    pitch: tuple[str, int, str] | None = None
    value: Any = None
    parts: tuple[Unit, ...] = ()  # a COMPOSITE token's units, in order


class MusicVocabulary:
    """The token table of one tokenizer: what unit each token id is, and boolean masks per unit class.

    ``cls[i]`` is the class of token ``i``; ``dur_index[i]`` indexes ``durations`` for notes/rests;
    ``bar_kind[i]`` is the bar kind for bar lines; ``units`` the candidate units and ``unit_of[i]`` the
    index of token ``i``'s unit (-1: never allowed); ``pitched_units``/``pitched_unit_of`` the same with
    notes split by pitch (for the rules that read pitches: ties, cadence). Built by ``music_vocabulary``
    (cached per tokenizer)."""

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
            raise VocabularyError("the tokenizer has no EOS token: constrained decoding needs one to end the tune")
        cls[self.eos_token_id] = EOS
        if self.pad_token_id is not None and self.pad_token_id != self.eos_token_id:
            cls[self.pad_token_id] = PAD
        self.texts = texts
        # Two-unit tokens: only where the parts are read exactly as written apart (no bar line next to a
        # bar line -- '|' + '|' is '||' --, no two spaces). parts_of[i]: ((cls, value, text), ...) or None.
        self.parts_of: list[tuple[tuple[int, Any, str], ...] | None] = [None] * n
        for i, text in enumerate(texts):
            if cls[i] == OTHER and i not in special and 1 < len(text) <= 12:
                parts = _split_two(text)
                if parts is not None:
                    cls[i], self.parts_of[i] = COMPOSITE, parts
        self.cls = cls
        self.values = [v if c >= BROKEN else None for c, v in zip(cls, value, strict=True)]
        self.durations: tuple[Fraction, ...] = tuple(sorted({v for c, v in zip(cls, value, strict=True) if c == NOTE}))
        # a composite whose note length no single token has stays out (every length is indexed)
        for i, parts in enumerate(self.parts_of):
            if parts is not None and any(pc == NOTE and pv not in self.durations for pc, pv, _ in parts):
                cls[i], self.parts_of[i] = OTHER, None
        where = {d: j for j, d in enumerate(self.durations)}
        self.dur_index = [where[v] if c == NOTE else -1 for c, v in zip(cls, value, strict=True)]
        self.bar_kind = [v if c == BAR else None for c, v in zip(cls, value, strict=True)]
        self.pitches = [_pitch_of(t) if c == NOTE else None for c, t in zip(cls, texts, strict=True)]
        cls_t = torch.tensor(cls)
        dur_t = torch.tensor(self.dur_index)
        self.note_by_duration = torch.stack([dur_t == j for j in range(len(self.durations))]) if self.durations \
            else torch.zeros(0, n, dtype=torch.bool)
        lone = [c == NOTE and len(t) == 1 and bool(_LETTER_RE.fullmatch(t)) for c, t in zip(cls, texts, strict=True)]
        self.single_letter = torch.tensor(lone)
        self.space = cls_t == SPACE
        self.newline = cls_t == NEWLINE
        self.eos = cls_t == EOS
        self.done = self.eos | (cls_t == PAD)
        # notes, rests and tokens with a note among their parts: what weighted rules choose among (``weigh``)
        self.notes = torch.tensor([c == NOTE or (parts is not None and any(pc == NOTE for pc, _, _ in parts))
                                   for c, parts in zip(cls, self.parts_of, strict=True)])
        kinds = sorted({k for k in self.bar_kind if k is not None})
        self.bar_masks = {k: torch.tensor([b == k for b in self.bar_kind]) for k in kinds}
        bar_texts = sorted({t for t, k in zip(texts, self.bar_kind, strict=True) if k is not None})
        self.bar_text_masks = {t: torch.tensor([k is not None and x == t for x, k in zip(texts, self.bar_kind, strict=True)])
                               for t in bar_texts}
        self.idiom_classes = frozenset(c for c in cls if c in IDIOM_CLASSES)  # single tokens: a rule needs them
        self.units, self.unit_of = self._units(lone, pitched=False)
        self.pitched_units, self.pitched_unit_of = self._units(lone, pitched=True)

    def _group(self, i: int, lone: list[bool], pitched: bool) -> tuple[Any, ...] | None:
        """What the rules see of token ``i`` (tokens with the same group are one unit); None: never allowed."""
        c = self.cls[i]
        if c == NOTE:
            pitch = self.pitches[i]
            return NOTE, self.dur_index[i], lone[i], pitch is None, pitch if pitched else None
        if c == BAR:
            return BAR, self.texts[i]
        if c in IDIOM_CLASSES:
            return c, self.texts[i]
        if c in (SPACE, NEWLINE, EOS):
            return (c,)
        if c == COMPOSITE:
            return (COMPOSITE, *(self._part_group(part, pitched) for part in self.parts_of[i]))
        return None

    def _part_group(self, part: tuple[int, Any, str], pitched: bool) -> tuple[Any, ...]:
        """The group of one part of a composite token, as ``_group`` gives it for a token of that text."""
        c, v, text = part
        if c == NOTE:
            pitch = _pitch_of(text)
            lone = len(text) == 1 and bool(_LETTER_RE.fullmatch(text))
            return NOTE, self.durations.index(v), lone, pitch is None, pitch if pitched else None
        if c in (BAR,) or c in IDIOM_CLASSES:
            return c, text
        return (c,)

    def _unit(self, group: tuple[Any, ...], mask: torch.Tensor) -> Unit:
        c = group[0]
        if c == NOTE:
            return Unit(NOTE, mask, dur=group[1], lone=group[2], rest=group[3], pitch=group[4])
        if c == BAR:
            return Unit(BAR, mask, text=group[1], kind=BAR_KINDS[group[1]])
        if c in IDIOM_CLASSES:
            return Unit(c, mask, text=group[1], value=parse_idiom(group[1])[1])
        if c == COMPOSITE:
            empty = torch.zeros(0, dtype=torch.bool)
            return Unit(COMPOSITE, mask, parts=tuple(self._unit(part, empty) for part in group[1:]))
        return Unit(c, mask)

    def _units(self, lone: list[bool], pitched: bool) -> tuple[list[Unit], list[int]]:
        """The candidate units (notes by length, lone-letter flag, rest and -- ``pitched`` -- pitch; bar
        lines and idiom tokens by text; space, newline, EOS) and the unit index of every token."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in range(self.size):
            group = self._group(i, lone, pitched)
            if group is not None:
                groups.setdefault(group, []).append(i)
        order = {NOTE: 0, BAR: 1, SPACE: 2, NEWLINE: 3, EOS: 4}
        keys = sorted(groups, key=lambda g: (order.get(g[0], 5), g[0], repr(g[1:])))
        units: list[Unit] = []
        unit_of = [-1] * self.size
        for group in keys:
            members = groups[group]
            mask = torch.zeros(self.size, dtype=torch.bool)
            mask[members] = True
            for i in members:
                unit_of[i] = len(units)
            units.append(self._unit(group, mask))
        return units, unit_of

    def describe(self) -> dict[str, Any]:
        """Counts of each unit class (for reports and tests)."""
        return {
            "vocab_size": self.size,
            "notes": int(sum(c == NOTE for c in self.cls)),
            "durations": [str(d) for d in self.durations],
            "bar_kinds": sorted(self.bar_masks),
            "spaces": int(self.space.sum()),
            "newlines": int(self.newline.sum()),
            "idioms": {name: int(sum(c == cls for c in self.cls)) for name, cls in IDIOM_CLASS_NAMES.items()},
            "composites": int(sum(c == COMPOSITE for c in self.cls)),
        }


def _split_two(text: str) -> tuple[tuple[int, Any, str], tuple[int, Any, str]] | None:
    """``text`` as exactly two units read apart (``" ("`` -> space, slur; ``"A2 "`` -> note, space), or
    None. Refused: two bar lines or two spaces (written together they are another unit), a note followed
    by something that would change it when written together (a note's length or octave marks are parts
    of no unit, so this cannot happen), and texts with several readings."""
    found = None
    for cut in range(1, len(text)):
        first, second = parse_unit(text[:cut]), parse_unit(text[cut:])
        if OTHER in (first[0], second[0]) or first[0] == second[0] in (BAR, SPACE, NEWLINE):
            continue
        if found is not None:
            return None
        found = ((first[0], first[1], text[:cut]), (second[0], second[1], text[cut:]))
    return found


def _pitch_of(text: str) -> tuple[str, int, str] | None:
    """(letter, octave, written accidental) of a note token, None for a rest."""
    m = _NOTE_PITCH_RE.fullmatch(text)
    if m is None:
        return None
    acc, letter, marks = m.group(1) or "", m.group(2), m.group(3)
    octave = (1 if letter.islower() else 0) + marks.count("'") - marks.count(",")
    return letter.upper(), octave, acc


_NOTE_PITCH_RE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([',]*)[0-9/]*")
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


def music_token_ids(tokenizer: Any) -> list[int]:
    """The ids of every token the body grammar can write: notes, rests, bar lines, spaces, newlines, idiom
    symbols (``>`` ``(3`` ``{`` ``~`` ...) and their two-unit merges -- the tokens a tune body is made of."""
    vocab = music_vocabulary(tokenizer)
    return [i for i, c in enumerate(vocab.cls) if c not in (OTHER, EOS, PAD)]


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
    pieces: list[tuple[int, str]] = []  # (class, text) of each unit, a composite token's parts in turn
    for token_id in map(int, token_ids):
        c = vocab.cls[token_id] if 0 <= token_id < vocab.size else OTHER
        if c in (EOS, PAD):
            break
        parts = vocab.parts_of[token_id] if c == COMPOSITE else None
        pieces += [(pc, text) for pc, _, text in parts] if parts else [(c, vocab.texts[token_id] if c == BAR else "")]
    for c, text in pieces:
        if c == NOTE:
            if not seen_note or current:
                entries.append(current)  # the opening bar line, or the one ending the previous bar
            current, seen_note = "", True
        elif c == BAR:
            current += text
    entries.append(current)
    return entries


__all__ = ["BAR", "BAR_KINDS", "BROKEN", "CHORD_CLOSE", "CHORD_NAME_RE", "CHORD_OPEN", "CHORD_SYMBOL", "COMPOSITE",
           "DECORATION",
           "EOS", "GRACE_CLOSE", "GRACE_OPEN", "IDIOM_CLASSES", "IDIOM_CLASS_NAMES", "NEWLINE", "NOTE", "OTHER", "PAD",
           "SLUR_CLOSE", "SLUR_OPEN", "SPACE", "TIE", "TUPLET", "MusicVocabulary", "Unit", "bar_template",
           "music_token_ids", "music_vocabulary", "parse_idiom", "parse_unit", "split_bar_line"]
