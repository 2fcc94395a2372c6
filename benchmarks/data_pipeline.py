"""Throughput of the data pipeline over the embedded ABC corpus, against music21's ABC parser.

Stages, each timed separately in one process (tunes/s): split collections into tunes, normalise, lex,
bar check, tokenize (the music tokenizer built from the shipped unit spec ``abcgen/assets/abc_units.json``
over a tiny local byte-level BPE base from ``tests/tiny_models.py``: no downloads). Beside it: music21's
``converter.parse(text, format="abc")`` on a random sample of the same normalised tunes, the speed ratio,
tokens per tune (music tokenizer vs its base), and the end-to-end wall time of
``abcgen data build --source music21:all`` with its report totals. Writes
``benchmarks/results/data_pipeline.json``::

    OMP_NUM_THREADS=1 python benchmarks/data_pipeline.py [--sample N] [--out PATH] [--no-build]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _load import load_module  # noqa: E402  -- benchmarks/_load.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Single-process numbers must use one thread: the Rust tokenizer would otherwise batch over every core.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from abcgen.corpus.sources import read_text, resolve_sources  # noqa: E402
from abcgen.errors import AbcgenError  # noqa: E402
from abcgen.notation.bars import check_bars  # noqa: E402
from abcgen.notation.lexer import lex_body  # noqa: E402
from abcgen.notation.tune import normalise_tune, split_tunes  # noqa: E402
from abcgen.tokenization.units import load_default_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COLLECTIONS = ("oneills1850", "ryansMammoth", "essenFolksong", "airdsAirs", "miscFolk")


def _tiny_models() -> Any:
    return load_module('abcgen_tests_tiny_models', 'tests/tiny_models.py')


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def _stats(counts: list[int]) -> dict[str, float]:
    ranked = sorted(counts)
    p90 = ranked[min(len(ranked) - 1, -(-9 * len(ranked) // 10) - 1)]
    return {"mean": round(statistics.fmean(counts), 1), "median": float(statistics.median(counts)), "p90": float(p90)}


def measure_pipeline(sample: int | None) -> tuple[dict[str, Any], list[str]]:
    """Time each stage over the corpus (``sample`` tunes per collection at most); return stats and texts."""
    timings = dict.fromkeys(("read_split", "normalise+lex", "lex_alone", "bar_check", "tokenize"), 0.0)
    raw: list[str] = []
    start = time.perf_counter()
    for name in COLLECTIONS:
        texts: list[str] = []
        for source in resolve_sources([f"music21:{name}"]):
            text, _ = read_text(source.path)
            if text is not None:
                texts += [t.text for t in split_tunes(text)]
            if sample is not None and len(texts) >= sample:
                break
        raw += texts[:sample] if sample is not None else texts
    timings["read_split"] = time.perf_counter() - start

    # normalise_tune lexes the body (the strict check) and caches the events: Tune.events() reuses them,
    # so normalise and lex are one stage, as in the corpus builder.
    tunes = []
    lexed = []
    start = time.perf_counter()
    for text in raw:
        try:
            tune = normalise_tune(text)
        except AbcgenError:
            continue
        tunes.append(tune)
        lexed.append(tune.events())
    timings["normalise+lex"] = time.perf_counter() - start

    # For reference only (not in the pipeline total): lexing alone, uncached.
    start = time.perf_counter()
    for t in tunes:
        lex_body(t.body, t.unit_length, t.meter, tune=t.name)
    timings["lex_alone"] = time.perf_counter() - start

    start = time.perf_counter()
    flagged = sum(not check_bars(events, t.unit_length, t.meter).ok for events, t in zip(lexed, tunes, strict=True))
    timings["bar_check"] = time.perf_counter() - start

    abc = [t.to_abc() for t in tunes]
    from abcgen.tokenization.extend import build_music_tokenizer

    with tempfile.TemporaryDirectory(prefix="abcgen-bench-") as tmp:
        base = _tiny_models().tiny_base_tokenizer(Path(tmp) / "base")
        music = build_music_tokenizer(base, load_default_spec(), save_to=Path(tmp) / "music")
        parallel = measure_parallel(raw, Path(tmp) / "music")
        start = time.perf_counter()
        music_ids = music(abc, add_special_tokens=False)["input_ids"]
        timings["tokenize"] = time.perf_counter() - start
        base_ids = base(abc, add_special_tokens=False)["input_ids"]
        vocab = {"base": len(base), "music": len(music)}
    music_counts = [len(x) for x in music_ids]
    base_counts = [len(x) for x in base_ids]
    total_ours = sum(timings[k] for k in ("normalise+lex", "bar_check", "tokenize"))
    result = {
        "tunes_in": len(raw),
        "tunes_normalised": len(tunes),
        "tunes_bar_check_flagged": flagged,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "note": "normalise+lex: normalise_tune lexes once and caches the events; lex_alone (an extra, uncached "
                "lex_body) is for reference and not part of the total",
        "tunes_per_s": {
            "read_split": _rate(len(raw), timings["read_split"]),
            "normalise+lex": _rate(len(raw), timings["normalise+lex"]),
            "lex_alone": _rate(len(tunes), timings["lex_alone"]),
            "bar_check": _rate(len(tunes), timings["bar_check"]),
            "tokenize": _rate(len(tunes), timings["tokenize"]),
            "normalise+lex+bar_check+tokenize": _rate(len(tunes), total_ours),
        },
        "all_cores": parallel,
        "tokens_per_tune": {
            "music": _stats(music_counts), "base": _stats(base_counts),
            "ratio_total": round(sum(music_counts) / sum(base_counts), 4),
            "vocab": vocab,
            "base_tokenizer": "tests/tiny_models.py tiny_base_tokenizer (byte-level BPE, 700 tokens, trained locally)",
        },
    }
    return result, abc


def _pipeline_chunk(args: tuple[list[str], str]) -> int:
    """Worker of ``measure_parallel``: the whole per-tune pipeline over a chunk of raw tunes."""
    from transformers import AutoTokenizer

    texts, tokenizer_dir = args
    tokenizer = _worker_tokenizer.get(tokenizer_dir)
    if tokenizer is None:
        tokenizer = _worker_tokenizer[tokenizer_dir] = AutoTokenizer.from_pretrained(tokenizer_dir)
    tunes = []
    for text in texts:
        try:
            tune = normalise_tune(text)
        except AbcgenError:
            continue
        check_bars(tune.events(), tune.unit_length, tune.meter)
        tunes.append(tune.to_abc())
    tokenizer(tunes, add_special_tokens=False)
    return len(tunes)


_worker_tokenizer: dict[str, Any] = {}


def measure_parallel(raw: list[str], tokenizer_dir: Path) -> dict[str, Any]:
    """The same four stages over the corpus in a pool of one process per core (as ``abcgen data build``
    runs them), tokenizer loaded once per worker before the clock starts."""
    import multiprocessing

    workers = os.cpu_count() or 1
    chunks = [raw[i : i + 256] for i in range(0, len(raw), 256)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_pipeline_chunk, [(raw[:8], str(tokenizer_dir))] * workers)  # warm-up: tokenizer load
        start = time.perf_counter()
        done = sum(pool.map(_pipeline_chunk, [(chunk, str(tokenizer_dir)) for chunk in chunks]))
        seconds = time.perf_counter() - start
    return {"processes": workers, "tunes": done, "seconds": round(seconds, 3), "tunes_per_s": _rate(done, seconds)}


def measure_music21(abc: list[str], n: int, seed: int = 0) -> dict[str, Any]:
    """music21's ABC parse of ``n`` random tunes (same normalised texts), time per tune."""
    from music21 import converter

    picked = random.Random(seed).sample(abc, min(n, len(abc)))
    failures = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converter.parse(picked[0], format="abc")  # warm-up: import-time caches
        start = time.perf_counter()
        for text in picked:
            try:
                converter.parse(text, format="abc")
            except Exception:  # music21 raises many types on odd input
                failures += 1
        seconds = time.perf_counter() - start
    return {"tunes": len(picked), "seed": seed, "seconds": round(seconds, 3),
            "ms_per_tune": round(1000 * seconds / len(picked), 2), "tunes_per_s": _rate(len(picked), seconds),
            "failures": failures, "extrapolated_corpus_seconds": round(seconds / len(picked) * len(abc), 1)}


