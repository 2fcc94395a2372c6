"""Multi-voice ABC: splitting voices apart, the interleaved one-bar-per-line form, and voice alignment.

Two layouts of the same multi-voice tune are handled:

*Voice blocks* (what xml2abc and most editors write; see :mod:`abcgen.notation.musicxml`)::

    V:1 treble nm="Soprano"        <- definitions (header)
    V:2 bass nm="Bass"
    K:G
    V:1                            <- body of voice 1 ...
    G2 | A2 B2 | c4 |]
    V:2                            <- ... then voice 2
    G,2 | F,2 G,2 | C,4 |]

*Interleaved* (NotaGen / abctoolkit ``rotate_abc``): each body line holds one bar of every voice, so a
language model sees simultaneous music close together::

    [V:1]G2 |[V:2]G,2 |
    [V:1]A2 B2 |[V:2]F,2 G,2 |
    [V:1]c4 |][V:2]C,4 |]

:func:`interleave_voices` / :func:`deinterleave_voices` convert between them. Bars are cut *after* each
bar line (volta numbers glued to it, ``:|2``), with surrounding spaces stripped; deinterleaving joins a
voice's bars with one space. That is exactly how xml2abc lays out a voice line, so on the normalised
output of :func:`abcgen.notation.musicxml.musicxml_to_abc` the round trip is exact.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction

from abcgen.errors import AbcParseError
from abcgen.notation.bars import bar_durations
from abcgen.notation.lexer import is_compound_meter, lex_body, parse_fraction

logger = logging.getLogger(__name__)

__all__ = [
    "BarMismatch",
    "check_voices_in_step",
    "deinterleave_voices",
    "interleave_voices",
    "split_bar_texts",
    "split_voices",
    "strip_abc_comment",
    "voice_bar_durations",
]

# A bar line: [| or any run of : | ] that contains a |, or :: (xml2abc's repeat-both-ways), followed
# by volta numbers glued to it (|1  :|2  |1,3  |1-2).
_BAR_RE = re.compile(r"(?:\[\||:*\|[|\]:]*|::+)(?:[0-9]+(?:[,\-][0-9]+)*)?")
# [V:1], [V: S1 clef=bass] -- inline voice switch; group 1 is the id.
_INLINE_VOICE_RE = re.compile(r"\[V:\s*([^\]\s]+)[^\]]*\]")
# A voice's content once bar lines, inline fields, decorations and spaces are removed: if nothing is
# left, the piece holds no music (a lone left bar line "|:", a "[K:D]" prefix).
_NON_MUSIC_RE = re.compile(r'\[[A-Za-z]:[^\]]*\]|"[^"]*"|![^!]*!|\s')


def strip_abc_comment(line: str) -> str:
    """Remove a ``%`` comment from one ABC line, respecting ``\\%`` escapes and quoted strings.

    A ``%`` inside a ``"..."`` chord symbol or annotation is text, not a comment, so it is kept.
    Trailing whitespace left in front of the comment is removed too.
    """
    in_quote = False
    prev = ""
    for index, char in enumerate(line):
        if char == '"' and prev != "\\":
            in_quote = not in_quote
        elif char == "%" and not in_quote and prev != "\\":
            return line[:index].rstrip()
        prev = char
    return line


def _voice_id(field_value: str) -> str:
    """The id of a ``V:`` field value: its first word (``"1 treble nm=..."`` -> ``"1"``)."""
    words = field_value.split()
    if not words:
        raise AbcParseError("V: field without a voice id")
    return words[0]


def split_bar_texts(text: str) -> list[str]:
    """Cut one voice's body text into bar *texts*, each ending with its bar line (stripped of outer spaces).

    Text-level on purpose: it lays out xml2abc output and the interleaved form, and must keep text the
    strict lexer would reject. For bars with durations use :func:`abcgen.notation.bars.split_bars`.

    Quoted strings, ``!decorations!`` and inline fields (``[K:D]``, ``[V:1]``) are skipped so that a
    ``|`` inside them is not taken for a bar line. A piece that holds no music (a left bar line ``|:``,
    an inline field) is glued to the next bar; text after the last bar line forms a last bar without one.
    Newlines inside the text count as spaces.
    """
    bars: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == '"' or char == "!":
            end = text.find(char, i + 1)
            i = n if end < 0 else end + 1
            continue
        if char == "[" and i + 2 < n and text[i + 1].isalpha() and text[i + 2] == ":":
            end = text.find("]", i)
            i = n if end < 0 else end + 1
            continue
        match = _BAR_RE.match(text, i)
        if match and match.end() > i:
            bars.append(text[start : match.end()])
            start = i = match.end()
            continue
        i += 1
    if text[start:].strip():
        bars.append(text[start:])
    bars = [" ".join(bar.split()) if "\n" in bar else bar.strip() for bar in bars]
    # A piece with no music (a left bar line "|:", "[|" right after "||", a lone "[K:D]") is not a bar of
    # its own: glue it to the next bar, or to the previous one at the very end.
    merged: list[str] = []
    pending = ""
    for bar in bars:
        if not _has_music(bar):
            pending = f"{pending} {bar}" if pending else bar
            continue
        merged.append(f"{pending} {bar}" if pending else bar)
        pending = ""
    if pending:
        if merged:
            merged[-1] = f"{merged[-1]} {pending}"
        else:
            merged.append(pending)
    bars = merged
    return bars


def _has_music(piece: str) -> bool:
    """Whether ``piece`` holds anything besides bar lines, inline fields, decorations and spaces."""
    rest = _NON_MUSIC_RE.sub("", piece)
    return bool(_BAR_RE.sub("", rest))


def _voice_pieces(abc: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header lines and, per voice (in order of first appearance), its body pieces.

    A piece is a body line of that voice, or one ``[V:x]`` segment of an interleaved line. Comment lines,
    ``%`` comments, blank lines and ``w:``/``W:`` lyric lines are dropped. A body without any ``V:``
    belongs to voice ``"1"``.
    """
    lines = abc.splitlines()
    header: list[str] = []
    index = 0
    # Header: every non-blank line up to and including the first K: line.
    while index < len(lines):
        line = lines[index].rstrip()
        index += 1
        if line.strip():
            header.append(line)
            if line.startswith("K:"):
                break
    else:
        raise AbcParseError("tune has no K: line")

    body_lines: list[str] = []
    for raw in lines[index:]:
        if raw.startswith("%"):
            continue
        line = strip_abc_comment(raw).strip()
        if line and not re.match(r"^[wW]:", line):
            body_lines.append(line)

    # V: definitions written after K: (xml2abc's layout): V: lines directly followed by another V: line
    # before any music belong to the header.
    while len(body_lines) > 1 and body_lines[0].startswith("V:") and body_lines[1].startswith("V:"):
        header.append(body_lines.pop(0))

    pieces: dict[str, list[str]] = {}
    current = "1"
    for line in body_lines:
        if line.startswith("V:"):
            current = _voice_id(line[2:])
            pieces.setdefault(current, [])
            continue
        position = 0
        for match in _INLINE_VOICE_RE.finditer(line):
            before = line[position : match.start()].strip()
            if before:
                pieces.setdefault(current, []).append(before)
            current = match.group(1)
            pieces.setdefault(current, [])
            position = match.end()
        rest = line[position:].strip()
        if rest:
            pieces.setdefault(current, []).append(rest)
    return header, pieces


