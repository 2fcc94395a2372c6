"""Cross-check abcgen's ABC layer against independent implementations over the embedded ABC corpus.

Four comparisons, each against a tool that does not share code with abcgen:

* **bar durations** -- the lexer's bar lengths against ``abctoolkit.duration.calculate_bartext_duration``
  (fed one bar's text at a time: the normalised body cut at the lexer's BAR events, without bar lines,
  endings, line breaks and one-letter decorations such as ``~``/``H``, which abctoolkit does not know);
* **notes** -- (MIDI pitches, quarter length) of every note and chord against music21's ABC parser
  (first part, grace notes ignored, ties kept separate);
* **transposition** -- our transposed ABC against music21's ``Score.transpose``;
* **bar check** -- ``check_bars`` against abc2midi's "Bar N has k time units" warnings.

Every disagreement is put in an explanation category (see the ``CAT_*`` constants), so "agreement" is
never a bare number. ``tests/test_crosscheck.py`` runs these functions on a small fixed sample; this
script runs them over the whole corpus (2 processes) and writes ``benchmarks/results/crosscheck.json``::

    OMP_NUM_THREADS=1 python benchmarks/crosscheck.py [--sample N] [--workers 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import multiprocessing
import os
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from abcgen.corpus.sources import read_text, resolve_sources
from abcgen.errors import AbcgenError
from abcgen.notation import events as ev
from abcgen.notation.bars import Bar, check_bars, split_bars
from abcgen.notation.events import Event
from abcgen.notation.keys import parse_key
from abcgen.notation.lexer import unit_lengths
from abcgen.notation.pitches import AccidentalState, sounding_pitches
from abcgen.notation.remi import abc2midi_check
from abcgen.notation.transpose import transpose_tune
from abcgen.notation.tune import Tune, normalise_tune, split_tunes

COLLECTIONS = ("oneills1850", "ryansMammoth", "essenFolksong", "airdsAirs", "miscFolk")
SHIFTS = (-5, -2, 3, 7)
RESULTS = Path(__file__).resolve().parent / "results"

# --- explanation categories -------------------------------------------------------------------------
# (a) lexer vs abctoolkit
CAT_BROKEN_UNEQUAL = "broken rhythm between notes of unequal length (abctoolkit keeps the pair's sum; ABC 2.1 dots the first, halves the second)"
CAT_MULTI_REST = "multi-bar rest (abctoolkit counts Z4 as 4 units, not 4 bars)"
CAT_TUPLET = "tuplet (abctoolkit reads only (3 and (p:q:r, and rounds)"
CAT_OTHER = "other"
# (b) notes vs music21
CAT_M21_NO_CARRY = "music21 does not carry an accidental to later notes of the bar"
CAT_M21_BROKEN = "music21 drops > / < when a tie, '.' or chord symbol stands between the sign and the note"
CAT_M21_SPLIT = "music21 splits a note across its own measure boundary into tied notes"
# "unaligned": notes one side has and the other not, found by re-synchronising; on the inspected tunes
# every case is music21 dropping the note after an ``H`` fermata ("G2 HA2 d2" -> G d), a music21 bug.
# (d) bar check vs abc2midi
CAT_REPEAT_SPLIT = "bar split across a repeat/section/ending (we tolerate; abc2midi flags 'in repeat')"
CAT_LAST_BAR = "short final bar completing the pickup (we tolerate, abc2midi flags)"
CAT_FIRST_BAR = "short first bar (pickup)"
CAT_SPLIT_BAR = "bar split in two by a bar line (we tolerate, abc2midi flags)"
CAT_FERMATA = "abc2midi lengthens notes under a fermata (H, !fermata!)"
CAT_ABC2MIDI_ERROR = "abc2midi error recovery (it skipped or misread music it reported as an Error)"
CAT_BROKEN = "broken rhythm between unequal notes (abc2midi: 'Cannot apply broken rhythm')"
CAT_SAME_LENGTH = "same bar length, other tolerance rule"
CAT_LENGTH_OTHER = "bar length differs (other)"
CAT_UNMAPPED = "warning position not mapped to a bar (multi-voice or header line)"
CAT_OURS_LONG = "we flag an over-long bar abc2midi accepts"
CAT_OURS_SHORT = "we flag a short bar abc2midi accepts"


@dataclass(frozen=True)
class CorpusTune:
    collection: str
    file: str
    index: int
    text: str


def iter_corpus(collections: tuple[str, ...] = COLLECTIONS, limit: int | None = None) -> Iterator[CorpusTune]:
    """Raw tunes of the embedded corpus in a deterministic order (at most ``limit`` per collection)."""
    for name in collections:
        count = 0
        for source in resolve_sources([f"music21:{name}"]):
            text, _ = read_text(source.path)
            if text is None:
                continue
            for tune in split_tunes(text):
                if limit is not None and count >= limit:
                    break
                count += 1
                yield CorpusTune(name, source.path.name, tune.index, tune.text)
            if limit is not None and count >= limit:
                break


def normalised_sample(collections: tuple[str, ...], per_collection: int) -> list[tuple[CorpusTune, Tune]]:
    """The first ``per_collection`` tunes of each collection that normalise (a fixed sample)."""
    out: list[tuple[CorpusTune, Tune]] = []
    for name in collections:
        got = 0
        for raw in iter_corpus((name,)):
            try:
                tune = normalise_tune(raw.text)
            except AbcgenError:
                continue
            out.append((raw, tune))
            got += 1
            if got >= per_collection:
                break
    return out


def _is_single_voice(events: list[Event]) -> bool:
    return not any(e.kind in (ev.VOICE, ev.OVERLAY) or (e.field and e.field[0] == "V") for e in events)


# --- (a) bar durations vs abctoolkit ------------------------------------------------------------------
_DROP_FOR_ABCTOOLKIT = frozenset({ev.BAR, ev.ENDING, ev.NEWLINE, ev.CONTINUATION, ev.SPACE})


def bar_segments(events: list[Event]) -> list[list[Event]]:
    """Events between BAR events: segment ``i`` is bar ``i`` of ``split_bars`` (same cut points)."""
    segments: list[list[Event]] = [[]]
    for event in events:
        if event.kind == ev.BAR:
            segments.append([])
        else:
            segments[-1].append(event)
    return segments


def abctoolkit_bar_duration(text: str) -> Fraction | None:
    """abctoolkit's length of one bar's text in ``L:`` units, None when it fails (prints silenced)."""
    from abctoolkit.duration import calculate_bartext_duration

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            value = calculate_bartext_duration(text)
        except Exception:  # it raises on chords with inner lengths, IndexError on odd tuplets
            return None
    return None if value is None else Fraction(value)


def _bar_category(segment: list[Event]) -> str:
    kinds = [e.kind for e in segment]
    if any(e.kind == ev.REST and e.text[:1] in "ZX" for e in segment):
        return CAT_MULTI_REST
    if ev.BROKEN in kinds:
        timed = [e for e in segment if e.is_timed]
        for e in segment:
            if e.kind != ev.BROKEN:
                continue
            before = [t for t in timed if t.start < e.start]
            after = [t for t in timed if t.start > e.start]
            if before and after and before[-1].written_duration != after[0].written_duration:
                return CAT_BROKEN_UNEQUAL
    if ev.TUPLET in kinds:
        return CAT_TUPLET
    return CAT_OTHER


def compare_bar_durations(tune: Tune) -> dict[str, Any]:
    """Per bar: our duration vs abctoolkit's. Bars with an inline field or overlay are skipped."""
    events = tune.events()
    result: dict[str, Any] = {"agree": 0, "disagree": [], "none": 0, "skipped": 0}
    bars = split_bars(events, tune.unit_length, tune.meter)
    segments = bar_segments(events)
    l_at = dict(zip((id(e) for e in events), unit_lengths(events, tune.unit_length), strict=True))
    for segment, bar in zip(segments, bars, strict=False):
        if not bar.has_notes:
            continue
        if any(e.kind in (ev.FIELD, ev.VOICE, ev.OVERLAY) for e in segment):
            result["skipped"] += 1
            continue
        text = "".join(e.text for e in segment if e.kind not in _DROP_FOR_ABCTOOLKIT
                       and not (e.kind == ev.DECORATION and len(e.text) == 1))
        theirs = abctoolkit_bar_duration(text)
        if theirs is None:
            result["none"] += 1
            continue
        unit = l_at[id(segment[0])]
        if theirs * unit == bar.duration:
            result["agree"] += 1
        else:
            result["disagree"].append({"bar": bar.index, "text": text.strip(), "ours_L": str(bar.duration / unit),
                                       "abctoolkit_L": str(theirs), "category": _bar_category(segment)})
    return result


