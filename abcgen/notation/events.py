"""The musical events a tune body is lexed into.

The lexer is *lossless*: concatenating ``event.text`` over all events of a body gives the body back
exactly. Everything downstream (bar check, transposition, tokenizer units, fingerprints) works on these
events, so there is one notion of "the duration of an event" in the project.

Durations are exact ``Fraction`` values in units of the tune's ``L:`` (unit note length) at the point the
event occurs: ``A2`` under ``L:1/8`` has duration 2 (a quarter note). Broken rhythm (``>``/``<``) and
tuplets are already applied to ``duration``; ``written_duration`` is the length as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

# Event kinds. Kept as plain strings so they print and serialise well.
NOTE = "note"  # a single note: ^c'3/2
REST = "rest"  # z, x (invisible rest), Z/X (multi-bar rest: duration = bars * meter length)
CHORD = "chord"  # [CEG]2 -- ``notes`` holds the member notes, ``duration`` the chord's length
BAR = "bar"  # a bar line: | || |] [| |: :| :: :|: and endings glued to it (|1 :|2)
ENDING = "ending"  # a first/second ending written apart from a bar line: [1  [2  [1,2
CHORD_SYMBOL = "chord_symbol"  # "Am7" (a quoted guitar chord)
ANNOTATION = "annotation"  # "^text" "_text" "<text" ">text" "@text"
DECORATION = "decoration"  # ~ . H L M O P S T u v J R  !trill!  +trill+
GRACE = "grace"  # {gag} -- grace notes take no time in the bar
TUPLET = "tuplet"  # (3  (3:2:3  -- ``tuplet`` holds (p, q, r)
BROKEN = "broken"  # > < >> << (the durations of the neighbours are already adjusted)
TIE = "tie"  # -
SLUR_OPEN = "slur_open"  # (
SLUR_CLOSE = "slur_close"  # )
FIELD = "field"  # inline field [K:D] [M:6/8] [L:1/16] [P:A] ...; ``field`` = (letter, value)
SPACE = "space"  # spaces and tabs (they break beams, so they are kept)
NEWLINE = "newline"  # a line break in the body
CONTINUATION = "continuation"  # a trailing backslash joining two lines
OVERLAY = "overlay"  # & (voice overlay inside a bar)
VOICE = "voice"  # a body line "V:1" switching voice; ``field`` = ("V", "1")
OTHER = "other"  # y (spacer), stray characters kept for losslessness

TIMED_KINDS = frozenset({NOTE, REST, CHORD})


@dataclass(frozen=True, slots=True)
class Pitch:
    """A written pitch: letter ``C``..``B`` (upper case), accidental as written and octave.

    ``octave`` is 0 for the octave of ``C``..``B`` (middle C is ``C``), +1 for ``c``..``b``, +2 for
    ``c'``, -1 for ``C,``. ``accidental`` is one of ``""``, ``"^"``, ``"^^"``, ``"_"``, ``"__"``, ``"="``.
    """

    letter: str
    accidental: str
    octave: int


@dataclass(slots=True)
class Event:
    """One lexed piece of a body. ``start`` is the 0-based offset in the body; ``line``/``column`` are
    1-based and count from the start of the body text.

    Not frozen: a frozen dataclass costs 2.5x more to create, and creating events is most of the lexer's
    time. Only the lexer changes an event (broken rhythm and ties reach back to the previous note);
    everything downstream treats events as read-only."""

    kind: str
    text: str
    start: int
    line: int
    column: int
    duration: Fraction | None = None  # timed kinds only, in L: units, broken rhythm/tuplets applied
    written_duration: Fraction | None = None  # as written, before broken rhythm/tuplets
    pitch: Pitch | None = None  # NOTE only
    notes: tuple[Pitch, ...] = field(default=())  # CHORD only
    tuplet: tuple[int, int, int] | None = None  # TUPLET only: (p, q, r)
    field: tuple[str, str] | None = None  # FIELD / VOICE only: (letter, value)
    tied: bool = False  # NOTE/CHORD followed by a tie '-'

    @property
    def is_timed(self) -> bool:
        return self.kind in TIMED_KINDS