def split_voices(abc: str) -> tuple[list[str], dict[str, str]]:
    """Split a tune into its header lines and one body text per voice id.

    Understands ``V:`` definitions in the header (before or, xml2abc-style, right after ``K:``), body
    ``V:`` lines and inline ``[V:x]`` switches. Each voice's text is its pieces (body lines or inline
    segments) joined by newlines. Voices are in order of first appearance in the body.
    """
    header, pieces = _voice_pieces(abc)
    return header, {voice: "\n".join(parts) for voice, parts in pieces.items()}


def interleave_voices(abc: str) -> str:
    """Rewrite a multi-voice tune so that each body line is one bar of every voice.

    Output: the header lines, then one line per bar ``[V:1]<bar>[V:2]<bar>...``. Voice definitions stay
    in the header (they are needed to read the voices back). Raises AbcParseError when the voices have
    different numbers of bars: there is no sensible way to line them up.
    """
    header, voices = split_voices(abc)
    if not voices:
        raise AbcParseError("tune has no body")
    bars = {voice: split_bar_texts(text) for voice, text in voices.items()}
    counts = {voice: len(voice_bars) for voice, voice_bars in bars.items()}
    if len(set(counts.values())) > 1:
        raise AbcParseError(f"voices have different numbers of bars: {counts}")
    lines = list(header)
    for i in range(next(iter(counts.values()))):
        lines.append("".join(f"[V:{voice}]{voice_bars[i]}" for voice, voice_bars in bars.items()))
    return "\n".join(lines) + "\n"