# --- (b) notes vs music21 ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OurNote:
    midis: tuple[int, ...]  # sounding pitches (bar accidentals carried, ABC 2.1)
    no_carry: tuple[int, ...]  # key signature + the note's own accidental only
    quarters: Fraction
    written_quarters: Fraction  # before broken rhythm / tuplets
    text: str


def our_notes(tune: Tune) -> list[OurNote]:
    """Every NOTE/CHORD of the body with its pitches and length in quarter notes."""
    events = tune.events()
    l_at = dict(zip((id(e) for e in events), unit_lengths(events, tune.unit_length), strict=True))
    sounding = {id(e): m for e, m in sounding_pitches(events, tune.key)}
    plain = AccidentalState(tune.key)
    out = []
    for event in events:
        if event.kind in (ev.FIELD, ev.VOICE) and event.field and event.field[0] == "K":
            plain.set_key(parse_key(event.field[1]))
        if id(event) not in sounding:
            continue
        no_carry = []
        for pitch in event.notes if event.kind == ev.CHORD else (event.pitch,):
            plain.new_bar()
            no_carry.append(plain.midi(pitch))
        unit = l_at[id(event)] * 4
        out.append(OurNote(tuple(sorted(sounding[id(event)])), tuple(sorted(no_carry)), event.duration * unit,
                           event.written_duration * unit, event.text))
    return out


