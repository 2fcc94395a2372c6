"""REMI round trip over the whole embedded corpus: how many tunes REMI gives back note for note, and why not.

Every tune of ``music21:all`` (the five ABC collections and the Bach chorales, MusicXML -> ABC) goes through
the corpus builder's own per-tune work (``abcgen.corpus.build.process_job`` with ``remi=True``: normalise,
check, label, then ``abcgen.notation.remi.remi_round_trip``: ABC -> abc2midi -> MIDI -> REMI -> MIDI, every
note's onset, duration, pitch, program and binned velocity and the time signatures compared). Per source:
tunes read, rejected by the build's checks (not converted), tunes round-tripped = exact + not exact (by
reason) + failed (by reason), the duplicates among them (the corpus keeps the first), programs and track
sets seen, tokens and notes per tune (p50 / p90 / max), worker seconds, and three examples per reason.
``REASON_UNEXPLAINED`` (a tune that fits REMI and still does not come back) must stay at 0.
music21's ``nottingham-dataset`` (not a corpus source; its tunes carry real chord symbols) is reported
apart, as the check of the chord accompaniment. Writes ``benchmarks/results/remi_round_trip.json``::

    OMP_NUM_THREADS=1 python benchmarks/remi_round_trip.py [--workers 2] [--sample N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from abcgen.corpus.build import BuildConfig, Job, Outcome, collect_jobs, process_job, reason_kind
from abcgen.corpus.sources import SourceFile, music21_corpus_dir, resolve_sources
from abcgen.notation.remi import POSITIONS_PER_BEAT, REASON_UNEXPLAINED

RESULTS = Path(__file__).resolve().parent / "results"
EXTRA_SOURCE = "music21:nottingham-dataset"


def _work(args: tuple[int, Job, BuildConfig]) -> tuple[Outcome, float]:
    started = time.perf_counter()
    outcome = process_job(args)
    if outcome.row is not None:  # only the REMI text and the counts travel back
        outcome.row = {k: outcome.row[k] for k in ("remi", "fingerprint", "title")}
    return outcome, time.perf_counter() - started


def _percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ranked = sorted(values)
    return {"p50": float(statistics.median(ranked)), "p90": float(ranked[min(len(ranked) - 1, -(-9 * len(ranked) // 10) - 1)]),
            "max": float(ranked[-1])}


def _summarise(jobs: list[Job], results: list[tuple[Outcome, float]]) -> dict[str, Any]:
    """The counts of one source (or all): every tune read is rejected by the build, or round-tripped and
    then exact, not exact or failed."""
    exact = 0
    not_exact: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    programs: Counter[str] = Counter()
    track_sets: Counter[str] = Counter()
    tokens: list[int] = []
    notes: list[int] = []
    examples: dict[str, list[str]] = {}
    seen: set[str] = set()
    duplicates = 0
    for job, (outcome, _) in zip(jobs, results, strict=True):
        if outcome.row is None:
            rejected[reason_kind(outcome.reason)] += 1
            continue
        fingerprint = outcome.row["fingerprint"]
        duplicates += fingerprint in seen
        seen.add(fingerprint)
        where = f"{Path(job.file).name}#{job.tune_index} {outcome.title}"
        if outcome.remi_error:
            kind = reason_kind(outcome.remi_error)
            failed[kind] += 1
            examples.setdefault(f"failed: {kind}", []).append(where)
            continue
        remi = outcome.row["remi"]
        if outcome.remi_loss:
            not_exact[outcome.remi_loss] += 1
            examples.setdefault(f"not exact: {outcome.remi_loss}", []).append(where)
        else:
            exact += 1
        split = remi.split()
        tokens.append(len(split))
        notes.append(sum(1 for token in split if token.startswith("Pitch_")))
        tune_programs = sorted({int(token[8:]) for token in split if token.startswith("Program_")})
        programs.update(str(p) for p in tune_programs)
        track_sets[" ".join(map(str, tune_programs))] += 1
    tunes = exact + sum(not_exact.values()) + sum(failed.values())
    return {
        "in": len(jobs),
        "rejected_by_build": sum(rejected.values()),
        "tunes": tunes,
        "exact": exact,
        "exact_share": round(exact / tunes, 4) if tunes else None,
        "not_exact": dict(not_exact.most_common()),
        "failed": dict(failed.most_common()),
        "adds_up": len(jobs) == sum(rejected.values()) + tunes,
        "duplicates_among_tunes": duplicates,
        "programs_tunes": dict(sorted(programs.items(), key=lambda item: int(item[0]))),
        "track_sets_tunes": dict(track_sets.most_common()),
        "tokens_per_tune": _percentiles(tokens),
        "notes_per_tune": _percentiles(notes),
        "worker_seconds": round(sum(seconds for _, seconds in results), 1),
        "rejected_by_build_reasons": dict(rejected.most_common(8)),
        "examples": {kind: names[:3] for kind, names in sorted(examples.items())},
    }


def _abc2midi_version() -> str:
    try:
        return subprocess.run(["abc2midi", "-ver"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "missing"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=None, help="the first N tunes of each source (quick run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "remi_round_trip.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    files = resolve_sources(["music21:all"])
    extra = sorted((music21_corpus_dir() / "nottingham-dataset").glob("*.abc"))
    files += [SourceFile(path, EXTRA_SOURCE) for path in extra]
    jobs, rejected_files = collect_jobs(files)
    if args.sample is not None:
        index = Counter()
        kept = []
        for job in jobs:
            index[job.source] += 1
            if index[job.source] <= args.sample:
                kept.append(job)
        jobs = kept
    # The build's per-tune settings (bar check "reject", as `abcgen data build`); nothing is written to out.
    config = BuildConfig(sources=["music21:all"], out=Path(os.devnull), remi=True, workers=args.workers)
    work = [(i, job, config) for i, job in enumerate(jobs)]
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            results = pool.map(_work, work, chunksize=16)
    else:
        results = [_work(item) for item in work]
    sources = list(dict.fromkeys(job.source for job in jobs))

    def part(keep: set[str]) -> dict[str, Any]:
        chosen = [(job, result) for job, result in zip(jobs, results, strict=True) if job.source in keep]
        return _summarise([job for job, _ in chosen], [result for _, result in chosen])

    corpus_sources = [s for s in sources if s != EXTRA_SOURCE]
    total = part(set(corpus_sources))
    from importlib.metadata import version

    payload = {
        "command": "python benchmarks/remi_round_trip.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "versions": {"python": platform.python_version(), "miditok": version("miditok"),
                     "symusic": version("symusic"), "abc2midi": _abc2midi_version()},
        "positions_per_beat": POSITIONS_PER_BEAT,
        "note": "tunes = exact + not_exact + failed, every tune the build accepts (duplicates included; the "
                "corpus keeps the first of each); in = rejected_by_build + tunes. not_exact reasons are what "
                "REMI's grid and ranges lose (abcgen.notation.remi.REASON_*); failed: no REMI text.",
        "unexplained": total["not_exact"].get(REASON_UNEXPLAINED, 0),
        "files_rejected": rejected_files,
        "all": total,
        "sources": {source: part({source}) for source in corpus_sources},
        "chord_symbol_check": {EXTRA_SOURCE: part({EXTRA_SOURCE})} if EXTRA_SOURCE in sources else {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: total[k] for k in ("in", "rejected_by_build", "tunes", "exact", "not_exact", "failed")},
                     indent=1, ensure_ascii=False))
    print(f"unexplained: {payload['unexplained']}; wrote {args.out} in {payload['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