def measure_build(out: Path) -> dict[str, Any]:
    """Wall time of ``abcgen data build --source music21:all --out OUT`` and its report totals."""
    command = [sys.executable, "-m", "abcgen", "data", "build", "--source", "music21:all", "--out", str(out), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"command": " ".join(["abcgen", *command[3:]]), "wall_seconds": round(seconds, 1),
                              "returncode": proc.returncode}
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-2000:]
    report_path = out / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        result["report_totals"] = {key: report.get(key) for key in ("files", "tunes", "splits", "per_source", "seconds")}
        if isinstance(result["report_totals"]["files"], dict):
            result["report_totals"]["files"].pop("rejected_files", None)
        reasons = report.get("rejection_reasons") or {}
        result["report_totals"]["top_rejection_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:8])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=None, help="at most N tunes per collection")
    parser.add_argument("--music21-sample", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "data_pipeline.json")
    parser.add_argument("--build-out", type=Path, default=None,
                        help="where the end-to-end build writes its corpus (default: a new private temporary "
                             "folder, removed afterwards; a fixed /tmp path could be another user's)")
    parser.add_argument("--no-build", action="store_true", help="skip the end-to-end `abcgen data build` run")
    args = parser.parse_args(argv)
    pipeline, abc = measure_pipeline(args.sample)
    music21 = measure_music21(abc, args.music21_sample)
    ours_rate = pipeline["tunes_per_s"]["normalise+lex+bar_check+tokenize"]
    payload: dict[str, Any] = {
        "command": "python benchmarks/data_pipeline.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpu_count": os.cpu_count(),
        "processes": 1,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "pipeline": pipeline,
        "music21_parse": music21,
        "speed_ratio_vs_music21": round(ours_rate / music21["tunes_per_s"], 1),
        "speed_ratio_vs_music21_all_cores": round(pipeline["all_cores"]["tunes_per_s"] / music21["tunes_per_s"], 1),
        "speed_ratio_target": 50,
    }
    if not args.no_build:
        if args.build_out is not None:
            payload["data_build"] = measure_build(args.build_out)
        else:
            scratch = Path(tempfile.mkdtemp(prefix="abcgen-bench-build-"))  # private (0700), unique
            try:
                payload["data_build"] = measure_build(scratch / "corpus_all")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: payload[k] for k in ("speed_ratio_vs_music21", "speed_ratio_vs_music21_all_cores")} | {"tunes_per_s": pipeline["tunes_per_s"],
                     "music21_ms_per_tune": music21["ms_per_tune"], "tokens": pipeline["tokens_per_tune"]}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