def parse_music21(abc: str) -> Any:
    """music21's parse of one tune (warnings silenced)."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.parse(abc, format="abc")


def music21_notes(score: Any) -> list[tuple[tuple[int, ...], Fraction, str | None]]:
    """(sorted MIDI pitches, quarter length, tie type) of the first part's notes and chords, no grace notes."""
    parts = list(getattr(score, "parts", []) or []) or [score]
    out = []
    for note in parts[0].recurse().notes:
        if note.duration.isGrace or "ChordSymbol" in note.classes:  # "Am" guitar chords are Chord objects
            continue
        out.append((tuple(sorted(p.midi for p in note.pitches)), Fraction(note.quarterLength).limit_denominator(10_000),
                    note.tie.type if note.tie else None))
    return out


def _same(a: OurNote, b: tuple[tuple[int, ...], Fraction, str | None]) -> bool:
    return b[0] in (a.midis, a.no_carry) and b[1] in (a.quarters, a.written_quarters)


def _resync(ours: list[OurNote], theirs: list[Any], i: int, j: int, window: int = 4, run: int = 3) -> tuple[int, int] | None:
    """The smallest skip (of our notes, of music21's) after which ``run`` notes agree again, or None."""
    for total in range(window + 1):
        for di in range(total + 1):
            dj = total - di
            ahead = min(run, len(ours) - i - di, len(theirs) - j - dj)
            if ahead > 0 and all(_same(ours[i + di + k], theirs[j + dj + k]) for k in range(ahead)):
                return di, dj
    return None


