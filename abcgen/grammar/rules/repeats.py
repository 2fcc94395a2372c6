"""Repeats and endings in free mode (no ``form``, no bar template).

``|:`` opens a repeat (at the start of the body, after the pickup, or at a bar line while none is open),
``:|`` closes it, ``::`` closes and reopens it; ``|1`` starts a first ending inside a repeat (only when
two more bars fit: the first-ending bar and a second-ending bar), ``:|2`` closes it and starts the second
ending, which ``||``, ``|:`` or the final bar line ends. ``||`` only outside an explicit repeat.

A repeat need not be opened: ``:|`` (and ``|1``) with no ``|:`` before repeats from the start of
the tune or from the last section bar line (``||``, ``:|``) -- legal ABC that abc2midi and our checker
read, and how most of O'Neill's and Ryan's tunes write their parts (``... :| ... :|``). Refusing it made a
model trained on such tunes unable to write any repeat (it rarely opens with ``|:``). After a ``:|``,
though, abc2midi counts ``|1`` without a ``|:`` as an error ("found [1 or like before |:"), so
there only another ``:|`` repeats implicitly (``RC``) until a ``|:`` (a ``||`` is not enough for abc2midi
there, though it is after a second ending). ``::`` needs an open ``|:`` (abc2midi: "found :: before |:"
once any repeat came before). A tune with a pickup
opens its repeats with ``|:`` (abc2midi plays an implicit repeat from the start of the tune, pickup bar
included, and warns that the bar is short). At the last bar of
``num_bars`` the bar line is ``|]`` or ``:|``. ``open_repeat``: the body continues a melody prompt that
opened a ``|:`` it did not close, so the tune starts inside it (and must close it).

Parts are made of 4-bar phrases (``PHRASE``): a repeat closes (``:|``, ``::``), a section ends (``||``)
or a new repeat opens mid-tune (``|:``) only after bar 4, 8, 12, ... of the body, and a first ending
``|1`` starts on a phrase's last bar -- not after 3 bars, where a model left alone sometimes closed one.
The last bar closes whatever the count (a bar count that is not a multiple of 4 ends there); a tune of
fewer than 8 bars has no phrase rule.
"""

from __future__ import annotations

from collections.abc import Hashable

from abcgen.grammar.rules.base import OFFER, PASS, REFUSE, Rule
from abcgen.grammar.state import E1, E2, R0, R1, RC, State
from abcgen.grammar.vocabulary import BAR, Unit

PHRASE = 4  # bars: parts end (':|', '::', '||', a new '|:') after whole phrases, first endings on their last bar
_OUTSIDE = (R0, E2, RC)  # no repeat open (a second ending ends at the next section bar line)
_IMPLICIT = (R0, R1)  # a repeat is open, or may be closed without a '|:' (from the start or the last '||')


class RepeatRule(Rule):
    name = "repeats"
    classes = frozenset({BAR})

    def bind(self, g) -> None:  # noqa: ANN001 -- Grammar (import cycle)
        super().bind(g)
        # the states in which a ':|' may close a repeat, and a '|1' may come, without a '|:' before
        self.closing = (R0, R1, RC) if not g.pickup_steps else (R1,)
        self.implicit = _IMPLICIT if not g.pickup_steps else (R1,)
        # phrases of PHRASE bars in a tune of 2 phrases or more (or of any length: num_bars None)
        self.phrase = PHRASE if g.num_bars is None or g.num_bars >= 2 * PHRASE else 1

    def start(self, s: State) -> None:
        s.repeat = R1 if self.g.open_repeat else R0

    def step(self, s: State, ns: State, unit: Unit) -> int:
        kind, rep = unit.kind, s.repeat
        if s.room:  # before the first note: only a '|:' opening the body (not before a pickup)
            if kind == "|:" and s.last == "start" and not s.in_pickup and rep == R0:
                ns.repeat = R1
                return OFFER
            return REFUSE
        if s.in_pickup:
            if kind == "|" or kind == "|:":
                ns.repeat = R1 if kind == "|:" else R0
                return OFFER
            return REFUSE
        num_bars = self.g.num_bars
        left = None if num_bars is None else num_bars - s.bars_done - 1  # full bars after this bar line
        if left == 0:  # the last bar: the final bar line, or the close of the (open or implicit) repeat
            if (kind == "|]" and rep in _OUTSIDE) or (kind == ":|" and rep in self.closing):
                ns.repeat = R0 if kind == "|]" else RC
                return PASS if kind == "|]" else OFFER
            return REFUSE
        return self._inside(ns, kind, rep, left is None or left >= 2, (s.bars_done + 1) % self.phrase)

    def _inside(self, ns: State, kind: str, rep: str, room_for_endings: bool, phrase_bar: int) -> int:
        """A bar line that is not the last one; ``phrase_bar``: the number of the bar it ends, modulo
        ``PHRASE`` (0: a phrase ends here)."""
        if kind == "|]":
            return PASS if rep in _OUTSIDE else REFUSE
        if kind == "|":
            return PASS if rep != E1 or room_for_endings else REFUSE
        if kind in (":|", "::", "||", "|:") and phrase_bar:
            return REFUSE  # a part ends with a phrase
        if kind == "|1" and phrase_bar != self.phrase - 1:
            return REFUSE  # the first ending is a phrase's last bar
        if kind == "||" and rep in _OUTSIDE:
            ns.repeat = RC if rep == RC else R0  # abc2midi still wants a '|:' after a ':|' and a '||'
        elif (kind == "|:" and rep in _OUTSIDE) or (kind == "::" and rep == R1):  # '::' closes and reopens
            ns.repeat = R1
        elif kind == ":|" and rep in self.closing:
            ns.repeat = RC
        elif kind == "|1" and rep in self.implicit and room_for_endings:
            ns.repeat = E1
        elif kind == ":|2" and rep == E1:
            ns.repeat = E2
        else:
            return REFUSE
        return OFFER

    def finish_cost(self, s: State) -> int:
        # Without num_bars (with it, the bar count already holds these bars): an open first ending needs a
        # second-ending bar; an open repeat closes only at a phrase end, so the bars up to it (each one
        # longest-note fill and its bar line) come first.
        if self.g.num_bars is not None:
            return 0
        if s.repeat == E1:
            return self.g.full_cost + 1
        if s.repeat == R1:
            return (-(s.bars_done + 1) % self.phrase) * (self.g.full_cost + 1)
        return 0

    def key(self, s: State) -> Hashable:
        if s.room and s.last != "start":
            return None
        phrase_bar = (s.bars_done + 1) % self.phrase
        if s.room or self.g.num_bars is None:
            return s.repeat, phrase_bar
        left = self.g.num_bars - s.bars_done - 1
        return s.repeat, min(left, 2), phrase_bar
