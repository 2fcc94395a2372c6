"""Style classifier (F4) ceiling: its accuracy on real held-out tunes of the ``music21:all`` corpus.

For each label column (``rhythm``, ``origin``), trains ``StyleClassifier`` on the training split's tunes and
measures, on the test split's tunes whose label it knows: accuracy, the majority-label baseline, balanced
accuracy (mean per-label recall) and per-label recall; also on the Irish dance subset alone (jig, reel,
hornpipe, ... from O'Neill's and Ryan's), where rhythm is a musical property rather than a song category.
Writes ``benchmarks/results/style_classifier.json``::

    OMP_NUM_THREADS=1 python benchmarks/style_classifier.py [--corpus runs/benchmarks/corpus_all] [--labels rhythm,origin]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from novelty_index import ensure_corpus  # noqa: E402  -- benchmarks/novelty_index.py

from abcgen.corpus.build import load_corpus
from abcgen.evaluation.style import StyleClassifier
from abcgen.notation.piece import Piece, read_pieces

ROOT = Path(__file__).resolve().parents[1]
IRISH = {"music21:oneills1850", "music21:ryansMammoth"}


def measure(train: list[Piece], train_y: list[str], test: list[Piece], test_y: list[str], seed: int,
            balanced: bool) -> dict[str, Any]:
    start = time.process_time()
    classifier = StyleClassifier(seed=seed, balanced=balanced).fit(train, train_y)
    fit_cpu = time.process_time() - start
    known = [i for i, y in enumerate(test_y) if y in set(classifier.labels)]
    truth = [test_y[i] for i in known]
    predicted = classifier.predict([test[i] for i in known])
    recall = {label: round(sum(p == t for p, t in zip(predicted, truth, strict=True) if t == label) / n, 3)
              for label, n in Counter(truth).most_common()}
    majority = Counter(truth).most_common(1)[0][1] / len(truth) if truth else float("nan")
    return {
        "labels": len(classifier.labels),
        "train_pieces": sum(1 for y in train_y if y in set(classifier.labels)),
        "test_pieces_known_label": len(known), "test_pieces_unknown_label": len(test_y) - len(known),
        "accuracy": round(classifier.accuracy(test, test_y), 4),
        "majority_baseline": round(majority, 4),
        "balanced_accuracy": round(sum(recall.values()) / len(recall), 4) if recall else None,
        "recall_per_label": recall,
        "fit_cpu_seconds": round(fit_cpu, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "benchmarks" / "corpus_all",
                        help="corpus folder (built from music21:all if missing; default under the repository's "
                             "runs/, not a fixed /tmp path another user could own)")
    parser.add_argument("--labels", default="rhythm,origin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "style_classifier.json")
    args = parser.parse_args(argv)

    ensure_corpus(args.corpus)
    corpus = load_corpus(args.corpus)
    train_rows, test_rows = corpus["train"], corpus["test"]
    train = read_pieces(train_rows["abc"], train_rows["title"])
    test = read_pieces(test_rows["abc"], test_rows["title"])
    irish_train = [i for i, s in enumerate(train_rows["source"]) if s in IRISH]
    irish_test = [i for i, s in enumerate(test_rows["source"]) if s in IRISH]

    results: dict[str, Any] = {}
    for label in args.labels.split(","):
        train_y, test_y = train_rows[label], test_rows[label]
        results[label] = {"all": measure(train, train_y, test, test_y, args.seed, balanced=False),
                          "all_balanced": measure(train, train_y, test, test_y, args.seed, balanced=True)}
        if label == "rhythm":
            results[label]["irish_dance_tunes"] = measure(
                [train[i] for i in irish_train], [train_y[i] for i in irish_train],
                [test[i] for i in irish_test], [test_y[i] for i in irish_test], args.seed, balanced=False)
    payload = {
        "command": "python benchmarks/style_classifier.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "corpus": {"folder": str(args.corpus), "train": len(train), "test": len(test)},
        "classifier": "StyleClassifier defaults (hashed 2^14 features, l2 1e-4, L-BFGS 300 iterations, min_count 10)",
        "results": results,
        "environment": {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                        "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(json.dumps({label: {k: {m: v for m, v in r.items() if m != "recall_per_label"} for k, r in by.items()}
                      for label, by in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