def compare_notes(tune: Tune, score: Any | None = None) -> dict[str, Any]:
    """Align our notes with music21's; count matches and each known difference; the rest is unexplained."""
    ours = our_notes(tune)
    theirs = music21_notes(score if score is not None else parse_music21(tune.to_abc()))
    counts: Counter[str] = Counter()
    examples: list[str] = []
    i = j = 0
    while i < len(ours) and j < len(theirs):
        a, (pitches, quarters, _) = ours[i], theirs[j]
        mismatch: tuple[str, str] | None = None  # (category, example) when the notes disagree
        pitch_ok = pitches == a.midis
        carry = not pitch_ok and pitches == a.no_carry
        if quarters != a.quarters:
            # music21 split our note into tied pieces at its own measure boundary?
            total, k = quarters, j
            while total < a.quarters and k + 1 < len(theirs) and theirs[k][2] in ("start", "continue") \
                    and theirs[k + 1][0] == pitches:
                k += 1
                total += theirs[k][1]
            if total == a.quarters and k > j:
                counts[CAT_M21_SPLIT] += 1
                i, j = i + 1, k + 1
                continue
            if quarters == a.written_quarters and (pitch_ok or carry):
                counts[CAT_M21_BROKEN] += 1
            else:
                mismatch = ("unexplained duration", f"{a.text}: ours {a.midis} {a.quarters}q, music21 {pitches} {quarters}q")
        elif pitch_ok:
            counts["match"] += 1
        elif carry:
            counts[CAT_M21_NO_CARRY] += 1
        else:
            mismatch = ("unexplained pitch", f"{a.text}: ours {a.midis}, music21 {pitches}")
        if mismatch is not None:
            # Before calling it unexplained: did one side skip notes (a lost step) and agree again after?
            skip = _resync(ours, theirs, i, j)
            if skip is not None and skip != (0, 0):
                counts["unaligned"] += skip[0] + skip[1]
                if len(examples) < 5:
                    examples.append(f"lost step at our note {i} {a.text!r}: skipped {skip} (ours, music21)")
                i, j = i + skip[0], j + skip[1]
                continue
            counts[mismatch[0]] += 1
            if len(examples) < 5:
                examples.append(mismatch[1])
        i, j = i + 1, j + 1
    leftover = (len(ours) - i) + (len(theirs) - j)
    if leftover:
        counts["unaligned"] += leftover
    return {"ours": len(ours), "music21": len(theirs), "counts": dict(counts), "examples": examples}


# --- (c) transposition vs music21 --------------------------------------------------------------------
def compare_transposition(tune: Tune, shifts: tuple[int, ...] = SHIFTS) -> dict[str, Any]:
    """For each shift: our transposed tune's sounding pitches vs music21's ``score.transpose(shift)``.

    Only meaningful where music21 reads the original as we do (no carried accidentals, no dropped broken
    rhythm), so tunes where it does not are reported as ``comparable: False``."""
    score = parse_music21(tune.to_abc())
    base = music21_notes(score)
    ours_base = our_notes(tune)
    comparable = [n.midis for n in ours_base] == [p for p, _, _ in base]
    result: dict[str, Any] = {"comparable": comparable, "shifts": {}}
    if not comparable:
        return result
    for shift in shifts:
        moved = transpose_tune(tune, shift)
        ours = [n.midis for n in our_notes(moved)]
        reference = [p for p, _, _ in music21_notes(score.transpose(shift))]
        reparsed = [p for p, _, _ in music21_notes(parse_music21(moved.to_abc()))]
        result["shifts"][shift] = {"ours_vs_music21": ours == reference, "music21_reparse": reparsed == reference,
                                   "key": moved.get("K")}
    return result


# --- (d) bar check vs abc2midi ------------------------------------------------------------------------
_BAR_WARNING_RE = re.compile(
    r"line-char (\d+)-(\d+) : .*Bar \d+ has ([\d/]+) time units while the time signature has ([\d/]+)( in repeat)?"
)


