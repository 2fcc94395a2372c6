"""Everything wrong with a normalised tune, in one place: the corpus builder, ``abcgen check`` and the
checks of generated tunes all ask this function, so "valid" means the same thing everywhere. The strict
abc2midi checker (``abc2midi_check``, from ``abcgen.notation.abc2midi``) is importable from here too."""

from __future__ import annotations

from dataclasses import dataclass, field

from abcgen.notation.abc2midi import abc2midi_check  # noqa: F401  -- the strict checker, a second opinion
from abcgen.notation.bars import BarReport, check_bars
from abcgen.notation.structure import REPEAT_UNCLOSED, is_truncated, repeat_problems
from abcgen.notation.tune import Tune


@dataclass
class TuneCheck:
    """The bar report and the structural problems of one tune. ``problems`` lists every problem as text,
    structural ones first (no music, truncation, repeats), then each bad bar."""

    report: BarReport
    no_music: bool = False
    truncated: bool = False
    repeats: list[str] = field(default_factory=list)

    @property
    def bar_problems(self) -> list[str]:
        return [str(p) for p in self.report.problems]

    @property
    def open_repeat(self) -> bool:
        """A ``|:`` left open at the end of the body (a melody prompt that stops inside a repeat)."""
        return any(getattr(p, "kind", None) == REPEAT_UNCLOSED for p in self.repeats)

    @property
    def repeats_except_open(self) -> list[str]:
        """The repeat problems other than a repeat left open at the end."""
        return [p for p in self.repeats if getattr(p, "kind", None) != REPEAT_UNCLOSED]

    @property
    def structural_problems(self) -> list[str]:
        """What breaks the tune as a whole: no notes, cut off inside a bar, unbalanced repeats."""
        out = []
        if self.no_music:
            out.append("no music: the body has no notes")
        elif self.truncated:
            out.append("truncated: the body stops inside a bar without a final bar line")
        if self.repeats:
            out.append("unbalanced repeats: " + "; ".join(self.repeats[:3]))
        return out

    @property
    def problems(self) -> list[str]:
        return self.structural_problems + self.bar_problems

    @property
    def ok(self) -> bool:
        return not self.problems


def check_tune(tune: Tune) -> TuneCheck:
    """Bars against the meter (with real-music tolerance), repeats and endings, truncation."""
    events = tune.events()
    report = check_bars(events, tune.unit_length, tune.meter)
    no_music = not any(b.has_notes for b in report.bars)
    return TuneCheck(report=report, no_music=no_music,
                     truncated=not no_music and is_truncated(events, report.bars),
                     repeats=repeat_problems(events))
