"""How much of real music the idiom grammar lets a model write: real tunes teacher-forced through it.

Each real tune of a corpus split (single voice, a meter) is tokenized as training tokenizes it (the body
after ``K:``) and fed token by token to an ``AbcConstraint`` with the tune's own meter, unit length, key
and pickup, in free mode (no bar count, no form), the idiom grammar with a *weighted* cadence (a real tune
may end off the tonic). The grammar writes spaces and line breaks itself (``beams``), so the model's
spacing is not what is measured: a space or newline the grammar refuses is skipped, and one it demands is
inserted. Any other refused token is a construct the grammar cannot write; the tune stops there. Counted:
tunes walked to the end, refused tokens by text, and the tokens passed before the first refusal::

    OMP_NUM_THREADS=1 python benchmarks/grammar_coverage.py --corpus runs/quickstart/corpus-finetune \\
        --tokenizer runs/quickstart/tokenizer-base --split test --out benchmarks/results/grammar_coverage.json

A construct real tunes use that the grammar refuses is a construct a model trained on them can never
write (the reason the slurs and chord symbols of the first idiom grammar were never generated).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

from abcgen.grammar import AbcConstraint, ConstraintViolation, GrammarConfigError
from abcgen.grammar.rules import DEFAULT_RULES
from abcgen.grammar.vocabulary import NEWLINE, SPACE, music_vocabulary
from abcgen.notation.bars import check_bars
from abcgen.notation.tune import parse_tune

logger = logging.getLogger("grammar_coverage")


def tune_settings(abc: str) -> dict[str, Any] | None:
    """The constraint settings of a real tune (its own meter, L:, K: and pickup), None when the grammar
    does not apply (several voices, free meter, a meter change)."""
    tune = parse_tune(abc)
    meter_text, key = tune.get("M"), tune.get("K")
    if not meter_text or not key or tune.get("V") or re.search(r"\[M:|^M:|\[L:|^L:", tune.body, re.MULTILINE):
        return None
    meter = tune.meter
    if meter is None:
        return None
    bars = [b for b in check_bars(tune.events(), tune.unit_length, meter).bars if b.has_notes]
    if not bars:
        return None
    pickup = bars[0].duration if bars[0].duration < meter else Fraction(0)
    return {"meter": meter_text, "unit_length": tune.unit_length, "key": key, "pickup": pickup}


def walk(tokenizer: Any, abc: str, settings: dict[str, Any]) -> tuple[bool, str | None, int, int]:
    """Feed the tune body; returns (walked to the end, the first refused token text, tokens fed, tokens)."""
    vocab = music_vocabulary(tokenizer)
    ids = tokenizer.encode(parse_tune(abc).body.strip("\n") + "\n", add_special_tokens=False)
    c = AbcConstraint(tokenizer, num_bars=None, max_new_tokens=4 * len(ids) + 64, rules=DEFAULT_RULES,
                      cadence="weighted", **settings)
    fed = 0
    for token_id in ids:
        for _ in range(3):  # grammar-written spaces / line breaks the text lacks
            allowed = c.allowed_ids()
            if token_id in allowed:
                break
            forced = [i for i in allowed if vocab.cls[i] in (SPACE, NEWLINE)]
            if len(forced) and not any(vocab.cls[i] not in (SPACE, NEWLINE) for i in allowed):
                c.advance(forced[0])
                continue
            break
        if token_id not in c.allowed_ids():
            if vocab.cls[token_id] in (SPACE, NEWLINE):
                continue  # the grammar writes spacing itself
            if c.finished or (c.state.closed and token_id == tokenizer.eos_token_id):
                break
            return False, vocab.texts[token_id], fed, len(ids)
        c.advance(token_id)
        fed += 1
    return True, None, fed, len(ids)


def main() -> None:
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="tunes to walk (0: all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = load_from_disk(args.corpus)[args.split]["abc"]
    rows = rows[: args.limit] if args.limit else rows
    started = time.perf_counter()
    refused: Counter[str] = Counter()
    walked = skipped = fed_total = tokens_total = 0
    for abc in rows:
        try:
            settings = tune_settings(abc)
        except Exception:  # noqa: BLE001 -- a tune our own reading cannot set up is only skipped, and counted
            settings = None
        if settings is None:
            skipped += 1
            continue
        try:
            ok, text, fed, total = walk(tokenizer, abc, settings)
        except (GrammarConfigError, ConstraintViolation) as exc:
            refused[f"<{type(exc).__name__}>"] += 1
            continue
        walked += ok
        fed_total, tokens_total = fed_total + fed, tokens_total + total
        if not ok:
            refused[repr(text)] += 1
    tried = len(rows) - skipped
    result = {"corpus": args.corpus, "split": args.split, "tokenizer": args.tokenizer, "tunes": len(rows),
              "skipped_not_applicable": skipped, "walked": tried, "whole_tunes_accepted": walked,
              "whole_share": round(walked / max(tried, 1), 4),
              "tokens_accepted_share": round(fed_total / max(tokens_total, 1), 4),
              "first_refused_token": dict(refused.most_common(40)), "seconds": round(time.perf_counter() - started, 1)}
    logger.info(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