def _bar_closed_at(tune: Tune, events: list[Event], line: int, column: int) -> int | None:
    """Index (0-based, into ``split_bars``) of the bar whose closing bar line is nearest to the position
    abc2midi reports (its lines count the whole tune text, 1-based; its columns are 0-based)."""
    body_line = line - len(tune.fields) - 1
    lines = tune.body.split("\n")
    if not 0 <= body_line < len(lines):
        return None
    offset = sum(len(x) + 1 for x in lines[:body_line]) + column
    bar_starts = [e.start for e in events if e.kind == ev.BAR]
    if not bar_starts:
        return None
    nearest = min(range(len(bar_starts)), key=lambda k: abs(bar_starts[k] - offset))
    if abs(bar_starts[nearest] - offset) > 3:
        return None
    # "|:|" or ":||:" after the last bar: abc2midi points at the last bar line; take the bar with music.
    bars = split_bars(events, tune.unit_length, tune.meter)
    while nearest > 0 and not bars[nearest].has_notes:
        nearest -= 1
    return nearest


def _has_fermata(segment: list[Event]) -> bool:
    return any(e.kind == ev.DECORATION and e.text in ("H", "!fermata!", "+fermata+") for e in segment)


def _has_unequal_broken(segment: list[Event]) -> bool:
    return _bar_category(segment) == CAT_BROKEN_UNEQUAL


def compare_bar_check(tune: Tune, messages: list[str] | None = None) -> dict[str, Any]:
    """Our bar check vs abc2midi's bar-length warnings for one tune, with a category per warning."""
    events = tune.events()
    report = check_bars(events, tune.unit_length, tune.meter)
    messages = abc2midi_check(tune.to_abc()) if messages is None else messages
    errors = [m for m in messages if m.startswith("Error")]
    warnings_ = [m for m in messages if _BAR_WARNING_RE.search(m)]
    single = _is_single_voice(events)
    bars = split_bars(events, tune.unit_length, tune.meter) if single else []
    segments = bar_segments(events) if single else []
    music = [b for b in bars if b.has_notes]
    ours_flagged = {p.bar for p in report.problems}
    categories: list[str] = []
    for message in warnings_:
        m = _BAR_WARNING_RE.search(message)
        assert m is not None
        k = _bar_closed_at(tune, events, int(m.group(1)), int(m.group(2))) if single else None
        if k is None or k >= len(bars):
            categories.append(CAT_UNMAPPED)
            continue
        bar: Bar = bars[k]
        if bar.index in ours_flagged:
            categories.append("both")
            continue
        units, signature = Fraction(m.group(3)), Fraction(m.group(4))
        theirs = units / signature * bar.meter if bar.meter else None
        segment = segments[k]
        if theirs == bar.duration:
            if music and bar.index == music[-1].index and bar.duration < (bar.meter or 0):
                categories.append(CAT_LAST_BAR)
            elif m.group(5) or bar.ending or bar.section_start or any(
                    mark in text for text in (bar.opening, bar.closing) for mark in (":", "||", "]", "[|")):
                categories.append(CAT_REPEAT_SPLIT)
            elif music and bar.index == music[-1].index:
                categories.append(CAT_LAST_BAR)
            elif music and bar.index == music[0].index:
                categories.append(CAT_FIRST_BAR)
            elif bar.meter and any(o.duration + bar.duration == bar.meter for o in music
                                   if abs(o.index - bar.index) == 1):
                categories.append(CAT_SPLIT_BAR)
            else:
                categories.append(CAT_SAME_LENGTH)
        elif _has_fermata(segment):
            categories.append(CAT_FERMATA)
        elif _has_unequal_broken(segment):
            categories.append(CAT_BROKEN)
        elif errors:
            categories.append(CAT_ABC2MIDI_ERROR)
        else:
            categories.append(CAT_LENGTH_OTHER)
    ours_only: list[str] = []
    if report.problems and not warnings_:
        for problem in report.problems:
            segment = segments[problem.bar - 1] if single and problem.bar - 1 < len(segments) else []
            if segment and _has_unequal_broken(segment):
                ours_only.append(CAT_BROKEN)
            elif errors:
                ours_only.append(CAT_ABC2MIDI_ERROR)
            else:
                ours_only.append(CAT_OURS_LONG if problem.actual > problem.expected else CAT_OURS_SHORT)
    return {
        "ours": bool(report.problems),
        "abc2midi": bool(warnings_),
        "abc2midi_error": bool(errors),
        "bars": report.num_bars,
        "bars_ours": len(report.problems),
        "bars_abc2midi": len(warnings_),
        "abc2midi_categories": categories,
        "ours_only_categories": ours_only,
        "problems": [str(p) for p in report.problems[:3]],
        "warnings": warnings_[:3],
        "errors": errors[:3],
    }


