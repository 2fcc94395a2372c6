"""``png`` piano roll of a MIDI file: time in bars against pitch, one colour per instrument.

    from abcgen.render.pianoroll import render_pianoroll
    render_pianoroll("tune.mid", Path("out/tune-roll.png"), title="Cuckoo's Nest", bars=16)

For MIDI that did not come from ABC (a model that writes multi-track MIDI directly), where there is no
score to engrave. Bars come from the file's own time signatures (4/4 where it has none, as MIDI says); a
time signature change starts a new bar, so a bar cut short by one is drawn a whole bar wide. A pickup is
not special in MIDI: abc2midi's pickup starts at time 0, so its bar lines fall where the file puts them,
not where the tune's bar lines are. Drawn with matplotlib's Agg canvas on a ``Figure`` (no pyplot: no
global figure registry or backend switch, so it is safe beside other plotting in the same process).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from abcgen._extras import require
from abcgen.atomic import tmp_sibling
from abcgen.errors import ConfigError, ConversionError

# The image, in pixels: WIDTH_PX x HEIGHT_PX whatever the length (``bars=`` zooms into the start).
DPI = 100
WIDTH_PX, HEIGHT_PX = 1400, 600
NOTE_ALPHA = 0.6  # overlapping tracks (a chorale's crossing voices, a bass under the chords) stay visible
NOTE_HEIGHT = 0.8  # of a semitone, so that neighbouring pitches do not merge
MAX_BAR_LABELS = 32  # more bars than this: label every 2nd, 4th, 8th, ... bar
# General MIDI programs (0-based) that abcgen writes: melody, chords, bass, a chorale's four voices.
GM_NAMES: dict[int, str] = {
    0: "acoustic grand piano",
    32: "acoustic bass",
    40: "violin",
    41: "viola",
    42: "cello",
    43: "contrabass",
}
DRUMS = "drums"  # a drum track (MIDI channel 10) is drawn in its own colour whatever its program
_PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NATURALS = frozenset({0, 2, 4, 5, 7, 9, 11})
# tab10 without its grey (index 7), which would look like a bar line.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def instrument_name(program: int, *, drum: bool = False) -> str:
    """The legend's name of a General MIDI program (0-based): :data:`GM_NAMES`, else ``"program N"``."""
    return DRUMS if drum else GM_NAMES.get(program, f"program {program}")


def pitch_name(pitch: int) -> str:
    """A MIDI pitch's name with its octave, middle C (60) being ``C4``."""
    return f"{_PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}"


def read_midi(midi: bytes | str | os.PathLike[str], ttype: str = "tick") -> tuple[Any, str]:
    """The symusic ``Score`` of a MIDI file (its bytes or its path) and how to name it in an error.

    A path that is not a file is a ConfigError; data symusic cannot read is a ConversionError."""
    from symusic import Score

    if isinstance(midi, bytes | bytearray | memoryview):
        name, data = "the MIDI data", bytes(midi)
    elif isinstance(midi, str | os.PathLike):
        path = Path(midi)
        name = repr(str(path))
        if not path.is_file():
            raise ConfigError(f"MIDI file {name} does not exist (or is not a file): give the path of a .mid file")
        try:
            data = path.read_bytes()  # not Score(path): it reads a file named .abc as ABC, not as MIDI
        except OSError as exc:
            raise ConfigError(f"cannot read MIDI file {name} ({exc.strerror or exc}): give a readable file") from exc
    else:
        raise ConfigError(f"midi {type(midi).__name__}: give a MIDI file's bytes or its path")
    try:
        return Score.from_midi(data, ttype=ttype), name
    except Exception as exc:  # symusic raises RuntimeError/ValueError with C++ messages
        reason = " ".join(str(exc).split())  # one line
        raise ConversionError(f"cannot read {name} as MIDI ({reason}): give a Standard MIDI File") from exc


