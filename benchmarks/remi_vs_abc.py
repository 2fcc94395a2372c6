"""ABC against REMI on the same tunes (issue 16): two models of one shape, trained the same way on the same
corpus (Essen folk songs + Bach chorales, `quickstart-remi.yaml`), one on the ABC text, one on the REMI
events; both scored from their notes on the same held-out requests.

    OMP_NUM_THREADS=1 python benchmarks/remi_vs_abc.py                 # train both, then compare
    OMP_NUM_THREADS=1 python benchmarks/remi_vs_abc.py --skip-train    # compare the trained folders

1. Training (a subprocess each, as a user runs it): ``train/finetune.py --config train/configs/quickstart-remi.yaml``
   and the same with ``--data.representation abc``; wall seconds recorded.
2. On the test split's rows that have REMI text in one meter (the same rows for both):
   * **tokens per tune**: the body of each tune in each representation's tokens;
   * **perplexity per note**: each model's summed loss over a tune's tokens divided by the notes the tune
     plays (``heldout_perplexity``: the same denominator for both, so the numbers compare);
   * **generation**: ``--num`` requests drawn from the rows (key, meter, instruments, bars; seeded), sent to
     ``midi-generation`` and to ``abc-generation`` (one voice per instrument: a chorale is asked for 4 voices);
     the ABC tunes go to MIDI through the corpus's own path (``abc_to_remi``: abc2midi, programs, pickups
     aligned), so both are scored from notes by ``evaluate_midi`` against the same real pieces: validity
     (mido, pretty_midi, symusic open it; the meter throughout; no note past the bars asked for; the programs
     asked for), overlap with real, copies of the training pieces, key/meter/programs adherence; seconds per
     piece.
3. ``benchmarks/results/remi_vs_abc.json`` with the table the README prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adherence import ROOT, environment, write_json  # noqa: E402

log = logging.getLogger("remi-vs-abc")

CONFIG = ROOT / "train" / "configs" / "quickstart-remi.yaml"
TABLE_ROWS = (("A1", "strict_validity"), ("B1", "overlap_mean"), ("E1", "copy_rate"),
              ("F1", "key_adherence_ks"), ("F1", "key_signature_adherence_ks"), ("F2", "meter_adherence"),
              ("F5", "programs_adherence"))


def train(config: Path, out: Path, representation: str) -> float:
    command = [sys.executable, str(ROOT / "train" / "finetune.py"), "--config", str(config),
               "--data.representation", representation, "--checkpoint.output_dir", str(out),
               "--checkpoint.overwrite", "true"]
    log.info("training: %s", " ".join(command))
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return round(time.perf_counter() - started, 1)


def requests_for(rows: list[dict[str, Any]], num: int, seed: int, max_bars: int,
                 vocabulary: Any) -> list[dict[str, Any]]:
    """``num`` requests drawn from held-out rows: the row, its key, meter, programs and REMI bars (labels the
    models' shared control vocabulary knows)."""
    from abcgen.evaluation.remi_run import remi_request

    rng = random.Random(seed)
    out = []
    for _ in range(num):
        row = rng.choice(rows)
        out.append({"row": row, **remi_request(row, ("key", "origin", "composer"), max_bars, vocabulary)})
    return out


def generate_remi(pipe: Any, requests: list[dict[str, Any]], trained: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for i, request in enumerate(requests):
        asked = {k: v for k, v in request.items() if k in ("meter", "programs", "bars") or k in trained}
        started = time.perf_counter()
        piece = pipe(**asked, seed=i)[0]
        out.append({"midi": piece["midi"], "valid": piece["valid"], "problems": piece["problems"],
                    "seconds": time.perf_counter() - started, "notes": piece["num_notes"]})
    return out


def generate_abc(pipe: Any, requests: list[dict[str, Any]], trained: tuple[str, ...]) -> list[dict[str, Any]]:
    """ABC tunes for the same requests (one voice per instrument, the row's ABC bar count), to MIDI by the
    corpus's own path."""
    from abcgen.errors import AbcgenError
    from abcgen.generation.midi_pipeline import remi_midi_bytes
    from abcgen.notation.remi import abc_to_remi

    out = []
    for i, request in enumerate(requests):
        row = request["row"]
        asked = {k: v for k, v in request.items() if k in trained and k not in ("meter", "bars", "programs", "row")}
        voices = len(request["programs"])
        bars = max(1, min(int(row["num_bars"]) or 8, 16))
        started = time.perf_counter()
        tune = pipe(meter=request["meter"], unit_length=row["unit_length"] or None, bars=bars, voices=voices,
                    seed=i, **asked)[0]
        seconds = time.perf_counter() - started
        try:
            remi = abc_to_remi(tune["abc"])
            midi, problems = remi_midi_bytes(remi), []
        except AbcgenError as exc:
            midi, problems = b"", [str(exc)]
        out.append({"midi": midi, "valid": tune["valid"] and not problems, "problems": problems + tune["problems"],
                    "seconds": seconds, "notes": midi and remi.count("Pitch_") or 0, "abc": tune["abc"]})
    return out


def representation_numbers(model_dir: Path, rows: list[dict[str, Any]], representation: str) -> dict[str, Any]:
    """Tokens per tune and the loss per note of one model over the held-out rows, on the *music* only: the
    ABC body (the header's title, origin and other text lines are not music REMI has) or the REMI events (its
    track list left out as the ABC header is), each given the control prefix of the trained conditions and the
    header, EOS included. Both are divided by the notes the tune plays (its REMI ``Pitch_`` tokens), so
    the two models' numbers compare."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from abcgen.controls import ControlVocabulary, row_controls
    from abcgen.generation.model_files import trained_conditions
    from abcgen.notation.tune import parse_tune
    from abcgen.tokenization.extend import abc_to_ids
    from abcgen.tokenization.prompt import prompt_format_for

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    vocab = ControlVocabulary.load(model_dir)
    fmt = prompt_format_for(representation, tokenizer, vocab)
    trained = set(trained_conditions(model_dir))
    limit = int(model.config.max_position_embeddings)
    total, notes, lengths, skipped = 0.0, 0, [], 0
    for row in rows:
        labels = {name: value for name, value in row_controls(row).items() if name in trained}
        if representation == "remi":
            prompt = fmt.context_ids(labels) + fmt.text_ids(fmt.tune_header(row["remi"]))
            body = fmt.text_ids(row["remi"])
        else:
            abc = str(row["abc"])
            tune_body = parse_tune(abc).body
            prompt = fmt.prompt_ids(labels, abc[: len(abc) - len(tune_body)])
            body = abc_to_ids(tokenizer, tune_body)
        ids = prompt + body + [fmt.end_id]
        if len(ids) > limit:
            skipped += 1
            continue
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, len(prompt) - 1: -1]
        total += float(torch.nn.functional.cross_entropy(logits, torch.tensor(body + [fmt.end_id]), reduction="sum"))
        notes += str(row["remi"]).count("Pitch_")
        lengths.append(len(body))
    return {"music_tokens_per_tune_mean": round(statistics.fmean(lengths), 1),
            "music_tokens_per_tune_p50": statistics.median(lengths), "notes_per_tune_mean": round(notes / len(lengths), 1),
            "nll_per_note": round(total / notes, 4), "perplexity_per_note": round(math.exp(total / notes), 3),
            "tunes_scored": len(lengths), "tunes_longer_than_the_model": skipped}


def real_requests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each real piece is: its key label, meter (REMI time signature) and programs: the adherence ceiling
    (REMI's MIDI carries no key signature, so the label is the real piece's key)."""
    from abcgen.evaluation.remi_run import remi_request

    return [{"key": r["key"], "meter": q["meter"], "programs": ",".join(map(str, q["programs"]))}
            for r, q in ((r, remi_request(r, (), 10_000)) for r in rows)]


def real_ceiling(rows: list[dict[str, Any]], num: int) -> dict[str, Any]:
    """Key adherence of the real pieces to their own labels (the same draw of real pieces as the table)."""
    from abcgen.evaluation.midi import evaluate_midi
    from abcgen.evaluation.remi_run import midi_of_rows

    real_rows = random.Random(1).sample(rows, min(len(rows), num))
    real = midi_of_rows(real_rows)
    scored = evaluate_midi(real, real_requests(real_rows), real, n_resamples=200)
    return {name: metric(scored, name)["generated"] for name in
            ("key_adherence_ks", "key_signature_adherence_ks", "key_adherence_aarden", "key_signature_adherence_aarden")}


def metric(result: dict[str, Any], name: str) -> dict[str, Any]:
    row = next((m for m in result["metrics"] if m["name"] == name), None)
    if row is None:
        return {}
    return {"generated": (row["generated"] or {}).get("value"), "real": (row["real"] or {}).get("value")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "quickstart" / "corpus-base-remi")
    parser.add_argument("--remi-model", type=Path, default=ROOT / "runs" / "quickstart" / "remi")
    parser.add_argument("--abc-model", type=Path, default=ROOT / "runs" / "quickstart" / "abc-twin")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--num", type=int, default=300, help="requests generated by each model")
    parser.add_argument("--max-bars", type=int, default=16)
    parser.add_argument("--perplexity-tunes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "remi_vs_abc.json")
    parser.add_argument("--numbers-only", action="store_true", help="recompute tokens per tune and loss per note "
                        "into an existing --out (no generation)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch
    from transformers import pipeline

    import abcgen  # noqa: F401  (registers the pipelines)
    from abcgen.evaluation.midi import evaluate_midi, format_midi_report
    from abcgen.evaluation.remi_run import MAX_TRAIN_FOR_COPIES, midi_of_rows, remi_rows
    from abcgen.evaluation.run import load_splits
    from abcgen.generation.model_files import trained_conditions

    torch.set_num_threads(1)
    payload: dict[str, Any] = {"environment": environment(1), "config": str(args.config.relative_to(ROOT)),
                               "corpus": str(args.corpus)}
    if not args.skip_train:
        payload["train_seconds"] = {"remi": train(args.config, args.remi_model, "remi"),
                                    "abc": train(args.config, args.abc_model, "abc")}
    held_out, train_rows = load_splits(args.corpus, "test")
    rows = remi_rows(held_out)
    if args.numbers_only:
        payload = json.loads(args.out.read_text(encoding="utf-8"))
        for name, folder in (("REMI", args.remi_model), ("ABC", args.abc_model)):
            numbers = representation_numbers(folder / "final", rows[: args.perplexity_tunes], name.lower())
            for key in ("tokens_per_tune_mean", "tokens_per_tune_p50", "perplexity_per_token"):
                payload["table"][name].pop(key, None)
            payload["table"][name].update(numbers)
            log.info("%s: %s", name, numbers)
        payload["real_ceiling"] = real_ceiling(rows, args.num)
        write_json(args.out, payload)
        return
    train_rows = remi_rows(train_rows)
    payload["rows"] = {"test": len(held_out), "test_with_remi_in_one_meter": len(rows)}
    from abcgen.controls import ControlVocabulary

    requests = requests_for(rows, args.num, seed=0, max_bars=args.max_bars,
                            vocabulary=ControlVocabulary.load(args.remi_model / "final"))
    real_rows = random.Random(1).sample(rows, min(len(rows), args.num))
    real = midi_of_rows(real_rows)
    train_midi = midi_of_rows(random.Random(2).sample(train_rows, min(len(train_rows), MAX_TRAIN_FOR_COPIES)))

    results: dict[str, Any] = {}
    for name, folder, task, generate in (("REMI", args.remi_model, "midi-generation", generate_remi),
                                         ("ABC", args.abc_model, "abc-generation", generate_abc)):
        final = folder / "final"
        trained = tuple(trained_conditions(final))
        pipe = pipeline(task, model=str(final))
        started = time.perf_counter()
        pieces = generate(pipe, requests, trained)
        seconds = time.perf_counter() - started
        asked = [{"key": r["key"], "meter": r["meter"], "programs": ",".join(map(str, r["programs"])),
                  **({"bars": r["bars"]} if name == "REMI" else {})} for r in requests]
        keep = [i for i, p in enumerate(pieces) if p["midi"]]
        scored = evaluate_midi([pieces[i]["midi"] for i in keep], [asked[i] for i in keep], real, train=train_midi,
                               real_requests=real_requests(real_rows), n_resamples=200)
        numbers = representation_numbers(final, rows[: args.perplexity_tunes], name.lower())
        results[name] = {
            "scored": scored,
            "numbers": {**numbers, "generated": len(pieces), "decoded_to_midi": len(keep),
                        "pipeline_valid": sum(p["valid"] for p in pieces),
                        "seconds_per_piece": round(seconds / len(pieces), 3),
                        "notes_per_second": round(sum(p["notes"] for p in pieces) / seconds, 1),
                        "problems": sorted({q for p in pieces for q in p["problems"]})[:10]},
        }
        log.info("%s: %s", name, results[name]["numbers"])
    table = {}
    for name, result in results.items():
        column = dict(result["numbers"])
        for _tier, metric_name in TABLE_ROWS:
            column[metric_name] = metric(result["scored"], metric_name)
        table[name] = column
    payload["table"] = table
    payload["real_ceiling"] = real_ceiling(rows, args.num)
    payload["report_md"] = format_midi_report({name: r["scored"] for name, r in results.items()})
    payload["results"] = {name: {k: v for k, v in r["scored"].items() if k not in ("histograms",)}
                          for name, r in results.items()}
    write_json(args.out, payload)
    print(payload["report_md"])
    for name, column in table.items():
        print(name, {k: v for k, v in column.items() if not isinstance(v, dict)})


if __name__ == "__main__":
    main()
