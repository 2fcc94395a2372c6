"""The four model families on the same split, budget and evaluation: which one to use for your data?

For each family -- a small Llama (transformer, from scratch), ``MusicLSTM``, ``MusicVAE`` and ``MusicGAN`` --
this script runs exactly what a user runs, as subprocesses:

1. one music tokenizer for all (the corpus's controls + the shipped music units over a byte-level BPE;
   ``abcgen tokenizer train-base`` / ``build``), unless ``--tokenizer`` is given;
2. ``python train/finetune.py --config train/configs/<family>.yaml`` with the same corpus, tokenizer,
   conditions (rhythm, key, meter) and number of optimiser steps (``--steps``; for the GAN, generator
   steps, each after ``gan.critic_steps`` critic steps), timed;
3. ``abcgen evaluate`` on the same test split with the same settings (``--num-samples`` per seed, 3 seeds,
   conditions drawn from the split, constrained decoding for the token models).

It writes ``benchmarks/results/compare_families.json`` and prints the table the README shows::

    OMP_NUM_THREADS=1 python benchmarks/compare_families.py --corpus runs/quickstart/corpus-finetune \\
        --base-bpe runs/quickstart/base-bpe --steps 300 --num-samples 32

Parameters are counted as trained (the GAN: generator + critic). Training seconds are wall time on this
machine (shared machines inflate them: read them as an order of magnitude). Tunes/s is generation only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# family -> (config shipped in train/configs, extra overrides that make the runs comparable)
FAMILIES: dict[str, tuple[str, list[str]]] = {
    "transformer": ("quickstart-base.yaml", ["--data.conditions", "rhythm,key,meter", "--data.condition_dropout", "0.1",
                                             "--optim.warmup_steps", "30"]),
    "lstm": ("lstm-cpu.yaml", ["--optim.warmup_steps", "30"]),
    "vae": ("vae-cpu.yaml", []),
    "gan": ("gan-cpu.yaml", []),
}
# Rows of the table: report metric -> column title
COLUMNS = {
    "strict_validity": "valid (ours + abc2midi) %",
    "bar_alignment_error": "bar-alignment error %",
    "overlap_mean": "overlap (mean, Yang-Lerch)",
    "copy_rate": "copy rate %",
    "key_adherence_ks": "key adherence %",
    "rhythm_adherence": "rhythm adherence %",
}


def run(command: list[str], log_path: Path) -> float:
    """Run ``command`` from the repository root, its output to ``log_path``; returns wall seconds."""
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}); see {log_path}")
    return time.perf_counter() - started


def abcgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "abcgen.cli", *args]


def total_parameters(summary: dict[str, Any]) -> int:
    parameters = summary.get("parameters") or {}
    return int(parameters.get("total") or parameters.get("trainable") or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (abcgen data build)")
    parser.add_argument("--base-bpe", type=Path, default=None, help="base tokenizer folder (default: train one)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="music tokenizer folder (default: build one)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per family (GAN: generator steps)")
    parser.add_argument("--num-samples", type=int, default=32, help="generated tunes per seed in the evaluation")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "compare")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compare_families.json")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus.resolve()

    tokenizer = args.tokenizer
    if tokenizer is None:
        base = args.base_bpe
        if base is None:
            base = work / "base-bpe"
            run(abcgen("tokenizer", "train-base", "--data", str(corpus), "--out", str(base)), work / "base-bpe.log")
        tokenizer = work / "tokenizer"
        run(abcgen("tokenizer", "build", "--base", str(base), "--data", str(corpus), "--out", str(tokenizer),
                   "--units", "shipped"), work / "tokenizer.log")

    rows: dict[str, dict[str, Any]] = {}
    for family in [f for f in args.families.split(",") if f]:
        config, extra = FAMILIES[family]
        out = work / family
        train_seconds = run([sys.executable, "train/finetune.py", "--config", f"train/configs/{config}",
                             "--data.corpus", str(corpus), "--model.tokenizer", str(tokenizer),
                             "--checkpoint.output_dir", str(out), "--optim.max_steps", str(args.steps),
                             "--checkpoint.save_every", str(args.steps + 1), "--logging.eval_every", str(args.steps),
                             "--logging.tensorboard", "false", *extra], work / f"{family}-train.log")
        eval_seconds = run(abcgen("evaluate", "--model", str(out / "final"), "--data", str(corpus),
                                  "--num-samples", str(args.num_samples), "--seeds", str(args.seeds),
                                  "--perplexity-tunes", "100", "--quiet", "--out", str(out / "eval")),
                           work / f"{family}-eval.log")
        summary = json.loads((out / "final" / "training_summary.json").read_text(encoding="utf-8"))
        report = json.loads((out / "eval" / "report.json").read_text(encoding="utf-8"))
        metrics = {m["name"]: m for m in report["metrics"]}
        rows[family] = {
            "metrics": {name: {"generated": (metrics[name]["generated"] or {}).get("value"),
                               "real": (metrics[name]["real"] or {}).get("value")}
                        for name in COLUMNS if name in metrics},
            "perplexity": (report.get("perplexity") or {}).get("perplexity"),
            "tunes_per_second": report.get("tunes_per_second"),
            "parameters": total_parameters(summary),
            "train_seconds": round(train_seconds, 1),
            "evaluate_seconds": round(eval_seconds, 1),
            "config": f"train/configs/{config}",
            "report": str(out / "eval" / "report.md"),
        }
        print(f"{family}: trained in {train_seconds:.0f} s, evaluated in {eval_seconds:.0f} s", flush=True)

    result = {"corpus": str(corpus), "tokenizer": str(tokenizer), "steps": args.steps,
              "num_samples_per_seed": args.num_samples, "seeds": args.seeds, "families": rows,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(markdown_table(result))
    return 0


def markdown_table(result: dict[str, Any]) -> str:
    """One row per family plus the real test tunes' values (the same for every family) as the last row."""
    def cell(value: Any, digits: int = 1) -> str:
        return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    head = ["family", *COLUMNS.values(), "tunes/s", "parameters", "training s", "perplexity"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    real: dict[str, Any] = {}
    for family, row in result["families"].items():
        values = []
        for name in COLUMNS:
            m = row["metrics"].get(name) or {}
            values.append(cell(m.get("generated"), 3 if name == "overlap_mean" else 1))
            real.setdefault(name, m.get("real"))
        lines.append(f"| {family} | " + " | ".join(values) + f" | {cell(row['tunes_per_second'])} | "
                     f"{row['parameters']:,} | {cell(row['train_seconds'], 0)} | {cell(row['perplexity'], 2)} |")
    lines.append("| real test tunes | " + " | ".join(cell(real.get(n), 3 if n == "overlap_mean" else 1) for n in COLUMNS)
                 + " | – | – | – | – |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
