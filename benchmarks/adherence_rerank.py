"""Can a model pick its own best tune? Best-of-N by the model's pointwise mutual information with the request.

For requests drawn as ``abcgen evaluate`` draws them (the test split's labels, ``draw_requests``), the
``abc-generation`` pipeline writes ``--candidates`` tunes per request (default decoding, one seed per request),
and each candidate ``x`` gets the score

    log p(x | control prefix) - log p(x | no control prefix)     (summed over the generated tokens, EOS included)

-- how much more likely the request makes the tune: a Bayes classifier built from the model itself, with its
unconditional branch (``data.unconditional_dropout``; the prompt without its control tokens, as classifier-free
guidance builds it). The rhythm classifier of ``abcgen evaluate`` (trained on the training split) then judges
the first candidate (what a plain call returns), the best-scored one, and whether any candidate has the requested
rhythm. If the best-scored one beats the first, reranking is a decoding control worth shipping; the "any" share
is what a perfect judge could reach with the same samples. Writes ``benchmarks/results/adherence_rerank.json``::

    OMP_NUM_THREADS=1 python benchmarks/adherence_rerank.py [--candidates 4] [--requests 48]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import abcgen  # noqa: E402,F401  -- registers the pipeline task

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("adherence_rerank")


@torch.no_grad()
def log_likelihood(model: Any, prefix: list[int], tokens: list[int]) -> float:
    """Sum of log p(tokens[i] | prefix + tokens[:i]) (nats)."""
    ids = torch.tensor([prefix + tokens], device=model.device)
    logprobs = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)  # (T-1, V)
    picked = logprobs.gather(-1, ids[0, 1:, None])[:, 0]
    return float(picked[len(prefix) - 1:].sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/quickstart/lora/final")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/quickstart/corpus-finetune")
    parser.add_argument("--candidates", type=int, default=4, help="tunes per request")
    parser.add_argument("--requests", type=int, default=48, help="requests drawn (those with a rhythm the "
                        "classifier knows are kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/adherence_rerank.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))

    from transformers import pipeline

    from abcgen.evaluation.generate import draw_requests
    from abcgen.evaluation.run import load_splits
    from abcgen.evaluation.style import StyleClassifier
    from abcgen.generation.pipeline import TASK, load_control_vocabulary
    from abcgen.notation.piece import read_pieces

    pipe = pipeline(TASK, model=str(args.model))
    held_out, train = load_splits(args.data, "test")
    labels = [str(row.get("rhythm") or "") for row in train]
    keep = [i for i, label in enumerate(labels) if label and label != "other"]
    classifier = StyleClassifier(seed=0).fit(read_pieces([train[i]["abc"] for i in keep]), [labels[i] for i in keep])
    requests = draw_requests(held_out, load_control_vocabulary(args.model), pipe.trained_conditions, args.requests, 0,
                             voices_from_data=False)
    requests = [r for r in requests if r.conditions.get("rhythm") in classifier.labels]
    eos = pipe.tokenizer.eos_token_id
    rows, started = [], time.perf_counter()
    for n, request in enumerate(requests):
        preprocess, forward, _ = pipe._sanitize_parameters(**request.conditions, num_return_sequences=args.candidates,
                                                           seed=n)
        inputs = pipe.preprocess("", **preprocess)
        output = pipe._forward(inputs, **forward)
        tunes = pipe.postprocess(output)
        prompt = inputs["input_ids"][0].tolist()
        unconditional = pipe.prompt_format.unconditional_prompt_ids(prompt, inputs["labels"])
        scores = []
        for row in output["generated"].tolist():
            tokens = row[:row.index(eos) + 1] if eos in row else row
            scores.append(log_likelihood(pipe.model, prompt, tokens) - log_likelihood(pipe.model, unconditional, tokens))
        predicted = classifier.predict(read_pieces([t["abc"] for t in tunes]))
        wanted = request.conditions["rhythm"]
        best = max(range(len(scores)), key=scores.__getitem__)
        rows.append({"rhythm": wanted, "predicted": predicted, "pmi": [round(s, 2) for s in scores],
                     "first_right": predicted[0] == wanted, "best_right": predicted[best] == wanted,
                     "any_right": wanted in predicted, "valid": [bool(t["valid"]) for t in tunes]})
        log.info("%d/%d %s: %s, pmi %s", n + 1, len(requests), wanted, predicted, rows[-1]["pmi"])
    count = max(len(rows), 1)
    summary = {name: round(100.0 * sum(r[f"{name}_right"] for r in rows) / count, 1) for name in ("first", "best", "any")}
    payload = {
        "description": __doc__.split("\n\n")[0], "command": "python benchmarks/adherence_rerank.py " + " ".join(argv or sys.argv[1:]),
        "model": str(args.model), "data": str(args.data), "candidates": args.candidates,
        "requests": len(rows), "rhythms": dict(Counter(r["rhythm"] for r in rows)),
        "rhythm_adherence_percent": summary, "seconds": round(time.perf_counter() - started, 1),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()},
        "per_request": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")  # whole or not at all
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    log.info("rhythm adherence: first %.1f %%, best by PMI %.1f %%, any of %d %.1f %% -> %s", summary["first"],
             summary["best"], args.candidates, summary["any"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
