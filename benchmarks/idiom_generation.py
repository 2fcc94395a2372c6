"""Generated vs real: the folk idiom, endings, recurrence and repeats of constrained tunes (issue 13).

Requests are drawn from the real test tunes of the model's fine-tuning corpus (each tune's key, meter,
rhythm and bar count, a pickup not counted; optionally its form label), ``--per-request`` tunes each,
generated through the ``abc-generation`` pipeline with the chosen grammar; the same measures are taken on
the real test tunes and on the training split (the idiom shares the grammar's default keeps)::

    OMP_NUM_THREADS=2 python benchmarks/idiom_generation.py --model runs/quickstart/lora/final \\
        --corpus runs/quickstart/corpus-finetune --grammar idiom --per-request 4 \\
        --out benchmarks/results/idiom_generation.json

Measures per set: validity by our checker and by abc2midi (no error line), the share of tunes using each
idiom (``abcgen.grammar.idioms.tune_idioms``), ending on the tonic, the share of bars that repeat an
earlier bar of the tune (notes and lengths, spacing ignored), the share of tunes with a repeat sign.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from abcgen.evaluation.idiom import bars_without_pickups
from abcgen.grammar.idioms import IDIOMS, tune_idioms
from abcgen.grammar.rules.forced import played_bars
from abcgen.notation import events as ev
from abcgen.notation.abc2midi import abc2midi_check
from abcgen.notation.bars import check_bars
from abcgen.notation.keys import NATURAL_SEMITONES, parse_key
from abcgen.notation.pitches import sounding_pitches
from abcgen.notation.tune import parse_tune

logger = logging.getLogger("idiom_generation")


def tune_measures(abc: str) -> dict[str, Any]:
    """The measures of one tune (see the module docstring); {} for a tune the lexer rejects."""
    try:
        tune = parse_tune(abc)
        events = tune.events()
        idioms = tune_idioms(abc)
        key = parse_key(tune.get("K") or "C")
    except Exception:  # noqa: BLE001 -- counted as unreadable
        return {}
    sounding = [pitches for event, pitches in sounding_pitches(events, key) if event.kind == ev.NOTE and pitches]
    tonic = (NATURAL_SEMITONES[key.tonic[0]] + (1 if key.tonic[1:] == "#" else -1 if key.tonic[1:] == "b" else 0)) % 12 \
        if key.tonic else None
    bars: list[str] = []
    current: list[str] = []
    for e in events:
        if e.kind == ev.BAR:
            if current:
                bars.append(" ".join(current))
            current = []
        elif e.kind in (ev.NOTE, ev.REST, ev.CHORD):
            current.append(f"{e.text.strip()}:{e.duration}")
    if current:
        bars.append(" ".join(current))
    seen: set[str] = set()
    repeated = 0
    for bar in bars:
        repeated += bar in seen
        seen.add(bar)
    return {"idioms": sorted(idioms), "tonic_end": bool(sounding) and tonic is not None and sounding[-1][0] % 12 == tonic,
            "bars": len(bars), "repeated_bars": repeated,
            "repeat_sign": any(e.kind == ev.BAR and ":" in e.text for e in events)}


def summarise(measures: list[dict[str, Any]], abc2midi_ok: list[bool] | None = None,
              valid: list[bool] | None = None) -> dict[str, Any]:
    read = [m for m in measures if m]
    n = max(len(read), 1)
    idioms = Counter(name for m in read for name in m["idioms"])
    out: dict[str, Any] = {"tunes": len(measures), "readable": len(read)}
    if valid is not None:
        out["valid_ours"] = round(100 * sum(valid) / max(len(valid), 1), 1)
    if abc2midi_ok is not None:
        out["valid_abc2midi"] = round(100 * sum(abc2midi_ok) / max(len(abc2midi_ok), 1), 1)
    out["idiom_share"] = {name: round(100 * idioms[name] / n, 1) for name in IDIOMS}
    out["tonic_end"] = round(100 * sum(m["tonic_end"] for m in read) / n, 1)
    bars = sum(m["bars"] for m in read)
    out["bars_repeating_earlier"] = round(100 * sum(m["repeated_bars"] for m in read) / max(bars, 1), 1)
    out["repeat_sign"] = round(100 * sum(m["repeat_sign"] for m in read) / n, 1)
    return out


def requests_from(rows: Any, with_form: bool) -> list[dict[str, Any]]:
    """One request per real tune: its key, meter, rhythm, bar count (no pickup, neither the tune's nor a
    section's) and, ``with_form``, its form label (its bars then as played, as the pipeline counts them)."""
    out = []
    for row in rows:
        tune = parse_tune(row["abc"])
        bars = bars_without_pickups(check_bars(tune.events(), tune.unit_length, tune.meter).bars)
        request = {"key": row["key"], "meter": row["meter"], "bars": bars}
        if row.get("rhythm"):
            request["rhythm"] = row["rhythm"]
        if with_form and row.get("form") and re.fullmatch(r"[A-Z]+", row["form"]):
            played = played_bars(row["form"], bars)  # with a form the pipeline counts played bars
            if played is not None:
                request.update(form=row["form"], bars=played)
        out.append(request)
    return out


def main() -> None:
    from datasets import load_from_disk

    from abcgen.generation.pipeline import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--grammar", default="idiom")
    parser.add_argument("--per-request", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="real test tunes to draw requests from (0: all)")
    parser.add_argument("--with-form", action="store_true", help="also request each real tune's form label")
    parser.add_argument("--unconstrained", action="store_true", help="no constrained decoding (the model alone)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=6, help="generated tunes to keep whole in the JSON")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = load_from_disk(args.corpus)
    test = corpus["test"]
    rows = [test[i] for i in range(len(test) if not args.limit else min(args.limit, len(test)))]
    pipe = load_pipeline(args.model)
    started = time.perf_counter()
    generated: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for index, request in enumerate(requests_from(rows, args.with_form)):
        try:
            out = pipe("", num_return_sequences=args.per_request, seed=args.seed + index, grammar=args.grammar,
                       constrained=not args.unconstrained,
                       **request)
        except Exception as exc:  # noqa: BLE001 -- a request the model cannot take is counted, not fatal
            skipped[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            continue
        for result in out:
            generated.append({"request": request, "abc": result["abc"], "valid": result["valid"]})
    seconds = time.perf_counter() - started
    abcs = [g["abc"] for g in generated]
    midi_ok = [not abc2midi_check(abc, quiet=True) for abc in abcs]
    result = {
        "model": args.model, "grammar": "none" if args.unconstrained else args.grammar, "with_form": args.with_form, "seconds": round(seconds, 1),
        "requests_skipped": dict(skipped),
        "generated": summarise([tune_measures(a) for a in abcs], midi_ok, [g["valid"] for g in generated]),
        "real_test": summarise([tune_measures(r["abc"]) for r in rows]),
        "real_train": summarise([tune_measures(a) for a in corpus["train"]["abc"]]),
        "examples": generated[: args.examples],
    }
    logger.info(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