def _bar_map(score: Any, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints (ticks, bars) for ``np.interp``: ticks -> bars from time 0, linear between time
    signature changes; ``end`` (ticks) is where the map must reach."""
    quarter = score.ticks_per_quarter
    changes: dict[int, tuple[int, int]] = {0: (4, 4)}  # MIDI's default until the first time signature
    for ts in score.time_signatures:
        if ts.numerator > 0 and ts.denominator > 0:
            changes[int(ts.time)] = (ts.numerator, ts.denominator)  # a later one at the same time wins
    ticks, bars = [0.0], [0.0]
    starts = sorted(t for t in changes if t < end) or [0]
    for i, start in enumerate(starts):
        numerator, denominator = changes[start]
        bar_ticks = quarter * 4 * numerator / denominator
        stop = starts[i + 1] if i + 1 < len(starts) else max(end, start + bar_ticks)
        if start > 0:  # a change starts a new bar: a bar it cuts short counts whole
            ticks.append(float(start))
            bars.append(float(math.ceil(bars[-1] - 1e-9)))
        ticks.append(float(stop))
        bars.append(bars[-1] + (stop - start) / bar_ticks)
    return np.asarray(ticks), np.asarray(bars)


def _pitch_ticks(low: int, high: int) -> list[int]:
    """The pitches to name on the y axis: every natural note over two octaves or less, else C and G."""
    keep = _NATURALS if high - low <= 24 else frozenset({0, 7})
    return [p for p in range(low, high + 1) if p % 12 in keep]


def render_pianoroll(
    midi: bytes | str | os.PathLike[str],
    out: Path,
    *,
    title: str = "",
    bars: int | None = None,
) -> Path:
    """Draw ``midi`` (a MIDI file's bytes or path) as a piano roll into the PNG ``out``; return ``out``.

    The x axis is in bars (numbered from 1, with a line at each bar), the y axis in pitch (note names);
    each General MIDI program has its own colour, named in the legend (:func:`instrument_name`). ``bars``
    draws only the first that many bars (default: all). The image is WIDTH_PX x HEIGHT_PX pixels, written
    to a temporary sibling and renamed over ``out`` (its folder is created).

    ConfigError for a bad ``out``, ``bars`` or a missing file; ConversionError for MIDI that cannot be read
    or holds no notes (in the first ``bars`` bars).
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"piano roll output {str(out)!r} does not end in .png: give a .png path")
    if out.is_dir():
        raise ConfigError(f"piano roll output {str(out)!r} is a folder: give a .png file path")
    if bars is not None and (isinstance(bars, bool) or not isinstance(bars, int) or bars < 1):
        raise ConfigError(f"bars {bars!r}: give a whole number of bars above 0, or None for all")
    score, name = read_midi(midi)
    tracks = [t for t in score.tracks if len(t.notes)]
    if not tracks:
        raise ConversionError(f"{name} holds no notes: nothing to draw")
    end = max(int(score.end()), 1)
    map_ticks, map_bars = _bar_map(score, end)

    # Notes in bars, grouped by instrument (tracks of one program share a colour and a legend entry).
    groups: dict[tuple[bool, int], list[np.ndarray]] = {}
    for track in tracks:
        notes = track.notes.numpy()
        start = np.interp(notes["time"].astype(np.float64), map_ticks, map_bars)
        stop = np.interp((notes["time"] + notes["duration"]).astype(np.float64), map_ticks, map_bars)
        rows = np.stack([start, stop - start, notes["pitch"].astype(np.float64)], axis=1)
        groups.setdefault((bool(track.is_drum), int(track.program)), []).append(rows)
    total = float(np.interp(float(end), map_ticks, map_bars))
    shown = float(bars) if bars is not None else max(1.0, math.ceil(total - 1e-9))
    drawn: dict[tuple[bool, int], np.ndarray] = {}
    for key, parts in groups.items():
        rows = np.concatenate(parts)
        rows = rows[rows[:, 0] < shown]  # notes starting in the bars shown (one running past the end is cut)
        if len(rows):
            drawn[key] = rows
    if not drawn:
        raise ConversionError(f"{name} has no notes in its first {bars} bars (it lasts {total:.1f} bars): "
                              "give a larger bars, or None")
    pitches = np.concatenate([rows[:, 2] for rows in drawn.values()])
    low, high = int(pitches.min()), int(pitches.max())

    require("matplotlib", extra="render")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, set on the figure: it draws and saves without pyplot
    ax = fig.add_subplot()
    for i, ((drum, program), rows) in enumerate(sorted(drawn.items())):
        colour = _COLOURS[i % len(_COLOURS)]
        ax.barh(rows[:, 2], rows[:, 1], left=rows[:, 0], height=NOTE_HEIGHT, align="center", color=colour,
                alpha=NOTE_ALPHA, edgecolor="white", linewidth=0.5, label=instrument_name(program, drum=drum))
    bar_lines = np.arange(0, math.ceil(shown) + 1)
    # Over the notes, so that notes held across a bar line (a chord, a pedal bass) show where bars begin.
    ax.vlines(bar_lines, low - 1, high + 1, colors="#6a6a6a", linewidth=0.8 if shown <= 64 else 0.4, alpha=0.7,
              zorder=3)
    step = 1
    while shown / step > MAX_BAR_LABELS:
        step *= 2
    labelled = bar_lines[:-1][::step]
    ax.set_xticks(labelled, [str(int(b) + 1) for b in labelled])  # bar 1 starts at 0
    ax.set_xlim(0, shown)
    ax.set_xlabel("bar")
    names = _pitch_ticks(low, high)
    ax.set_yticks(names, [pitch_name(p) for p in names], fontsize=8)
    ax.set_ylim(low - 1, high + 1)
    ax.set_ylabel("pitch")
    ax.grid(axis="y", color="#e4e4e4", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, title="instrument")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(out)
    try:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
        os.replace(tmp, out)
    except OSError as exc:
        raise ConfigError(f"cannot write the piano roll {str(out)!r} ({exc.strerror or exc}): choose another "
                          "output path") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out