def deinterleave_voices(text: str) -> str:
    """Undo :func:`interleave_voices`: header, then ``V:x`` and one line of that voice's bars per voice.

    Also accepts any layout :func:`split_voices` reads; pieces of a voice are joined by single spaces.
    """
    header, pieces = _voice_pieces(text)
    lines = list(header)
    for voice, parts in pieces.items():
        lines.append(f"V:{voice}")
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def _header_unit_length(header: list[str]) -> Fraction:
    """The ``L:`` of a header (the last one wins), 1/8 when absent as the lexer assumes."""
    unit = Fraction(1, 8)
    for line in header:
        if line.startswith("L:"):
            try:
                unit = Fraction(line[2:].strip())
            except (ValueError, ZeroDivisionError) as exc:
                raise AbcParseError(f"bad unit length {line!r}") from exc
    return unit


def voice_bar_durations(abc: str) -> dict[str, list[Fraction]]:
    """Per voice, the length of each bar as a fraction of a whole note (``3/4`` for a full 3/4 bar).

    Durations come from the lexer (:func:`abcgen.notation.lexer.lex_body`), which applies broken rhythm
    and tuplets; inline ``[L:]`` changes are followed. A leading left bar line (``|:``) does not open an
    empty bar; music after the last bar line counts as a final bar.
    """
    header, voices = split_voices(abc)
    base_unit = _header_unit_length(header)
    meter_text = next((line[2:] for line in header if line.startswith("M:")), "4/4")
    meter = parse_fraction(meter_text)
    compound = is_compound_meter(meter_text)
    # One notion of a bar's length in the project: bars.bar_durations over the lexer's events.
    return {
        voice: bar_durations(lex_body(body, base_unit, meter, compound=compound), base_unit, meter)
        for voice, body in voices.items()
    }


@dataclass(frozen=True, slots=True)
class BarMismatch:
    """A bar (1-based, counted per voice) whose length differs between voices.

    ``durations`` maps voice id to the bar's length in whole notes, ``None`` where the voice has no such
    bar (it has fewer bars than another voice).
    """

    bar: int
    durations: dict[str, Fraction | None]


def check_voices_in_step(abc: str) -> list[BarMismatch]:
    """The bars where the voices of a tune do not last equally long (empty for single-voice tunes)."""
    per_voice = voice_bar_durations(abc)
    if len(per_voice) < 2:
        return []
    most = max(len(durations) for durations in per_voice.values())
    mismatches: list[BarMismatch] = []
    for i in range(most):
        row = {
            voice: (durations[i] if i < len(durations) else None) for voice, durations in per_voice.items()
        }
        if len(set(row.values())) > 1:
            mismatches.append(BarMismatch(bar=i + 1, durations=row))
    if mismatches:
        logger.debug("%d bar(s) out of step", len(mismatches))
    return mismatches
