"""``abcgen evaluate`` of one model side by side: legacy grammar, idiom grammar, idiom grammar + guidance.

Runs the three evaluations one after the other (each a real ``abcgen evaluate`` subprocess, the command a
user types; on a shared 2-core machine each takes minutes) and collects from each ``report.json`` the
numbers the comparison is about -- strict validity, overlap, copy rate, key and rhythm adherence, and the
folk idiom and form rows (tier G: idiom shares, tonic ending, phrase cadences, bars repeating an earlier
bar, main-beat onsets) -- as generated values with their 95 % intervals, beside the real tunes' values
(the same in every run: the real draw does not depend on the decoding)::

    OMP_NUM_THREADS=1 python benchmarks/eval_grammar_guidance.py --model runs/quickstart/lora/final \\
        --data runs/quickstart/corpus-finetune --out benchmarks/results/eval_grammar_guidance.json

``--collect-only`` reads the report folders of an earlier run (``--work``) without generating again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("eval_grammar_guidance")

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, tuple[str, ...]] = {  # name -> the flags that make the setting
    "legacy": ("--grammar", "legacy"),
    "idiom": ("--grammar", "idiom"),
    "idiom_guidance_2": ("--grammar", "idiom", "--guidance-scale", "2"),
}
HEADLINE = ("strict_validity", "overlap_mean", "copy_rate", "key_adherence_ks", "rhythm_adherence")
IDIOM_TIER = "G"  # report.py's tier of the folk idiom and form rows


def command(name: str, model: Path, data: Path, work: Path, num_samples: int, seeds: int) -> list[str]:
    """The ``abcgen evaluate`` command line of one setting (the quickstart's, plus the setting's flags)."""
    abcgen = str(Path(sys.executable).with_name("abcgen"))
    return [abcgen, "evaluate", "--model", str(model), "--data", str(data), "--num-samples", str(num_samples),
            "--seeds", str(seeds), *SETTINGS[name], "--quiet", "--out", str(work / f"eval_{name}"), "--overwrite"]


def _cell(cell: dict[str, Any] | None) -> dict[str, float] | None:
    """A report cell as value and its interval, rounded (None where the report has none)."""
    if not cell:
        return None
    return {k: round(float(cell[k]), 2) for k in ("value", "low", "high") if cell.get(k) is not None}


def collect(report: dict[str, Any]) -> dict[str, Any]:
    """The compared numbers of one report: the headline rows and every tier-G row, generated and real."""
    rows = [m for m in report["metrics"] if m["name"] in HEADLINE or m["tier"].startswith(IDIOM_TIER)]
    return {
        "decoding": {k: report["decoding"].get(k) for k in ("grammar", "guidance_scale", "constrained",
                                                           "temperature", "top_p", "num_samples", "seeds")},
        "num_generated": report["counts"]["generated"],
        "tunes_per_second": report.get("tunes_per_second"),
        "generation_seconds": (report.get("seconds") or {}).get("generation"),
        "metrics": {m["name"]: {"tier": m["tier"], "unit": m["unit"], "generated": _cell(m["generated"]),
                                "per_seed": [round(v, 2) for v in m.get("per_seed") or []]} for m in rows},
        "real": {m["name"]: _cell(m["real"]) for m in rows},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/quickstart/lora/final")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/quickstart/corpus-finetune")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds 0..N-1")
    parser.add_argument("--work", type=Path, default=Path("/tmp"), help="where the report folders go")
    parser.add_argument("--collect-only", action="store_true", help="read earlier report folders in --work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/eval_grammar_guidance.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    results: dict[str, Any] = {}
    commands: dict[str, str] = {}
    for name in SETTINGS:  # one after the other: each evaluation uses the machine's cores
        cmd = command(name, args.model, args.data, args.work, args.num_samples, args.seeds)
        commands[name] = "OMP_NUM_THREADS=1 " + " ".join(cmd).replace(str(ROOT) + "/", "")
        if not args.collect_only:
            log.info("%s: %s", name, commands[name])
            started = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)
            log.info("%s done in %.0f s", name, time.perf_counter() - started)
        results[name] = collect(json.loads((args.work / f"eval_{name}" / "report.json").read_text()))
    reals = {name: result.pop("real") for name, result in results.items()}
    real: dict[str, Any] = reals[next(iter(SETTINGS))]
    if any(r != real for r in reals.values()):  # the real draw does not depend on decoding: it should not happen
        log.warning("the real tunes' values differ between runs: kept per setting")
        real = reals
    out = {
        "description": "abcgen evaluate of one model with the legacy grammar, the idiom grammar, and the idiom "
                       "grammar with classifier-free guidance (scale 2); generated values with bootstrap 95 % "
                       "intervals over tunes, per-seed values, and the real held-out tunes' values",
        "model": str(args.model), "data": str(args.data), "commands": commands,
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "omp_num_threads": env["OMP_NUM_THREADS"]},
        "settings": results, "real": real,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    log.info("written to %s", args.out)
    for name, result in results.items():
        cells = {k: (v["generated"] or {}).get("value") for k, v in result["metrics"].items()}
        print(name, json.dumps(cells))


if __name__ == "__main__":
    main()
