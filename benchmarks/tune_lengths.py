"""How long the fine-tuning corpus's tunes are, in tokens, and what a longer ``data.max_length`` costs.

**Lengths.** Every tune of the quickstart LoRA corpus (``runs/quickstart/corpus-finetune``) as
``encode_example`` builds it whole -- BOS (when the tokenizer adds one) + the control prefix of the
config's conditions + header + body + EOS -- with the stage-2 tokenizer (``runs/quickstart/lora/final``),
without condition dropout: p50/p90/p95/p98/p99/max per split, the share kept whole at the config's
``max_length`` and at other row lengths, and the smallest multiple of 64 that keeps 98 % whole. The numbers
are ``abcgen.training.data.TrainingStats``'s, the ones ``train/finetune.py`` logs at start.

**Cost** (``--time-steps 256,448``). Runs ``train/finetune.py`` on the quickstart LoRA config for
``--steps`` optimiser steps at each ``max_length`` (one process at a time, ``--repeats`` rounds,
interleaved), evaluation off, and times every ``optimizer_step`` inside it: wall and process CPU seconds
per step (median of the steps after the first; the fastest step too), row tokens per step (``micro_batch_size x max_length``),
label tokens per step, and the wall time of the whole run (setup, steps, final save). Writes
``benchmarks/results/tune_lengths.json``::

    OMP_NUM_THREADS=2 python benchmarks/tune_lengths.py [--time-steps 256,448] [--steps 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _load import ROOT, load_module  # noqa: E402  -- benchmarks/_load.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONFIG = "train/configs/quickstart-lora.yaml"
TOKENIZER = "runs/quickstart/lora/final"
ROW_LENGTHS = (256, 320, 384, 448, 512, 640, 768, 1024)  # whole-tune shares reported at these max_length


def measure_lengths(config: str, tokenizer_dir: str) -> dict[str, Any]:
    """Per split: ``TrainingStats`` at the config's ``max_length`` and the whole share at ``ROW_LENGTHS``."""
    from abcgen.controls import ControlVocabulary, row_controls
    from abcgen.corpus.build import load_corpus
    from abcgen.tokenization.extend import load_music_tokenizer
    from abcgen.tokenization.prompt import AbcPromptFormat
    from abcgen.training.config import load_config
    from abcgen.training.data import TrainingStats, build_examples, length_stats, tune_to_examples

    cfg = load_config(ROOT / config)
    tok = load_music_tokenizer(ROOT / tokenizer_dir)
    corpus = load_corpus(ROOT / cfg.data.corpus)
    vocab = ControlVocabulary.load(ROOT / cfg.data.corpus)
    fmt, wanted = AbcPromptFormat(tok, vocab), set(cfg.data.conditions)
    splits: dict[str, Any] = {}
    everything: list[int] = []
    for split in corpus:
        stats = TrainingStats(max_length=cfg.data.max_length)
        for row in corpus[split]:
            labels = {k: v for k, v in row_controls(row).items() if k in wanted}
            tune_to_examples(str(row["abc"]), labels, tok, vocab, max_length=cfg.data.max_length, stats=stats,
                             prompt_format=fmt)
        summary = stats.as_dict()
        if split == cfg.data.train_split:  # the loop's own numbers (without dropout): the same
            _, logged = build_examples(corpus[split], tok, vocab, max_length=cfg.data.max_length,
                                       conditions=cfg.data.conditions, detailed=True)
            assert logged == summary, (logged, summary)
        splits[split] = {
            **{k: summary[k] for k in summary if k.startswith(("length_", "whole_", "max_length_"))},
            "tunes": summary["tunes"], "split_tunes": summary["split_tunes"],
            "whole_percent_at": {m: length_stats(stats.lengths, m)["whole_at_max_length"] for m in ROW_LENGTHS},
        }
        everything += stats.lengths
    return {"config": config, "tokenizer": tokenizer_dir, "corpus": cfg.data.corpus,
            "conditions": cfg.data.conditions, "max_length": cfg.data.max_length,
            "measure": "tokens of a whole tune's example: BOS (if any) + control prefix + header + body + EOS",
            "splits": splits,
            "all": {**length_stats(everything, cfg.data.max_length), "tunes": len(everything),
                    "whole_percent_at": {m: length_stats(everything, m)["whole_at_max_length"] for m in ROW_LENGTHS}}}


def probe(max_length: int, steps: int, out_dir: str) -> dict[str, Any]:
    """One fine-tuning run with every optimiser step timed (run in a process of its own)."""
    finetune = load_module("abcgen_train_finetune", "train/finetune.py")
    timed: list[dict[str, float]] = []
    step = finetune.optimizer_step

    def timed_step(*args: Any, **kwargs: Any) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        record = step(*args, **kwargs)
        timed.append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                      "row_tokens": sum(int(b["input_ids"].numel()) for b in args[3]),
                      "label_tokens": float(record["tokens"])})
        return record

    finetune.optimizer_step = timed_step
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.perf_counter()
    finetune.main(["--config", str(ROOT / CONFIG), "--optim.max_steps", str(steps), "--optim.warmup_steps", "2",
                   "--checkpoint.output_dir", out_dir, "--data.max_length", str(max_length),
                   "--data.eval_split", "", "--checkpoint.save_every", str(steps + 1)])
    total = time.perf_counter() - started
    shutil.rmtree(out_dir, ignore_errors=True)
    after_first = timed[1:]
    per_step = statistics.median(t["wall"] for t in after_first)
    labels = statistics.fmean(t["label_tokens"] for t in after_first)
    return {"max_length": max_length, "steps": len(timed), "run_seconds": round(total, 1),
            "first_step_s": round(timed[0]["wall"], 3),
            "s_per_step": round(per_step, 3),
            "min_s_per_step": round(min(t["wall"] for t in after_first), 3),  # the least disturbed step
            "cpu_s_per_step": round(statistics.median(t["cpu"] for t in after_first), 3),
            "row_tokens_per_step": after_first[0]["row_tokens"],
            "label_tokens_per_step": round(labels),
            "ms_per_1k_label_tokens": round(1e6 * per_step / labels, 1),  # what a trained token costs
            "load_average_at_end": os.getloadavg()[0]}


def time_steps(lengths: list[int], steps: int, repeats: int) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in lengths}
    for _ in range(repeats):
        for n in lengths:  # interleaved: a burst of load on the shared machine hits every length alike
            out = subprocess.run([sys.executable, __file__, "--probe", str(n), "--steps", str(steps)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            runs[n].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[n][-1]), flush=True)
    best = {n: min(r, key=lambda x: x["s_per_step"]) for n, r in runs.items()}
    return {"steps": steps, "repeats": repeats, "best": best, "runs": runs,
            "note": "best = the repeat with the lowest median s/step (least disturbed by other work)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-steps", default="", help="comma-separated max_length values to time (empty: none)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--probe", type=int, default=0, help=argparse.SUPPRESS)  # one timed run (child process)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/tune_lengths.json"))
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.steps, f"/tmp/lenprobe_{args.probe}")), flush=True)
        return 0
    payload: dict[str, Any] = {"command": "python benchmarks/tune_lengths.py " + " ".join(
        sys.argv[1:] if argv is None else argv)}
    payload["lengths"] = measure_lengths(CONFIG, TOKENIZER)
    print(json.dumps(payload["lengths"]["all"]), flush=True)
    if args.time_steps:
        payload["step_cost"] = time_steps([int(n) for n in args.time_steps.split(",")], args.steps, args.repeats)
    payload["environment"] = {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                              "platform": platform.platform(), "python": platform.python_version()}
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
