"""Generation speed and validity with and without constrained decoding, in one run, at one or more batch sizes.

For a model folder (default: an untrained Llama built here with the tests' tiny music tokenizer -- ``--shape
tiny``, hidden 32, for CPUs; ``--shape small``, hidden 512 x 8 layers (~27 M parameters), so that a GPU
decoding step is not all launch overhead; ``--model`` for a trained one such as
``runs/quickstart/lora/final``) and four condition sets, the ``abc-generation`` pipeline generates
``--num`` tunes per set in batches of each ``--batches`` size (``generate`` with its KV cache), once with
constraints and once without, with the same seeds and token budget. Per batch size: tunes/s, ms per
decoding step and row, the constraint overhead (constrained / unconstrained ms per step and row, minus 1),
and the share of tunes that pass our checker and abc2midi (null where abc2midi is not installed, as on
the GPU machine). Needs neither datasets nor music21. Writes ``benchmarks/results/generation_cpu.json``
(``generation_gpu.json`` on CUDA)::

    OMP_NUM_THREADS=1 python benchmarks/generation.py [--model DIR] [--num 32] [--batches 8]
    python benchmarks/generation.py --device cuda --shape small --batches 8,64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
# Model shapes built here (``--model`` not given); the tokenizer is the tests' tiny music tokenizer.
SHAPES = {
    "tiny": None,  # tests/tiny_models.tiny_music_model_folder as is: hidden 32, 2 layers
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=4, max_position_embeddings=2048),
}


def model_folder(folder: Path, shape: str) -> Path:
    """An untrained model folder as train/finetune.py writes one (tokenizer, control vocabulary, weights)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = load_module("abcgen_tests_tiny_models", "tests/tiny_models.py").tiny_music_model_folder(folder)
    if SHAPES[shape] is not None:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=-(-len(tokenizer) // 64) * 64, tie_word_embeddings=True,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **SHAPES[shape])
        LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _abc2midi_errors(abc: str) -> bool | None:
    """Whether abc2midi reports an Error for the tune; None without abc2midi."""
    if shutil.which("abc2midi") is None:
        return None
    return bool([line for line in abc2midi_check(abc) if "Error" in line])


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
    ours = [bool(t["valid"]) for t in tunes]
    midi_errors = [_abc2midi_errors(t["abc"]) for t in tunes]
    midi_ok = None if None in midi_errors else [not e for e in midi_errors]
    return {
        "tunes": len(tunes), "seconds": round(seconds, 2), "tunes_per_s": round(len(tunes) / seconds, 2),
        "ms_per_token": round(1000 * seconds / max(steps, 1), 4),  # per batch row and decoding step
        "mean_generated_tokens": round(sum(t["generated_tokens"] for t in tunes) / len(tunes), 1),
        "valid_ours": round(sum(ours) / len(tunes), 4),
        "valid_abc2midi": None if midi_ok is None else round(sum(midi_ok) / len(tunes), 4),
        "valid_both": None if midi_ok is None else round(sum(a and b for a, b in zip(ours, midi_ok, strict=True))
                                                         / len(tunes), 4),
        "example": tunes[0]["abc"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder; default: an untrained model of --shape")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="the model built without --model")
    parser.add_argument("--num", type=int, default=32, help="tunes per condition set and batch size, at least "
                        "one whole batch (with --quick: one batch)")
    parser.add_argument("--batches", default="8", help="comma-separated batch sizes, e.g. 8,64")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="one batch per condition set and batch size, "
                        "64 new tokens at most: checks the script")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    if not batches or min(batches) < 1:
        parser.error(f"--batches {args.batches!r}: give positive batch sizes, e.g. 8,64")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    max_new_tokens = 64 if args.quick else args.max_new_tokens
    out = args.out or ROOT / "benchmarks" / "results" / ("generation_gpu.json" if cuda else "generation_cpu.json")
    from transformers import pipeline

    warnings.simplefilter("ignore")  # "bars bucket not seen in training" on an untrained model
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="abcgen-gen-bench-") as tmp:
        model = args.model or model_folder(Path(tmp) / "model", args.shape)
        pipe = pipeline("abc-generation", model=str(model), device=0 if cuda else "cpu",
                        dtype=torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32)
        for constrained in (False, True):  # warm-up: kernels, the constraint's token tables
            pipe(**CONDITIONS[-1], num_return_sequences=2, seed=0, max_new_tokens=max_new_tokens,
                 constrained=constrained)
        for batch in batches:
            num = batch if args.quick else max(args.num, batch)
            by_mode = {mode: run(pipe, mode == "constrained", num, batch, max_new_tokens, args.temperature)
                       for mode in ("unconstrained", "constrained")}
            overhead = by_mode["constrained"]["ms_per_token"] / by_mode["unconstrained"]["ms_per_token"] - 1
            results[str(batch)] = {"num_per_condition_set": num, **by_mode, "constraint_overhead": round(overhead, 4)}
            print(json.dumps({"batch": batch, "constraint_overhead": round(overhead, 4),
                              **{m: {k: v for k, v in r.items() if k != "example"} for m, r in by_mode.items()}}),
                  flush=True)
        n_params = sum(p.numel() for p in pipe.model.parameters())
    payload = {
        "command": "python benchmarks/generation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": str(args.model) if args.model else f"untrained Llama, shape {args.shape!r} "
                                                    f"({SHAPES[args.shape] or 'tests/tiny_models.py'})",
        "params": n_params,
        "dtype": str(pipe.model.dtype).removeprefix("torch."),
        "condition_sets": CONDITIONS, "max_new_tokens": max_new_tokens, "temperature": args.temperature,
        "kv_cache": bool(pipe.model.generation_config.use_cache if pipe.model.generation_config.use_cache is not None
                         else pipe.model.config.use_cache),
        "environment": {"torch": torch.__version__, "device": "cuda" if cuda else "cpu",
                        "gpu": torch.cuda.get_device_name(0) if cuda else None, "threads": torch.get_num_threads(),
                        "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "abc2midi": shutil.which("abc2midi")},
        "conventions": {"ms_per_token": "wall time / (decoding steps x rows), a batch's steps being its longest "
                                        "tune's generated tokens",
                        "constraint_overhead": "constrained ms_per_token / unconstrained ms_per_token - 1 "
                                               "(issue 7: <= 0.15 at batch 8 and 64)"},
        "results_by_batch": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(json.dumps({"out": str(out), "constraint_overhead": {b: r["constraint_overhead"] for b, r in results.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
