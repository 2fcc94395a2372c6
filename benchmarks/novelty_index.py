"""Novelty index (E1) speed and the held-out real reference, on the ``music21:all`` corpus.

Builds (once) the corpus with ``abcgen data build --source music21:all``, reads the training split's tunes
into pieces, builds ``NoveltyIndex`` and times it; then takes ``--queries`` random tunes of the test
split and times their nearest-neighbour search both ways (``nearest_many``: blocks of rapidfuzz
``cdist``; ``nearest``: one ``extractOne`` per query), checks the two agree, and reports the held-out
reference: median nearest-neighbour similarity, share at >= 0.85 and exact copies, overall and per
source collection (the latter over the whole test split). Writes ``benchmarks/results/novelty_index.json``::

    OMP_NUM_THREADS=1 python benchmarks/novelty_index.py [--corpus runs/benchmarks/corpus_all] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import rapidfuzz

from abcgen.corpus.build import load_corpus
from abcgen.evaluation.novelty import COPY_THRESHOLD, NoveltyIndex, copy_report
from abcgen.notation.piece import read_pieces

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Wall and CPU seconds since the previous lap: the machine is shared, so CPU time is the steadier one."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        lap = {"wall_seconds": round(wall - self.wall, 3), "cpu_seconds": round(cpu - self.cpu, 3)}
        self.wall, self.cpu = wall, cpu
        return lap


def ensure_corpus(folder: Path) -> str | None:
    """Build ``music21:all`` into ``folder`` unless it is there; returns the command run (or None)."""
    if (folder / "dataset_dict.json").exists():
        return None
    command = [sys.executable, "-m", "abcgen", "data", "build", "--source", "music21:all", "--out", str(folder),
               "--quiet"]
    subprocess.run(command, check=True)
    return " ".join(command[1:])


def summary(similarities: list[float]) -> dict[str, Any]:
    scored = [s for s in similarities if s == s]  # not NaN
    return {
        "tunes": len(similarities),
        "median_similarity": round(statistics.median(scored), 4) if scored else None,
        "copy_rate": round(sum(s >= COPY_THRESHOLD for s in scored) / len(scored), 4) if scored else None,
        "copies": sum(s >= COPY_THRESHOLD for s in scored),
        "exact_copies": sum(s == 1.0 for s in scored),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "benchmarks" / "corpus_all",
                        help="corpus folder (built from music21:all if missing; default under the repository's "
                             "runs/, not a fixed /tmp path another user could own)")
    parser.add_argument("--queries", type=int, default=300, help="random test-split tunes to search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "novelty_index.json")
    args = parser.parse_args(argv)

    built_with = ensure_corpus(args.corpus)
    corpus = load_corpus(args.corpus)
    train_rows, test_rows = corpus["train"], corpus["test"]

    clock = Clock()
    train = read_pieces(train_rows["abc"], train_rows["title"])
    read_time = clock.lap()
    index = NoveltyIndex(train)
    build_time = clock.lap()

    test = read_pieces(test_rows["abc"], test_rows["title"])
    chosen = sorted(random.Random(args.seed).sample(range(len(test)), min(args.queries, len(test))))
    queries = [test[i] for i in chosen]
    clock.lap()
    report = copy_report(queries, index)  # nearest_many: cdist blocks, one thread
    many_time = clock.lap()
    one_by_one = [index.nearest(p) for p in queries]
    one_time = clock.lap()
    disagree = sum(abs(a.similarity - b) > 1e-12 for a, b in zip(one_by_one, report["similarities"], strict=True)
                   if a.similarity == a.similarity)

    whole_test = copy_report(test, index)
    by_source: dict[str, list[float]] = defaultdict(list)
    for source, similarity in zip(test_rows["source"], whole_test["similarities"], strict=True):
        by_source[source].append(similarity)
    copies = sorted(((s, test[i].name, name, test_rows["source"][i]) for i, (s, name) in
                     enumerate(zip(whole_test["similarities"], whole_test["nearest"], strict=True))
                     if s >= COPY_THRESHOLD), reverse=True)

    payload = {
        "command": "python benchmarks/novelty_index.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "corpus": {"folder": str(args.corpus), "built_with": built_with, "train": len(train), "test": len(test)},
        "index": {"training_tunes": len(index), "distinct_symbols": index.num_symbols,
                  "read_pieces": read_time, "build": build_time},
        "queries": {
            "count": len(queries), "seed": args.seed,
            "nearest_many": many_time,
            "nearest_many_cpu_ms_per_query": round(1000 * many_time["cpu_seconds"] / len(queries), 2),
            "nearest": one_time,
            "nearest_cpu_ms_per_query": round(1000 * one_time["cpu_seconds"] / len(queries), 2),
            "nearest_and_nearest_many_disagree": disagree,
        },
        "held_out_reference": summary(report["similarities"]),
        "held_out_by_source_whole_test_split": {k: summary(v) for k, v in sorted(by_source.items())},
        "held_out_copies_examples": [{"similarity": round(s, 4), "test_tune": a, "nearest_training_tune": b,
                                      "source": src} for s, a, b, src in copies[:10]],
        "reference_in_evaluation_md": {"median_similarity": 0.463, "copy_rate": 0.01,
                                       "corpus": "a public folk corpus (~1,000 tunes)"},
        "environment": {"rapidfuzz": rapidfuzz.__version__, "cpu_count": os.cpu_count(),
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(json.dumps({k: payload[k] for k in ("index", "queries", "held_out_reference",
                                              "held_out_by_source_whole_test_split")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
