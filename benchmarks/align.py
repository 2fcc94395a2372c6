"""Preference alignment measured (issue 15): align the quickstart model, evaluate it before and after.

    OMP_NUM_THREADS=1 python benchmarks/align.py                        # align + both evaluations
    OMP_NUM_THREADS=1 python benchmarks/align.py --skip-train           # evaluate an existing WORK/align/final
    OMP_NUM_THREADS=1 python benchmarks/align.py --config C --work W --out-dir D -- --align.rounds 2  # overrides

1. ``train/align.py --config CONFIG`` into ``WORK/align`` (a subprocess, as a user runs it; extra arguments
   after ``--`` are passed on), timed.
2. ``evaluate_model`` (what ``abcgen evaluate`` runs) of the model before (the config's ``model.name_or_path``)
   and after (``WORK/align/final``): the same test-split requests, seeds, sample size and default decoding as
   the adherence grid's default row (``benchmarks/adherence.py``), with held-out perplexity on real test tunes.
3. ``align.json`` in ``--out-dir`` (default ``benchmarks/results/``): per model the adherence rows (key by
   Krumhansl-Schmuckler -- the profile the reward uses -- and by Aarden-Essen and the corpus's own mode
   profiles, which the reward never sees; rhythm by evaluate's classifier, hashed apart from the reward's),
   and the held-out rows the reward never sees (overlap with real tunes, perplexity, pitch and rhythm
   descriptors, copy rate, distinct bar bigrams, bar-alignment error, validity); each round's report of the
   alignment run; and the issue's checks, each with the numbers it compared.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adherence import ROOT, _cell, collect, environment, evaluate, table, write_json  # noqa: E402

from abcgen.generation.arguments import (  # noqa: E402
    DEFAULT_INTERVAL_PRIOR,
    DEFAULT_OPENING_PRIOR,
    DEFAULT_RHYTHM_PRIOR,
    DEFAULT_THEORY_PRIOR,
    DEFAULT_UNISON_PENALTY,
)

log = logging.getLogger("align-benchmark")

# The pipeline's default decoding for a model with every profile, every knob explicit (adherence.decoding_options):
# guidance off, then the theory prior, rhythm prior, unison penalty, interval prior and opening prior.
DEFAULT_DECODING = (1.0, DEFAULT_THEORY_PRIOR, DEFAULT_RHYTHM_PRIOR, DEFAULT_UNISON_PENALTY, DEFAULT_INTERVAL_PRIOR,
                    DEFAULT_OPENING_PRIOR)
# The decoding-only results alignment is compared with: adherence.py --grid JSONs of the same model and corpus.
DECODING_RESULTS = ("adherence.json", "adherence_144.json", "adherence_melody_144.json", "adherence_opening_144.json")
# Held-out rows beside adherence.py's: what the reward never sees.
HELD_OUT = ("bar_alignment_error", "key_adherence_aarden", "key_signature_adherence_aarden", "pitch_class_entropy",
            "pitch_range", "mean_abs_interval", "groove_consistency", "scale_consistency", "note_length_kl",
            "interval_kl", "pitch_class_kl", "nearest_neighbour_similarity", "ends_on_tonic", "bar_repeats",
            "self_similarity")
POINTS = 10.0  # the issue: key and rhythm adherence each up by >= 10 points over the best decoding-only result
WITHIN = 0.05  # overlap and distinct bar bigrams within 5 % of before


def run_alignment(args: argparse.Namespace) -> tuple[Path, float | None]:
    """Align into WORK/align (unless --skip-train); returns the final folder and the wall seconds."""
    final = args.work / "align" / "final"
    if args.skip_train:
        if not final.is_dir():
            raise SystemExit(f"--skip-train: {final} does not exist; run without --skip-train first")
        return final, None
    command = [sys.executable, str(ROOT / "train" / "align.py"), "--config", str(args.config),
               "--checkpoint.output_dir", str(args.work / "align"), "--checkpoint.overwrite", "true", *args.overrides]
    log.info("aligning: %s", " ".join(command))
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return final, time.perf_counter() - started


def held_out(report: dict[str, Any]) -> dict[str, Any]:
    rows = {row["name"]: row for row in report["metrics"]}
    return {name: {"generated": _cell(rows[name]["generated"]), "real": _cell(rows[name].get("real"))}
            for name in HELD_OUT if name in rows}


def value(result: dict[str, Any], name: str, side: str = "generated") -> float | None:
    cell = (result["metrics"].get(name) or result["held_out"].get(name) or {}).get(side)
    return None if cell is None else cell.get("value")


def best_decoding_only(folder: Path) -> dict[str, Any]:
    """The best key and rhythm adherence of any decoding setting in the ``DECODING_RESULTS`` files of ``folder``
    (``adherence.py --grid`` of the same model and corpus), with the file and setting it came from."""
    best: dict[str, Any] = {}
    for file in DECODING_RESULTS:
        path = folder / file
        if not path.is_file():
            continue
        grid = json.loads(path.read_text(encoding="utf-8"))["results"]
        for metric in ("key_adherence_ks", "rhythm_adherence"):
            for name, r in grid.items():
                top = ((r["metrics"].get(metric) or {}).get("generated") or {}).get("value")
                if top is not None and top > (best.get(metric) or {}).get("value", -1.0):
                    best[metric] = {"value": top, "setting": name, "file": file}
    return best


def checks(before: dict[str, Any], after: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """The issue's must-shows, each with what it compared and whether it holds."""
    out: dict[str, Any] = {}
    for metric in ("key_adherence_ks", "rhythm_adherence"):
        got, ceiling = value(after, metric), value(after, metric, "real")
        target = (best.get(metric) or {}).get("value")
        out[f"{metric}_up_10_points"] = {
            "after": got, "best_decoding_only": target, "real_ceiling": ceiling,
            "holds": got is not None and ((target is not None and got >= target + POINTS)
                                          or (ceiling is not None and got >= ceiling))}
    out["validity_100"] = {"after": value(after, "strict_validity"), "holds": value(after, "strict_validity") == 100.0}
    out["bar_alignment_error_0"] = {"after": value(after, "bar_alignment_error"),
                                    "holds": value(after, "bar_alignment_error") == 0.0}
    for metric in ("overlap_mean", "distinct_bar_bigrams"):
        b, a = value(before, metric), value(after, metric)
        out[f"{metric}_within_5_percent"] = {"before": b, "after": a,
                                            "holds": None not in (a, b) and a >= (1 - WITHIN) * b}
    copy, real_copy = value(after, "copy_rate"), value(after, "copy_rate", "real")
    out["copy_rate_not_above_real"] = {"after": copy, "real": real_copy,
                                       "holds": None not in (copy, real_copy) and copy <= real_copy}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "train" / "configs" / "quickstart-align.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "runs" / "quickstart" / "corpus-finetune")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "align-benchmark")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--num-samples", type=int, default=16, help="tunes per seed (adherence.py's default row: 16)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--perplexity-tunes", type=int, default=50)
    parser.add_argument("--skip-train", action="store_true", help="evaluate WORK/align/final as it is")
    parser.add_argument("overrides", nargs="*", help="after --: passed to train/align.py (--align.rounds 2 ...)")
    args = parser.parse_args(argv)
    args.grammar, args.no_abc2midi = None, False  # adherence.evaluate's other settings: the defaults
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import yaml

    before_model = Path(yaml.safe_load(args.config.read_text(encoding="utf-8"))["model"]["name_or_path"])
    if not before_model.is_absolute():
        before_model = ROOT / before_model
    final, align_seconds = run_alignment(args)

    results: dict[str, Any] = {}
    for name, model in (("before", before_model), ("after", final)):
        report, wall = evaluate(model, args.data, args.work / "eval" / name, args, DEFAULT_DECODING,
                                args.perplexity_tunes)
        results[name] = {**collect(report), "held_out": held_out(report), "perplexity": report.get("perplexity"),
                         "wall_seconds": round(wall, 1), "report": str(args.work / "eval" / name / "report.md")}
        log.info("%s: evaluated in %.0f s", name, wall)
    summary = json.loads((final / "training_summary.json").read_text(encoding="utf-8"))
    best = best_decoding_only(args.out_dir)
    payload = {
        "description": "train/align.py on the quickstart model, then abcgen evaluate before and after with the "
                       "default decoding (the adherence grid's default row: same requests, seeds and sample)",
        "command": "python benchmarks/align.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": str(args.config), "data": str(args.data), "environment": environment(1),
        "alignment": {"wall_seconds": round(align_seconds, 1) if align_seconds else summary.get("seconds"),
                      "steps": summary["steps"], "stopped": summary["stopped"], "rounds": summary["rounds"],
                      "config": {k: v for k, v in summary["config"].items() if k.startswith(("align.", "optim.lr",
                                                                                            "lora.r"))}},
        "before": results["before"], "after": results["after"],
        "best_decoding_only": best,
        "checks": checks(results["before"], results["after"], best),
        "table": table({"before alignment": results["before"], "after alignment": results["after"]},
                       {k: {"real": v["real"]} for k, v in results["after"]["metrics"].items()}),
    }
    write_json(args.out_dir / "align.json", payload)
    log.info("written to %s\n%s\nchecks: %s", args.out_dir / "align.json", payload["table"],
             json.dumps(payload["checks"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