def explain(result: dict[str, Any]) -> str:
    """One category for a tune on which we and abc2midi disagree."""
    result = result.get("bar_check", result)
    cats = result["abc2midi_categories"] if result["abc2midi"] else result["ours_only_categories"]
    cats = [c for c in cats if c != "both"]
    return Counter(cats).most_common(1)[0][0] if cats else CAT_OTHER


# --- whole-corpus run -------------------------------------------------------------------------------
def check_one(raw: CorpusTune, notes_sample: bool, transpose_sample: bool) -> dict[str, Any]:
    """All comparisons for one raw corpus tune (run in a worker process)."""
    out: dict[str, Any] = {"collection": raw.collection, "file": raw.file, "index": raw.index}
    try:
        tune = normalise_tune(raw.text)
        tune.events()
    except AbcgenError as exc:
        out["rejected"] = str(exc)[:200]
        return out
    out["title"] = tune.title
    single = _is_single_voice(tune.events())
    out["single_voice"] = single
    try:
        durations = compare_bar_durations(tune)
    except Exception as exc:  # a bug in our own comparison code must not kill the whole run
        durations = {"agree": 0, "disagree": [], "none": 0, "skipped": 0, "crash": repr(exc)}
    out["durations"] = durations
    out["bar_check"] = compare_bar_check(tune)
    if notes_sample and not single:
        out["notes"] = {"skipped": "multi-voice (music21 makes a part per V: block)"}
    elif notes_sample:
        try:
            out["notes"] = compare_notes(tune)
        except Exception as exc:  # music21 raises all kinds of errors on odd input
            out["notes"] = {"music21_failed": f"{type(exc).__name__}: {exc}"[:200]}
    if transpose_sample and single:
        try:
            out["transpose"] = compare_transposition(tune)
        except Exception as exc:
            out["transpose"] = {"music21_failed": f"{type(exc).__name__}: {exc}"[:200]}
    return out


def _worker(args: tuple[CorpusTune, bool, bool]) -> dict[str, Any]:
    return check_one(*args)


