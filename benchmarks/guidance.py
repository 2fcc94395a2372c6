"""The cost per token of classifier-free guidance (``guidance_scale``): the ``abc-generation`` pipeline with
guidance off (``guidance_scale=1``: ``generate``) and on (``--scale``, default 2: the guided loop of
``abcgen.generation.guidance``, both branches in one batch of twice the rows), same seeds, conditions and
token budget, with and without constrained decoding.

Model: an untrained Llama built here with the tests' tiny music tokenizer (``--shape tiny``, hidden 32, 2
layers, for CPUs; ``--shape small``, hidden 512 x 8 layers, so that a GPU step is not all launch overhead;
``--model`` for a trained folder). Per mode: tokens/s (generated tokens, EOS included, over wall time), ms
per decoding step and row (``generation.py``'s convention) and the share of valid tunes; per constrained
setting, the guidance cost ``guided ms_per_token / plain ms_per_token`` (the fastest of ``--repeats`` runs
per mode, interleaved). Writes
``benchmarks/results/guidance_cpu.json`` (``guidance_gpu.json`` on CUDA)::

    OMP_NUM_THREADS=1 python benchmarks/guidance.py [--num 16] [--batch 8] [--scale 2]
    python benchmarks/guidance.py --device cuda --shape small --batch 8
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

ROOT = Path(__file__).resolve().parents[1]
# Three control tokens each (key, meter, rhythm): the prefix guidance acts on.
CONDITIONS = [
    {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 16},
    {"key": "G", "meter": "4/4", "rhythm": "reel", "bars": 16},
    {"key": "A dorian", "meter": "3/4", "rhythm": "waltz", "bars": 8},
    {"key": "E minor", "meter": "2/4", "rhythm": "polka", "bars": 8},
]


def run(pipe: Any, scale: float, constrained: bool, num: int, batch: int, max_new_tokens: int) -> dict[str, Any]:
    tunes: list[dict[str, Any]] = []
    steps = 0  # decoding steps x rows: a batch runs as many steps as its longest tune has tokens
    start = time.perf_counter()
    for index, conditions in enumerate(CONDITIONS):
        for first in range(0, num, batch):
            out = pipe(**conditions, num_return_sequences=min(batch, num - first), seed=1000 * index + first,
                       constrained=constrained, max_new_tokens=max_new_tokens, guidance_scale=scale)
            tunes += out
            steps += max(t["generated_tokens"] for t in out) * len(out)
    seconds = time.perf_counter() - start
    generated = sum(t["generated_tokens"] for t in tunes)
    return {"guidance_scale": scale, "tunes": len(tunes), "seconds": round(seconds, 2),
            "tokens_per_s": round(generated / seconds, 1), "ms_per_token": round(1000 * seconds / max(steps, 1), 4),
            "mean_generated_tokens": round(generated / len(tunes), 1),
            "valid": round(sum(bool(t["valid"]) for t in tunes) / len(tunes), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder; default: an untrained model of --shape")
    parser.add_argument("--shape", choices=("tiny", "small"), default="tiny", help="the model built without --model")
    parser.add_argument("--num", type=int, default=16, help="tunes per condition set and mode")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--scale", type=float, default=2.0, help="the guidance scale measured against 1 (off)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode; the fastest is kept")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="one batch per condition set, 64 new tokens at most")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if min(args.batch, args.num, args.repeats) < 1 or args.scale == 1:
        parser.error("--batch, --num and --repeats must be at least 1, and --scale other than 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    max_new_tokens = 64 if args.quick else args.max_new_tokens
    num = args.batch if args.quick else max(args.num, args.batch)
    out = args.out or ROOT / "benchmarks" / "results" / ("guidance_gpu.json" if cuda else "guidance_cpu.json")
    from transformers import pipeline

    generation = load_module("abcgen_bench_generation", "benchmarks/generation.py")  # its model shapes
    warnings.simplefilter("ignore")  # "bars bucket not seen in training" on an untrained model
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="abcgen-guidance-bench-") as tmp:
        model = args.model or generation.model_folder(Path(tmp) / "model", args.shape)
        pipe = pipeline("abc-generation", model=str(model), device=0 if cuda else "cpu",
                        dtype=torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32)
        for scale in (1.0, args.scale):  # warm-up: kernels, the constraint's token tables
            pipe(**CONDITIONS[-1], num_return_sequences=2, seed=0, max_new_tokens=max_new_tokens, guidance_scale=scale)
        for constrained in (False, True):
            # the fastest of --repeats runs per mode, the modes interleaved: a shared machine's noise only slows
            best: dict[float, dict[str, Any]] = {}
            for _ in range(args.repeats):
                for scale in (1.0, args.scale):
                    result = run(pipe, scale, constrained, num, args.batch, max_new_tokens)
                    if scale not in best or result["ms_per_token"] < best[scale]["ms_per_token"]:
                        best[scale] = result
            plain, guided = best[1.0], best[args.scale]
            cost = guided["ms_per_token"] / plain["ms_per_token"]
            name = "constrained" if constrained else "unconstrained"
            results[name] = {"off": plain, "guided": guided, "cost_ratio": round(cost, 3)}
            print(json.dumps({name: results[name]}), flush=True)
        n_params = sum(p.numel() for p in pipe.model.parameters())
    payload = {
        "command": "python benchmarks/guidance.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model) if args.model else f"untrained Llama, shape {args.shape!r} "
                                                    f"({generation.SHAPES[args.shape] or 'tests/tiny_models.py'})",
        "params": n_params, "dtype": str(pipe.model.dtype).removeprefix("torch."),
        "condition_sets": CONDITIONS, "num_per_condition_set": num, "batch": args.batch,
        "max_new_tokens": max_new_tokens, "repeats": args.repeats,
        "environment": {"torch": torch.__version__, "device": "cuda" if cuda else "cpu",
                        "gpu": torch.cuda.get_device_name(0) if cuda else None, "threads": torch.get_num_threads(),
                        "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "conventions": {"ms_per_token": "wall time / (decoding steps x rows), a batch's steps being its longest "
                                        "tune's generated tokens",
                        "tokens_per_s": "generated tokens (EOS included) / wall time",
                        "repeats": "each mode runs --repeats times, interleaved; the fastest run is kept",
                        "cost_ratio": "guided ms_per_token / off ms_per_token: what guidance costs per token "
                                      "(the guided step runs 2x the rows in one forward pass)"},
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(json.dumps({"out": str(out), "cost_ratio": {k: r["cost_ratio"] for k, r in results.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
