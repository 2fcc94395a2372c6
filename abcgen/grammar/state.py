"""The decoding state of one tune body: a small mutable record that every rule reads and the rule that
owns a field writes (``Rule.step`` writes the state *after* a unit; the state before stays untouched).

A rule that needs state of its own (an open slur, notes left in a tuplet) adds a field here with its
start value as the default, copies it in ``State.copy`` and reports it in its ``Rule.key``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INF = 10**9  # "cannot be done" in cost tables

# Repeat states (free mode): no repeat open, repeat open, inside a first ending, inside a second ending,
# and RC: none open, a ':|' closed the last one (abc2midi then needs a '|:' or '||' before '|1' or '::').
R0, R1, E1, E2, RC = "none", "open", "first", "second", "closed"

# What ``State.last`` becomes after a unit of each class (indexed by the vocabulary's token classes; None:
# unchanged). A "prefix" (tuplet, broken rhythm, grace, decoration, slur, chord symbol, an open chord) must
# be followed by a note; after a tie, a closing slur or chord the tune stands as after a note.
LAST_AFTER = ("other", "note", "space", "newline", "bar", None, None,
              "prefix", "prefix", "note", "prefix", "prefix", "prefix", "prefix", "note", "prefix", "prefix", "note")

# Prefix levels (``State.prefix``): what may stand before a note, in the order ABC writes it (a unit of a
# level may only follow units of lower levels: ``((3{g}"Am"~A``).
SLUR_LEVEL, TUPLET_LEVEL, GRACE_LEVEL, SYMBOL_LEVEL, DECORATION_LEVEL = 1, 2, 3, 4, 5


@dataclass(slots=True)
class State:
    """Where the tune stands. Engine fields: ``generated`` (tokens fed, the budget spent), ``finished``
    (EOS written), ``closed`` (the final bar line written: only EOS may follow), ``can_end`` (EOS may
    follow now), ``pending`` (bar-line texts forced next, one set of acceptable texts per token) and
    ``last`` (the class of the last unit: start, note, bar, space, newline, prefix). Rule fields:
    ``room``, ``in_pickup``, ``bars_done``, ``scale``/``scaled`` (bar length: the next ``scaled`` notes
    count ``scale`` = (num, den) times their written length -- tuplets, the second note of a broken
    pair), ``repeat`` (repeats); the idiom fields: ``prefix`` (the level of what stands before the next
    note), ``prev`` (the length index of the last note when a tie or broken rhythm may follow it, else
    -1) and ``prev_pitch``, ``run_dur`` (the written length index the rest of a scaled run must
    have: tuplet notes and a broken pair are equal), ``host`` (a grace group waits for its note), ``grace``/``chord`` (0: closed, 1: just opened, 2: with notes; ``chord_dur``
    the length of its notes), ``tie`` (the (pitch, length) the next note must repeat), ``slur``,
    ``need_space``/``need_newline`` (beams), ``tonic_end`` (cadence: the note that filled the bar was
    the tonic)."""

    generated: int = 0
    finished: bool = False
    closed: bool = False
    can_end: bool = False
    pending: tuple[frozenset[str], ...] = ()
    last: str = "start"
    room: int = 0  # grid steps still to fill in the current bar
    in_pickup: bool = False
    bars_done: int = 0  # complete full bars (pickup not counted)
    repeat: str = R0
    scale: tuple[int, int] = (1, 1)
    scaled: int = 0
    prefix: int = 0
    prev: int = -1
    run_dur: int = -1
    prev_pitch: tuple[str, int, str] | None = None
    grace: int = 0
    host: bool = False
    chord: int = 0
    chord_dur: int = -1
    tie: tuple[Any, ...] | None = None
    slur: int = 0  # slurs: 0 none, 1 open, 2 open over one note, 3 over two or more
    need_space: bool = False
    need_newline: int = 0  # beams: 1 a newline may come, 2 it must
    tonic_end: bool = False
    key: Any = field(default=None, repr=False, compare=False)  # the cache key, computed on demand

    def copy(self) -> State:
        """A copy without the cached key (the copy is about to change). Written out for speed: every field
        must be listed here (``tests/test_grammar_state.py`` checks it)."""
        return State(self.generated, self.finished, self.closed, self.can_end, self.pending, self.last, self.room,
                     self.in_pickup, self.bars_done, self.repeat, self.scale, self.scaled, self.prefix, self.prev,
                     self.run_dur, self.prev_pitch, self.grace, self.host, self.chord, self.chord_dur, self.tie, self.slur,
                     self.need_space, self.need_newline, self.tonic_end)


__all__ = ["DECORATION_LEVEL", "E1", "E2", "GRACE_LEVEL", "INF", "LAST_AFTER", "R0", "R1", "RC", "SLUR_LEVEL",
           "SYMBOL_LEVEL", "TUPLET_LEVEL", "State"]