def _summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in results if "rejected" not in r]
    confusion = Counter((r["bar_check"]["ours"], r["bar_check"]["abc2midi"]) for r in done)
    bars = sum(r["bar_check"]["bars"] for r in done)
    dur = Counter()
    dur_cats: Counter[str] = Counter()
    dur_examples: list[dict[str, Any]] = []
    for r in done:
        d = r["durations"]
        dur["agree"] += d["agree"]
        dur["disagree"] += len(d["disagree"])
        dur["abctoolkit_none"] += d["none"]
        dur["skipped"] += d["skipped"]
        for x in d["disagree"]:
            dur_cats[x["category"]] += 1
            if len(dur_examples) < 10:
                dur_examples.append({"tune": f"{r['file']}#{r['index']} {r.get('title', '')}", **x})
    compared = dur["agree"] + dur["disagree"]
    abc2midi_only = [r for r in done if r["bar_check"]["abc2midi"] and not r["bar_check"]["ours"]]
    ours_only = [r for r in done if r["bar_check"]["ours"] and not r["bar_check"]["abc2midi"]]

    def example(r: dict[str, Any]) -> dict[str, Any]:
        bc = r["bar_check"]
        return {"tune": f"{r['file']}#{r['index']} {r.get('title', '')}", "category": explain(r),
                "ours": bc["problems"][:1], "abc2midi": bc["warnings"][:1], "abc2midi_errors": bc["errors"][:1]}

    notes = Counter()
    for r in done:
        for k, v in r.get("notes", {}).get("counts", {}).items():
            notes[k] += v
        if "music21_failed" in r.get("notes", {}):
            notes["music21_failed_tunes"] += 1
        elif "skipped" in r.get("notes", {}):
            notes["multi_voice_tunes_skipped"] += 1
        elif "counts" in r.get("notes", {}):
            notes["tunes"] += 1
            notes["tunes_all_match"] += set(r["notes"]["counts"]) <= {"match"}
            notes["tunes_unexplained"] += any(k.startswith(("unexplained", "unaligned")) for k in r["notes"]["counts"])
    trans = Counter()
    for r in done:
        t = r.get("transpose")
        if not t:
            continue
        if "music21_failed" in t:
            trans["music21_failed_tunes"] += 1
            continue
        trans["tunes"] += 1
        trans["comparable_tunes"] += t["comparable"]
        for s in t["shifts"].values():
            trans["cases"] += 1
            trans["ours_vs_music21_equal"] += s["ours_vs_music21"]
            trans["music21_reparse_equal"] += s["music21_reparse"]
    return {
        "tunes": len(results),
        "normalised": len(done),
        "rejected_by_normaliser": len(results) - len(done),
        "tunes_ours_flag": sum(r["bar_check"]["ours"] for r in done),
        "tunes_abc2midi_flag": sum(r["bar_check"]["abc2midi"] for r in done),
        "tunes_abc2midi_error": sum(r["bar_check"]["abc2midi_error"] for r in done),
        "confusion": {
            "both": confusion[(True, True)], "ours_only": confusion[(True, False)],
            "abc2midi_only": confusion[(False, True)], "neither": confusion[(False, False)],
            "agreement": round((confusion[(True, True)] + confusion[(False, False)]) / max(len(done), 1), 4),
        },
        "bars": bars,
        "bars_flagged_ours_pct": round(100 * sum(r["bar_check"]["bars_ours"] for r in done) / max(bars, 1), 3),
        "bars_flagged_abc2midi_pct": round(100 * sum(r["bar_check"]["bars_abc2midi"] for r in done) / max(bars, 1), 3),
        "abc2midi_only_categories": dict(Counter(explain(r) for r in abc2midi_only).most_common()),
        "ours_only_categories": dict(Counter(explain(r) for r in ours_only).most_common()),
        "abc2midi_only_examples": [example(r) for r in abc2midi_only[:10]],
        "ours_only_examples": [example(r) for r in ours_only[:10]],
        "bar_durations_vs_abctoolkit": {
            **dur, "agreement": round(dur["agree"] / compared, 5) if compared else None,
            "disagreement_categories": dict(dur_cats.most_common()), "examples": dur_examples,
        },
        "notes_vs_music21": dict(notes),
        "transposition_vs_music21": dict(trans),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=None, help="at most N tunes per collection (quick run)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--notes-every", type=int, default=1, help="music21 note comparison on every k-th tune")
    parser.add_argument("--transpose-every", type=int, default=20,
                        help="transposition comparison (4 shifts, 5 music21 parses) on every k-th tune")
    parser.add_argument("--out", type=Path, default=RESULTS / "crosscheck.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    raws = list(iter_corpus(COLLECTIONS, args.sample))
    jobs = [(raw, i % args.notes_every == 0, i % args.transpose_every == 0) for i, raw in enumerate(raws)]
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            results = pool.map(_worker, jobs, chunksize=32)
    else:
        results = [_worker(job) for job in jobs]
    by_collection = {name: _summarise([r for r in results if r["collection"] == name]) for name in COLLECTIONS}
    payload = {
        "command": "python benchmarks/crosscheck.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "notes_every": args.notes_every,
        "transpose_every": args.transpose_every,
        "categories_note": "abc2midi_only/ours_only: tunes flagged by one side only, by the category of "
                           "most of their bar warnings (see CAT_* in benchmarks/crosscheck.py)",
        "all": _summarise(results),
        "collections": by_collection,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = payload["all"]
    print(json.dumps({k: summary[k] for k in ("tunes", "normalised", "tunes_ours_flag", "tunes_abc2midi_flag",
                                              "tunes_abc2midi_error", "confusion")}, indent=1))
    print(f"wrote {args.out} in {payload['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
