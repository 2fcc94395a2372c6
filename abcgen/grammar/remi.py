"""Constrained decoding of REMI: every sequence decodes to well-formed MIDI with whole bars of the meter.

The grammar of a REMI body (miditok's REMI with programs in one stream, ``abcgen.notation.remi``)::

    body  := bar{n} EOS
    bar   := Bar_None TimeSig_<meter> event*
    event := Position_q note+ | Position_q Tempo_t note*   q strictly increasing in a bar, q < the bar's positions
    note  := Program_p Pitch_k Velocity_v Duration_d

What ``RemiConstraint`` enforces on top of the order:

* the **meter**: every bar's ``TimeSig_`` is the requested one, so every bar is exactly the meter's length
  (``numerator x 24`` positions, 24 a beat of the denominator);
* the **number of bars**: ``Bar_None`` is refused after bar ``n``, EOS before it;
* **every note ends by the tune's end**: a ``Duration_`` longer than what is left of bar ``n`` is refused;
* **requested programs only**, each **pitch inside its instrument's range** (``PROGRAM_RANGES``);
* **one line per melodic instrument**: a program outside ``POLYPHONIC_PROGRAMS`` (a violin, a bass, a
  chorale voice) starts a note only when its previous note has ended, as the corpus's voices do;
* one ``Tempo_`` at the tune's first position (the requested one when asked for), none elsewhere; that
  position may hold no note (miditok writes the tempo at position 0 when the first note is a pickup);
* at most ``MAX_NOTES_AT_ONCE`` notes at one position (a random walk must end);
* **accompaniment**: ``forced`` notes (a melody track, ``ForcedNote``) are written at their bar and position
  with their pitch, velocity and duration; the model writes the other programs around them and can
  neither skip a melody note nor add one to the melody's program;
* a **token budget**: optional notes stop when what is left of ``max_new_tokens`` is only enough to reach
  the end (``finish_cost``), so the tune always ends with EOS inside the budget.

The constraint has the interface ``AbcLogitsProcessor`` drives (``state.generated``, ``advance``,
``device_mask``, ``device_bonus``, ``copy``), so the same processor applies it during ``generate``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from abcgen.grammar.errors import BudgetTooSmallError
from abcgen.notation.remi import POLYPHONIC_PROGRAMS, POSITIONS_PER_BEAT, PROGRAM_RANGES, REMI_CONFIG
from abcgen.tokenization.remi import duration_beats

MAX_NOTES_AT_ONCE = 12  # notes that may start at one position, all tracks together
NOTE_TOKENS = 4  # Program, Pitch, Velocity, Duration
_PIANO_RANGE = (int(REMI_CONFIG["pitch_range"][0]), int(REMI_CONFIG["pitch_range"][1]) - 1)  # type: ignore[index]
_METER_ALIASES = {"C": "4/4", "C|": "2/2"}


def bar_positions(meter: str) -> int:
    """Positions in one bar of ``meter``: ``"6/8"`` -> 144 (6 beats of an eighth, 24 a beat)."""
    meter = _METER_ALIASES.get(meter.strip(), meter.strip())
    numerator, _, denominator = meter.partition("/")
    if not (numerator.isdigit() and denominator.isdigit() and int(numerator) > 0):
        raise ValueError(f"meter {meter!r} is not a simple fraction like 6/8")
    return int(numerator) * POSITIONS_PER_BEAT


def time_signature_token(meter: str) -> str:
    """``"C"`` -> ``TimeSig_4/4``; ``"6/8"`` -> ``TimeSig_6/8``."""
    return f"TimeSig_{_METER_ALIASES.get(meter.strip(), meter.strip())}"


def program_range(program: int) -> tuple[int, int]:
    """(lowest, highest) MIDI pitch a program may play here (``PROGRAM_RANGES``, else the piano's)."""
    return PROGRAM_RANGES.get(program, _PIANO_RANGE)


def nearest_tempo_token(tokens: Sequence[str], bpm: float) -> str:
    """The ``Tempo_`` token closest to ``bpm`` quarter notes a minute."""
    tempos = [t for t in tokens if t.startswith("Tempo_")]
    return min(tempos, key=lambda t: abs(float(t[6:]) - bpm))


@dataclass(frozen=True)
class ForcedNote:
    """A note generation must write as it is (a melody to accompany): 1-based bar, position in the bar (24
    a beat), pitch, and the velocity and duration as REMI tokens' values (``"103"``, ``"1.0.24"``)."""

    bar: int
    position: int
    program: int
    pitch: int
    velocity: str
    duration: str


@dataclass
class RemiState:
    phase: str = "start"  # start, bar, open, position, tempo, program, pitch, velocity, note, done
    bar: int = 0  # bars begun (1-based index of the current bar)
    position: int = -1  # the current position in the bar; -1 before the bar's first Position_
    program: int = -1  # the program of the note being written
    tempo_written: bool = False
    notes: int = 0  # notes written
    at_position: int = 0  # notes started at the current position
    forced_next: int = 0  # index of the next forced note to write
    forcing: bool = False  # the note being written is the next forced note
    sounding_until: dict[int, int] = field(default_factory=dict)  # program -> where its last note ends
    # (positions from the tune's start), for the one-line instruments
    generated: int = 0  # tokens advanced (read by AbcLogitsProcessor)


@dataclass
class RemiConstraint:
    """What may come next in a REMI body; see the module docstring.

    ``token_ids``: ``{REMI token: id}`` of the tokenizer (``abcgen.tokenization.remi.remi_token_ids``);
    ``eos_id``/``pad_id``: the tokenizer's; ``meter``: ``"6/8"``; ``num_bars``: bars of the whole body;
    ``programs``: the tracks that may play; ``tempo``: a ``Tempo_`` value to force, or None for any;
    ``forced``: notes to write as given (sorted by bar and position); ``max_new_tokens``: the budget.
    ``BudgetTooSmallError`` when the budget cannot hold the bars and the forced notes."""

    token_ids: Mapping[str, int]
    eos_id: int
    pad_id: int | None
    meter: str
    num_bars: int
    programs: Sequence[int]
    max_new_tokens: int
    tempo: str | None = None
    forced: Sequence[ForcedNote] = ()
    state: RemiState = field(default_factory=RemiState)

    def __post_init__(self) -> None:
        self.positions = bar_positions(self.meter)
        self.timesig = time_signature_token(self.meter)
        if self.timesig not in self.token_ids:
            raise ValueError(f"meter {self.meter!r} has no REMI time signature token ({self.timesig}); REMI "
                             f"knows {', '.join(t[8:] for t in self.token_ids if t.startswith('TimeSig_'))}")
        if self.num_bars < 1:
            raise ValueError(f"num_bars={self.num_bars}: a tune needs at least one bar")
        self.programs = sorted(set(int(p) for p in self.programs))
        if not self.programs:
            raise ValueError("programs is empty: name at least one instrument")
        self.forced = sorted(self.forced, key=lambda n: (n.bar, n.position))
        self.forced_programs = {n.program for n in self.forced}
        self._free_programs = [p for p in self.programs if p not in self.forced_programs]
        for note in self.forced:
            if note.program not in self.programs or not 1 <= note.bar <= self.num_bars or \
                    not 0 <= note.position < self.positions:
                raise ValueError(f"forced note {note} is outside the tune (programs {self.programs}, "
                                 f"{self.num_bars} bars of {self.positions} positions)")
            end = (note.bar - 1) * self.positions + note.position + duration_beats(note.duration) * POSITIONS_PER_BEAT
            if end > self.num_bars * self.positions:
                raise ValueError(f"forced note {note} ends after the last of the {self.num_bars} bars; cut the "
                                 "melody with abcgen.generation.midi_pipeline.first_bars")
        if self.tempo is not None and f"Tempo_{self.tempo}" not in self.token_ids:
            raise ValueError(f"tempo {self.tempo!r} is not a REMI Tempo_ value")
        self._id_to_token = {i: t for t, i in self.token_ids.items()}
        self._durations = [(t, i, duration_beats(t[9:]) * POSITIONS_PER_BEAT)
                           for t, i in self.token_ids.items() if t.startswith("Duration_")]
        self._velocities = [i for t, i in self.token_ids.items() if t.startswith("Velocity_")]
        self._tempos = [i for t, i in self.token_ids.items() if t.startswith("Tempo_")]
        cost = self.finish_cost()
        if cost > self.max_new_tokens:
            raise BudgetTooSmallError(f"max_new_tokens={self.max_new_tokens} cannot hold {self.num_bars} bars"
                                      f"{' and the ' + str(len(self.forced)) + ' given notes' if self.forced else ''}: "
                                      f"at least {cost} tokens are needed", budget=self.max_new_tokens, needed=cost)

    # --- the state machine ------------------------------------------------------------------------------

    def _pending_here(self, s: RemiState) -> bool:
        """A forced note is due at the current bar and position."""
        return s.forced_next < len(self.forced) and (self.forced[s.forced_next].bar, self.forced[s.forced_next].position) \
            == (s.bar, s.position)

    def _next_forced_in_bar(self, s: RemiState) -> int | None:
        """The position of the next forced note when it is in the current bar."""
        if s.forced_next < len(self.forced) and self.forced[s.forced_next].bar == s.bar:
            return self.forced[s.forced_next].position
        return None

    def _remaining(self, s: RemiState) -> int:
        """Positions from the current position to the end of the tune."""
        return (self.num_bars - s.bar) * self.positions + (self.positions - s.position)

    def finish_cost(self, s: RemiState | None = None) -> int:
        """The fewest tokens that end the tune from state ``s``, EOS included (a forced note not yet at its
        position is counted with its Position, 5 tokens, even where it shares one with another)."""
        s = s or self.state
        if s.phase == "done":
            return 0
        pending = self._pending_here(s) and s.phase in ("position", "tempo", "note")
        if s.phase == "position":  # what this Position still needs: its Tempo, or its note (unless forced)
            cost = 1 if not s.tempo_written else (0 if pending else NOTE_TOKENS)
        else:
            cost = {"start": 2, "bar": 1, "program": 3, "pitch": 2, "velocity": 1}.get(s.phase, 0)
        bars_left = self.num_bars - max(s.bar, 1) if s.phase != "start" else self.num_bars - 1
        cost += 2 * bars_left + 1
        if not s.tempo_written and s.phase != "position":  # the first Position still needs its Tempo
            cost += 1
        forced_left = len(self.forced) - s.forced_next - (1 if s.forcing else 0)
        cost += forced_left * (NOTE_TOKENS + 1) - (1 if pending else 0)  # a note due here needs no Position
        if s.notes == 0 and not self.forced and s.phase in ("start", "bar", "open", "tempo", "position") and \
                not (s.phase == "position" and s.tempo_written):
            cost += NOTE_TOKENS + (0 if s.phase in ("tempo", "position") else 1)  # EOS needs a note in the tune
        return cost

    def allowed_tokens(self) -> list[int]:
        """Ids that may come next."""
        s, ids = self.state, self.token_ids
        if s.phase == "done":
            return [self.eos_id] + ([self.pad_id] if self.pad_id is not None else [])
        if s.phase == "start":
            return [ids["Bar_None"]]
        if s.phase == "bar":
            return [ids[self.timesig]]
        if s.phase == "position" and not s.tempo_written:
            return [ids[f"Tempo_{self.tempo}"]] if self.tempo is not None else list(self._tempos)
        if s.phase == "position":  # its note: the forced one due here, or a free one (the Position was for it)
            return self._programs(s)
        if s.phase == "program":
            if s.forcing:
                return [ids[f"Pitch_{self.forced[s.forced_next].pitch}"]]
            low, high = program_range(s.program)
            return [ids[f"Pitch_{k}"] for k in range(low, high + 1) if f"Pitch_{k}" in ids]
        if s.phase == "pitch":
            return [ids[f"Velocity_{self.forced[s.forced_next].velocity}"]] if s.forcing else list(self._velocities)
        if s.phase == "velocity":
            if s.forcing:
                return [ids[f"Duration_{self.forced[s.forced_next].duration}"]]
            left = self._remaining(s)
            return [i for _, i, length in self._durations if length <= left]
        # "open" (after TimeSig), "tempo" (the tempo may sit on a position without a note, as miditok writes
        # it when a piece starts with a pickup) or "note" (after a Duration): the next event, bar, or the end
        allowed: list[int] = []
        if s.phase in ("note", "tempo"):
            allowed += self._programs(s)
        if not self._pending_here(s):
            limit = self._next_forced_in_bar(s)
            last = self.positions - 1 if limit is None else limit
            # A Position must be followed by a note: a free one (if the budget allows; every free position
            # costs the same) or the forced one due there.
            start = (s.bar - 1) * self.positions  # a free note needs a program whose last note has ended
            earliest = min((self._free_at(s, p) for p in self._free_programs), default=None)
            if earliest is not None:
                free = [ids[f"Position_{q}"] for q in range(max(s.position + 1, earliest - start), last + 1)
                        if q != limit]
                if free and self._fits(free[0]):
                    allowed += free
            if limit is not None and limit > s.position:
                allowed.append(ids[f"Position_{limit}"])
            if limit is None:
                if s.bar < self.num_bars:
                    if self._fits(ids["Bar_None"]):
                        allowed.append(ids["Bar_None"])
                elif s.notes > 0 and s.forced_next == len(self.forced):
                    allowed.append(self.eos_id)
        return allowed

    def _fits(self, token_id: int) -> bool:
        """Whether the tune can still end within ``max_new_tokens`` after ``token_id``."""
        twin = copy.copy(self.state)
        twin.sounding_until = dict(self.state.sounding_until)
        self._apply(twin, token_id)
        return twin.generated + self.finish_cost(twin) <= self.max_new_tokens

    def _programs(self, s: RemiState) -> list[int]:
        """Programs of a note at this position: the forced program when its note is due, the others while
        the budget and ``MAX_NOTES_AT_ONCE`` allow and, for a one-line instrument, once its previous note has
        ended (a Position is only offered where one of them can play)."""
        out = []
        if self._pending_here(s):
            out.append(self.token_ids[f"Program_{self.forced[s.forced_next].program}"])
        here = (s.bar - 1) * self.positions + s.position
        free = [self.token_ids[f"Program_{p}"] for p in self._free_programs if self._free_at(s, p) <= here]
        if free and s.at_position < MAX_NOTES_AT_ONCE and self._fits(free[0]):  # every free program costs the same
            out += free
        return sorted(set(out))

    def _free_at(self, s: RemiState, program: int) -> int:
        """The first position (from the tune's start) where ``program`` may start a note."""
        return 0 if program in POLYPHONIC_PROGRAMS else s.sounding_until.get(program, 0)

    def advance(self, token_id: int) -> None:
        """Take one generated token; ``ValueError`` for a token the grammar did not allow."""
        s = self.state
        if s.phase == "done" and token_id in (self.eos_id, self.pad_id):
            return
        if token_id not in self.allowed_tokens():
            token = self._id_to_token.get(token_id, token_id)
            raise ValueError(f"token {token!r} is not allowed after phase {s.phase!r} (bar {s.bar}, position {s.position})")
        self._apply(s, token_id)

    def _apply(self, s: RemiState, token_id: int) -> None:
        """The state after ``token_id`` (no check: ``advance`` checks, ``_fits`` tries)."""
        s.generated += 1
        if token_id == self.eos_id:
            s.phase = "done"
            return
        token = self._id_to_token[token_id]
        kind, _, value = token.partition("_")
        if kind == "Bar":
            s.phase, s.bar, s.position, s.at_position = "bar", s.bar + 1, -1, 0
        elif kind == "TimeSig":
            s.phase = "open"
        elif kind == "Position":
            s.phase, s.position, s.at_position = "position", int(value), 0
        elif kind == "Tempo":
            s.phase, s.tempo_written = "tempo", True
        elif kind == "Program":
            s.phase, s.program = "program", int(value)
            s.forcing = int(value) in self.forced_programs
            s.at_position += 1
        elif kind == "Pitch":
            s.phase = "pitch"
        elif kind == "Velocity":
            s.phase = "velocity"
        elif kind == "Duration":
            s.phase, s.notes = "note", s.notes + 1
            end = (s.bar - 1) * self.positions + s.position + int(duration_beats(value) * POSITIONS_PER_BEAT)
            s.sounding_until[s.program] = max(end, s.sounding_until.get(s.program, 0))
            if s.forcing:
                s.forced_next += 1
                s.forcing = False

    def advance_text(self, text: str) -> None:
        """Advance through REMI text (a prompt's body), token by token; the prompt's tokens do not count
        against ``max_new_tokens``. ``ValueError`` naming the first token the grammar refuses."""
        generated = self.state.generated
        for token in text.split():
            if token not in self.token_ids:
                raise ValueError(f"{token!r} is not a REMI token")
            self.advance(self.token_ids[token])
        self.state.generated = generated

    # --- what AbcLogitsProcessor calls -----------------------------------------------------------------

    def device_mask(self, device: torch.device, width: int, *, blocked: bool = False) -> torch.Tensor:
        mask = torch.zeros(width, dtype=torch.bool)
        allowed = [i for i in self.allowed_tokens() if i < width]
        mask[allowed] = True
        return (~mask if blocked else mask).to(device)

    def device_bonus(self, device: torch.device, width: int) -> None:
        return None  # no weighted rules for REMI

    def copy(self) -> RemiConstraint:
        twin = copy.copy(self)
        twin.state = copy.copy(self.state)
        twin.state.sounding_until = dict(self.state.sounding_until)
        return twin

    @property
    def done(self) -> bool:
        return self.state.phase == "done"


__all__ = ["MAX_NOTES_AT_ONCE", "ForcedNote", "RemiConstraint", "RemiState", "bar_positions", "nearest_tempo_token",
           "program_range", "time_signature_token"]
