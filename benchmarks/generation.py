"""Generation speed and validity with and without constrained decoding, in one run.

For a model folder (default: a tiny untrained Llama built here, as in the tests; ``--model`` for a trained
one such as ``runs/quickstart/lora/final``) and a few condition sets, the ``abc-generation`` pipeline
generates ``--num`` tunes per set in batches of ``--batch``, once with constraints and once without, with
the same seeds and token budget. Writes ``benchmarks/results/generation_cpu.json``: tunes/s, ms per
generated token, and the share of tunes that pass our checker and abc2midi (no Error line), each way::

    OMP_NUM_THREADS=1 python benchmarks/generation.py [--model DIR] [--num 32] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _load import load_module  # noqa: E402  -- benchmarks/_load.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import abcgen  # noqa: E402,F401  -- registers the pipeline task
from abcgen.notation.remi import abc2midi_check  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = [
    {"key": "D", "meter": "6/8", "bars": 16},
    {"key": "G", "meter": "4/4", "bars": 16},
    {"key": "A dorian", "meter": "3/4", "bars": 8},
    {"key": "E minor", "meter": "2/4", "bars": 8},
]


def _tiny_model(folder: Path) -> Path:
    return load_module("abcgen_tests_tiny_models", "tests/tiny_models.py").tiny_music_model_folder(folder)


def run(pipe: Any, constrained: bool, num: int, batch: int, max_new_tokens: int, temperature: float) -> dict[str, Any]:
    tunes: list[dict[str, Any]] = []
    steps = 0  # decoding steps x batch rows: what a step of generate() costs, whatever the rows produce
    start = time.perf_counter()
    for index, conditions in enumerate(CONDITIONS):
        for first in range(0, num, batch):
            out = pipe(**conditions, num_return_sequences=min(batch, num - first), seed=1000 * index + first,
                       constrained=constrained, max_new_tokens=max_new_tokens, temperature=temperature)
            tunes += out
            steps += max(t["generated_tokens"] for t in out) * len(out)
    seconds = time.perf_counter() - start
    ours = sum(t["valid"] for t in tunes)
    midi_ok = sum(not [line for line in abc2midi_check(t["abc"]) if "Error" in line] for t in tunes)
    both = sum(t["valid"] and not [line for line in abc2midi_check(t["abc"]) if "Error" in line] for t in tunes)
    return {
        "tunes": len(tunes), "seconds": round(seconds, 2), "tunes_per_s": round(len(tunes) / seconds, 2),
        "ms_per_token": round(1000 * seconds / max(steps, 1), 4),  # per batch row and decoding step
        "mean_generated_tokens": round(sum(t["generated_tokens"] for t in tunes) / len(tunes), 1),
        "valid_ours": round(ours / len(tunes), 4), "valid_abc2midi": round(midi_ok / len(tunes), 4),
        "valid_both": round(both / len(tunes), 4),
        "example": tunes[0]["abc"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder; default: a tiny untrained model")
    parser.add_argument("--num", type=int, default=32, help="tunes per condition set")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation_cpu.json")
    args = parser.parse_args(argv)
    from transformers import pipeline

    warnings.simplefilter("ignore")  # "bars bucket not seen in training" on the tiny model
    with tempfile.TemporaryDirectory(prefix="abcgen-gen-bench-") as tmp:
        model = args.model or _tiny_model(Path(tmp) / "model")
        pipe = pipeline("abc-generation", model=str(model))
        pipe(**CONDITIONS[0], num_return_sequences=2, seed=0, max_new_tokens=32, constrained=False)  # warm-up
        results = {mode: run(pipe, mode == "constrained", args.num, args.batch, args.max_new_tokens, args.temperature)
                   for mode in ("unconstrained", "constrained")}
    payload = {
        "command": "python benchmarks/generation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model) if args.model else "tiny untrained Llama (tests/tiny_models.py)",
        "batch": args.batch, "num_per_condition_set": args.num, "condition_sets": CONDITIONS,
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform()},
        "results": results,
        "constraint_overhead": round(results["constrained"]["ms_per_token"] / results["unconstrained"]["ms_per_token"] - 1, 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(json.dumps({k: {m: {x: v for x, v in r.items() if x != "example"} for m, r in payload["results"].items()}
                      if k == "results" else payload[k] for k in ("results", "constraint_overhead")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
