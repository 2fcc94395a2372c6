"""Does a model follow what it is asked for? Decoding settings, openings at a fixed seed, and model size (issue 14).

Three parts, each writing one JSON into ``--out-dir`` (default ``benchmarks/results/``), rewritten atomically
after every setting or model so that an interrupted run keeps what it finished:

``--grid`` -> ``adherence.json``. ``evaluate_model`` (what ``abcgen evaluate`` runs) once per decoding
setting -- classifier-free guidance scale x theory-prior strength, default {1, 2} x {0, 1, 2}
(``--grid-settings GUIDANCE:PRIOR[:RHYTHM[:UNISON[:INTERVAL[:OPENING]]]],...``: the guidance scale, then the
strengths of the theory, rhythm and interval priors, the unison penalty and the opening prior, 0 when left
out, so a setting means the same whatever the pipeline's defaults) -- same
model, corpus, sample size and seeds, so only the decoding differs (the real tunes drawn are the same in
every run: they depend on the split, the count and the evaluation seed only). Per setting: key adherence
(Krumhansl-Schmuckler, exact and at key-signature level) with the real tunes' ceiling (real tunes against
their own ``K:``), ``mode_adherence*`` rows when the report has them, rhythm adherence with its classifier
ceiling, meter and bar-count adherence, the mean Yang-Lerch overlap with the real tunes (the README's
"overlap"; its real value is the real-half-vs-half floor), copy rate against the real test tunes' own,
distinct bar bigrams, validity (ours, abc2midi, both), generation seconds and tunes/s. Held-out perplexity
does not depend on decoding: it is computed in the first run only. Every report folder stays under
``--work/grid/<setting>/`` (report.md, generated.abc) to be read.

``--openings`` -> ``adherence_openings.json``. At fixed seeds, requests that differ in one condition only: a
16-bar 6/8 jig in D major, G major and A minor (the key group), and a 16-bar reel and hornpipe in D major in
one meter (the rhythm group; the meter both were most often written in, in the model's control vocabulary:
2/2 for the quickstart corpus, where a 4/4 reel never occurs). For each seed and group: are the first 12
notes, as written (the note and chord tokens of the body: ``A2``, ``^F`` and ``a>`` differ from ``A``, ``F``, ``a``), of
every pair of requests different? Reported per decoding setting (default guidance 1 and 2 x prior 0 and 1)
as the share of seeds in which all openings of a group differ pairwise; issue 14 asks >= 90 %.

``--scaling`` -> ``adherence_scaling.json``. For each size (``--sizes 128x4,256x6,512x6``: hidden x layers,
optionally x heads; heads of 32 dimensions up to hidden 256, of 64 above; MLP 3 x hidden): a base model
trained from scratch on the base corpus (``train/finetune.py --config train/configs/quickstart-base.yaml``
plus dotted overrides), the LoRA stage on top (``quickstart-lora.yaml``), and an evaluation with the default
decoding. Per size: parameters (counted from the saved weights; without the embeddings too), training
tokens and wall seconds per stage, validation perplexity per stage, held-out perplexity, key and rhythm
adherence, overlap, validity. ``--max-steps-scale`` shrinks every step budget (a smoke run)::

    OMP_NUM_THREADS=1 python benchmarks/adherence.py --grid --openings        # the quickstart model
    OMP_NUM_THREADS=1 python benchmarks/adherence.py --scaling --work runs/adherence
    OMP_NUM_THREADS=1 python benchmarks/adherence.py --scaling --sizes 32x2 --base-steps 3 --lora-steps 3 \\
        --num-samples 2 --seeds 1 --work /tmp/adh --out-dir /tmp/adh     # smoke: minutes

``--collect-only`` rebuilds ``adherence.json`` from the report folders of an earlier ``--grid`` run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("adherence")

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = "train/configs/quickstart-base.yaml"
LORA_CONFIG = "train/configs/quickstart-lora.yaml"

# report.py's rows collected per setting -> what the row's ``real`` value is
ROWS: dict[str, str] = {
    "key_adherence_ks": "ceiling: real test tunes against their own K:",
    "key_signature_adherence_ks": "ceiling: real test tunes against their own K:",
    "rhythm_adherence": "ceiling: the rhythm classifier's accuracy on real test tunes",
    # the same classifier reading one feature group only (reports written before these rows have neither)
    "rhythm_adherence_durations": "ceiling: the durations-only rhythm classifier's accuracy on real test tunes",
    "rhythm_adherence_intervals": "ceiling: the intervals-only rhythm classifier's accuracy on real test tunes",
    "meter_adherence": "real test tunes against their own M:",
    "bars_adherence": "none (real tunes ask for nothing)",
    "overlap_mean": "floor: one half of the real draw against the other",
    "copy_rate": "the real test tunes' own copy rate against the training split",
    "exact_copies": "the real test tunes' own exact copies of training tunes",
    "distinct_bar_bigrams": "the real test tunes",
    "repeated_notes": "the real test tunes",
    "strict_validity": "the real test tunes",
    "validity_ours": "the real test tunes",
    "abc2midi_validity": "the real test tunes",
}
MODE_PREFIX = "mode_adherence"  # mode_adherence, mode_adherence_exact: read when the report has them, never required
TABLE = (  # (row, column title, digits) of the printed table
    ("key_adherence_ks", "key %", 1), ("key_signature_adherence_ks", "key sig. %", 1),
    ("mode_adherence", "mode %", 1), ("rhythm_adherence", "rhythm %", 1),
    ("rhythm_adherence_durations", "rhythm by durations %", 1), ("rhythm_adherence_intervals", "rhythm by intervals %", 1),
    ("meter_adherence", "meter %", 1),
    ("bars_adherence", "bars %", 1), ("overlap_mean", "overlap", 3), ("copy_rate", "copy %", 1),
    ("distinct_bar_bigrams", "bar bigrams %", 1), ("repeated_notes", "repeated notes %", 1),
    ("strict_validity", "valid %", 1),
    ("abc2midi_validity", "abc2midi %", 1),
)
OPENING_NOTES = 12
MUST_SHOW_SHARE = 0.9  # issue 14: openings differ in at least 90 % of seeds
KEY_GROUP = {"rhythm": "jig", "meter": "6/8", "bars": 16, "keys": ("D major", "G major", "A minor")}
RHYTHM_GROUP = {"key": "D major", "bars": 16, "rhythms": ("reel", "hornpipe"), "fallback_meter": "4/4"}


# --- shared -----------------------------------------------------------------------------------------------


def parse_settings(text: str, flag: str) -> list[tuple[float, float, float, float, float, float]]:
    """``"1:0,2:1"`` -> [(guidance_scale, theory_prior, rhythm_prior, unison_penalty, interval_prior,
    opening_prior), ...]: ``GUIDANCE:PRIOR[:RHYTHM_PRIOR[:UNISON[:INTERVAL_PRIOR[:OPENING_PRIOR]]]]`` (0 when
    left out); a bad item is one line naming the flag."""
    out: list[tuple[float, float, float, float, float, float]] = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        try:
            values = [float(v) for v in item.split(":")]
            if len(values) not in (2, 3, 4, 5, 6):
                raise ValueError
        except ValueError:
            raise SystemExit(f"{flag} {item!r}: give GUIDANCE:PRIOR[:RHYTHM_PRIOR[:UNISON[:INTERVAL_PRIOR"
                             "[:OPENING_PRIOR]]]] items, e.g. "
                             f"{flag} 1:0,2:1,1:1:0:1") from None
        scale, prior, rhythm, unison, steps, opening = (*values, 0.0, 0.0, 0.0, 0.0)[:6]
        if scale < 1 or min(prior, rhythm, unison, steps, opening) < 0:
            raise SystemExit(f"{flag} {item!r}: the guidance scale is >= 1 (1 = off), the priors and the unison "
                             "penalty >= 0 (0 = off)")
        out.append((scale, prior, rhythm, unison, steps, opening))
    if not out:
        raise SystemExit(f"{flag} is empty: give GUIDANCE:PRIOR items, e.g. {flag} 1:0,2:1")
    return out


def setting_name(scale: float, prior: float, rhythm: float = 0.0, unison: float = 0.0, steps: float = 0.0,
                 opening: float = 0.0) -> str:
    return (f"guidance{scale:g}_prior{prior:g}" + (f"_rhythm{rhythm:g}" if rhythm else "")
            + (f"_unison{unison:g}" if unison else "") + (f"_interval{steps:g}" if steps else "")
            + (f"_opening{opening:g}" if opening else ""))


def decoding_options(scale: float, prior: float, rhythm: float, unison: float = 0.0,
                     steps: float = 0.0, opening: float = 0.0) -> dict[str, float]:
    """The pipeline / ``GenerationSettings`` arguments of one setting (every knob explicit, so a setting means
    the same whatever the pipeline's defaults)."""
    return {"guidance_scale": scale, "theory_prior": prior, "rhythm_prior": rhythm, "unison_penalty": unison,
            "interval_prior": steps, "opening_prior": opening}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all (a temporary sibling renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def environment(threads: int) -> dict[str, Any]:
    import torch

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {"cpus": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def check_profiles(model: Path, settings: Iterable[tuple[float, ...]]) -> None:
    """A theory, rhythm or interval prior needs the model folder's profiles file: say so before anything runs."""
    from abcgen.model_profiles import PROFILES_FILE

    def wants_profiles(setting: tuple[float, ...]) -> bool:
        _scale, prior, rhythm, *rest = setting
        return bool(prior or rhythm or (len(rest) > 1 and rest[1]))

    if any(wants_profiles(setting) for setting in settings) and not (model / PROFILES_FILE).is_file():
        raise SystemExit(f"{model} has no {PROFILES_FILE}, which a theory, rhythm or interval prior > 0 needs: re-run "
                         "training, "
                         f"or write it with `abcgen data profiles --model {model} --data CORPUS`, or give settings "
                         "with the priors at 0")


def _cell(cell: dict[str, Any] | None, digits: int = 3) -> dict[str, float] | None:
    """A report cell (value and its 95 % interval) rounded; None where the report has none."""
    if not cell or cell.get("value") is None:
        return None
    return {k: round(float(cell[k]), digits) for k in ("value", "low", "high") if cell.get(k) is not None}


def collect(report: dict[str, Any]) -> dict[str, Any]:
    """What one evaluation says about adherence: the ROWS (and any mode_adherence* row), generated and real."""
    metrics: dict[str, Any] = {}
    for row in report["metrics"]:
        name = row["name"]
        if name in ROWS or name.startswith(MODE_PREFIX):
            metrics[name] = {"generated": _cell(row["generated"]), "real": _cell(row["real"]),
                             "real_is": ROWS.get(name, "ceiling: real test tunes against their own K:"),
                             "per_seed": [round(v, 3) for v in row.get("per_seed") or []]}
    decoding = report.get("decoding") or {}
    return {
        "decoding": {k: decoding.get(k) for k in ("grammar", "guidance_scale", "theory_prior", "rhythm_prior",
                                                  "unison_penalty", "interval_prior", "opening_prior", "constrained",
                                                  "temperature", "top_p",
                                                  "num_samples", "seeds")},
        "num_generated": report["counts"]["generated"], "num_real": report["counts"]["real"],
        "generation_seconds": (report.get("seconds") or {}).get("generation"),
        "evaluation_seconds": (report.get("seconds") or {}).get("total"),
        "tunes_per_second": report.get("tunes_per_second"),
        "conditions_skipped": report.get("conditions_skipped"),
        "metrics": metrics,
    }


def table(rows: dict[str, dict[str, Any]], real: dict[str, Any] | None = None) -> str:
    """A markdown table: one row per setting (or model), the real tunes' values last."""
    def value(metrics: dict[str, Any], name: str, side: str) -> float | None:
        return ((metrics.get(name) or {}).get(side) or {}).get("value")

    def fmt(v: Any, digits: int) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    head = ["setting", *(title for _, title, _ in TABLE), "tunes/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt(value(row["metrics"], m, "generated"), d) for m, _, d in TABLE)
                     + f" | {fmt(row.get('tunes_per_second'), 2)} |")
    if real is not None:
        lines.append("| real test tunes | " + " | ".join(fmt(value(real, m, "real"), d) for m, _, d in TABLE) + " | – |")
    return "\n".join(lines)


def evaluate(model: Path, data: Path, out: Path, args: argparse.Namespace,
             setting: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0), perplexity_tunes: int = 0
             ) -> tuple[dict[str, Any], float]:
    """``evaluate_model`` with the benchmark's sample settings and one decoding; (report, wall seconds)."""
    import dataclasses

    from abcgen.evaluation.generate import GenerationSettings
    from abcgen.evaluation.run import EvaluationSettings, evaluate_model

    options = decoding_options(*setting)
    unknown = set(options) - {f.name for f in dataclasses.fields(GenerationSettings)}
    if unknown:
        raise SystemExit(f"this abcgen's GenerationSettings has no {', '.join(sorted(unknown))}: leave the "
                         "rhythm and interval priors out of the settings (GUIDANCE:PRIOR)")
    generation = GenerationSettings(num_samples=args.num_samples, seeds=tuple(range(args.seeds)), grammar=args.grammar,
                                    **options)
    settings = EvaluationSettings(generation=generation, perplexity_tunes=perplexity_tunes,
                                  abc2midi=not args.no_abc2midi)
    started = time.perf_counter()
    report = evaluate_model(model, data, out, settings, progress=False, overwrite=True)
    return report, time.perf_counter() - started


# --- part 1: the decoding grid ------------------------------------------------------------------------------


def run_grid(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    grid = parse_settings(args.grid_settings, "--grid-settings")
    if not args.collect_only:
        check_profiles(args.model, grid)
    payload: dict[str, Any] = {
        "description": "abcgen evaluate of one model per decoding setting (classifier-free guidance scale x theory "
                       "prior strength); generated values with bootstrap 95 % intervals over tunes, per-seed values, "
                       "and the real held-out tunes' values (the same draw in every setting; 'real_is' says what "
                       "each real value is: a ceiling, a floor or the real tunes' own rate)",
        "command": "python benchmarks/adherence.py " + " ".join(sys.argv[1:]),
        "model": str(args.model), "data": str(args.data), "work": str(args.work / "grid"),
        "environment": env,
        "settings": {"grid": [decoding_options(*setting) for setting in grid],
                     "num_samples_per_seed": args.num_samples, "seeds": args.seeds, "grammar": args.grammar,
                     "perplexity_tunes": args.perplexity_tunes, "abc2midi": not args.no_abc2midi},
        "perplexity": None, "results": {}, "real": None,
    }
    out = args.out_dir / "adherence.json"
    for index, setting in enumerate(grid):
        name = setting_name(*setting)
        folder = args.work / "grid" / name
        if args.collect_only:
            report, wall = json.loads((folder / "report.json").read_text(encoding="utf-8")), None
        else:
            log.info("grid %d/%d: %s", index + 1, len(grid), name)
            # perplexity does not depend on decoding: the first run only
            report, wall = evaluate(args.model, args.data, folder, args, setting,
                                    args.perplexity_tunes if index == 0 else 0)
            log.info("%s done in %.0f s", name, wall)
        payload["perplexity"] = payload["perplexity"] or report.get("perplexity")
        result = collect(report)
        result["wall_seconds"] = round(wall, 1) if wall is not None else None
        result["report"] = str(folder / "report.md")
        payload["results"][name] = result
        payload["real"] = payload["real"] or {k: {"real": v["real"], "real_is": v["real_is"]}
                                              for k, v in result["metrics"].items()}
        payload["table"] = table(payload["results"], payload["real"])
        write_json(out, payload)
    log.info("written to %s\n%s", out, payload["table"])
    return payload


# --- part 2: openings at fixed seeds ---------------------------------------------------------------------------


def opening(abc: str, n: int = OPENING_NOTES) -> list[str] | None:
    """The first ``n`` notes of a tune's body as written (note and chord event texts: pitch, accidental,
    octave marks and written length, with a broken-rhythm mark after it); None for a tune that does not lex."""
    from abcgen.errors import AbcgenError
    from abcgen.notation import events as ev
    from abcgen.notation.tune import parse_tune

    try:
        events = parse_tune(abc).events()
    except AbcgenError:
        return None
    notes: list[str] = []
    for event in events:
        if event.kind in (ev.NOTE, ev.CHORD):
            notes.append(event.text)
        elif event.kind == ev.BROKEN and notes:  # a>f is not af: the mark belongs to the written rhythm
            notes[-1] += event.text
    return notes[:n]


def shared_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """How many first notes two openings have in common."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def opening_groups(model: Path) -> dict[str, list[dict[str, Any]]]:
    """The requests of each group, checked against the model's control vocabulary and trained conditions;
    the rhythm group's meter is the one its rhythms were most often written in, in that key."""
    from abcgen.generation.model_files import load_control_vocabulary, trained_conditions

    vocabulary, trained = load_control_vocabulary(model), trained_conditions(model)
    for needed in ("key", "rhythm"):
        if needed not in trained:
            raise SystemExit(f"{model} was not trained with the {needed!r} condition (trained: {', '.join(trained)}): "
                             "the openings compare requests that differ in key and in rhythm")
    known = {name: set(values) - {"other"} for name, values in vocabulary.values.items()}
    missing = [f"{name}={value!r}" for name, values in (("key", KEY_GROUP["keys"]), ("rhythm", RHYTHM_GROUP["rhythms"]),
                                                         ("meter", [KEY_GROUP["meter"]]), ("key", [RHYTHM_GROUP["key"]]),
                                                         ("rhythm", [KEY_GROUP["rhythm"]]))
               for value in values if value not in known.get(name, ())]
    if missing:
        raise SystemExit(f"{model}'s control vocabulary lacks {', '.join(missing)}: the openings' requests need them "
                         "(a model trained on Irish dance tunes, such as the quickstart's, has them)")
    key, rhythms = RHYTHM_GROUP["key"], RHYTHM_GROUP["rhythms"]
    meters = [m for m in known.get("meter", ()) if all(f"{key}|{m}|{r}" in vocabulary.combinations for r in rhythms)]
    meter = max(meters, key=lambda m: (min(vocabulary.combinations[f"{key}|{m}|{r}"] for r in rhythms), m),
                default=RHYTHM_GROUP["fallback_meter"])
    return {
        "key": [{"key": k, "meter": KEY_GROUP["meter"], "rhythm": KEY_GROUP["rhythm"], "bars": KEY_GROUP["bars"]}
                for k in KEY_GROUP["keys"]],
        "rhythm": [{"key": key, "meter": meter, "rhythm": r, "bars": RHYTHM_GROUP["bars"]} for r in rhythms],
    }


def group_outcome(openings: list[list[str] | None]) -> dict[str, Any]:
    """One seed, one group: do all openings differ pairwise; how many pairs differ; their common first notes."""
    if any(o is None or not o for o in openings):
        return {"readable": False}
    pairs = list(itertools.combinations(openings, 2))
    differ = [a != b for a, b in pairs]
    return {"readable": True, "all_differ": all(differ), "pairs_differ": sum(differ), "pairs": len(pairs),
            "mean_shared_prefix": round(sum(shared_prefix(a, b) for a, b in pairs) / len(pairs), 2)}


def run_openings(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import pipeline

    import abcgen  # noqa: F401  -- registers the abc-generation task

    settings = parse_settings(args.opening_settings, "--opening-settings")
    check_profiles(args.model, settings)
    groups = opening_groups(args.model)
    seeds = list(range(args.opening_seed_start, args.opening_seed_start + args.opening_seeds))
    pipe = pipeline("abc-generation", model=str(args.model), device="cpu", dtype=torch.float32)
    grammar = {"grammar": args.grammar} if args.grammar else {}
    payload: dict[str, Any] = {
        "description": f"at each fixed seed, requests that differ in one condition only (key group: a jig in three "
                       f"keys; rhythm group: a reel and a hornpipe in one key and meter); per seed and group, "
                       f"whether the first {OPENING_NOTES} notes of the body as written differ between every pair "
                       f"of requests. share_all_differ: the share of seeds (readable tunes) where they do; issue 14 "
                       f"asks >= {MUST_SHOW_SHARE:.0%}",
        "command": "python benchmarks/adherence.py " + " ".join(sys.argv[1:]),
        "model": str(args.model), "environment": env,
        "settings": {"seeds": seeds, "opening_notes": OPENING_NOTES, "grammar": args.grammar or "pipeline default",
                     "decoding": [decoding_options(*setting) for setting in settings]},
        "groups": groups, "results": {},
    }
    out = args.out_dir / "adherence_openings.json"
    for setting in settings:
        name, options = setting_name(*setting), decoding_options(*setting)
        started, tunes = time.perf_counter(), 0
        per_group: dict[str, Any] = {}
        for group, requests in groups.items():
            per_seed = []
            for seed in seeds:
                texts, notes, valid, warned = [], [], [], set()
                for request in requests:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        tune = pipe(**request, seed=seed, num_return_sequences=1, **options, **grammar)[0]
                    warned |= {str(w.message) for w in caught}
                    tunes += 1
                    texts.append(tune["abc"])
                    notes.append(opening(tune["abc"]))
                    valid.append(bool(tune["valid"]))
                per_seed.append({"seed": seed, **group_outcome(notes), "valid": valid,
                                 "openings": [" ".join(o) if o is not None else None for o in notes],
                                 **({"warnings": sorted(warned)} if warned else {})})
            readable = [s for s in per_seed if s["readable"]]
            share = sum(s["all_differ"] for s in readable) / len(readable) if readable else None
            per_group[group] = {
                "share_all_differ": None if share is None else round(share, 4),
                "meets_issue_14": None if share is None else share >= MUST_SHOW_SHARE,
                "pairs_differ_share": round(sum(s["pairs_differ"] for s in readable)
                                            / max(sum(s["pairs"] for s in readable), 1), 4) if readable else None,
                "mean_shared_prefix": round(sum(s["mean_shared_prefix"] for s in readable) / len(readable), 2)
                if readable else None,
                "seeds_readable": len(readable), "valid_share": round(
                    sum(sum(s["valid"]) for s in per_seed) / sum(len(s["valid"]) for s in per_seed), 4),
                "per_seed": per_seed,
            }
            log.info("openings %s, %s group: all differ in %s of %d seeds", name, group,
                     "–" if share is None else f"{share:.0%}", len(readable))
        seconds = time.perf_counter() - started
        payload["results"][name] = {**options, "seconds": round(seconds, 1),
                                    "tunes": tunes, "tunes_per_second": round(tunes / seconds, 3), "groups": per_group}
        payload["summary"] = {n: {g: r["groups"][g]["share_all_differ"] for g in groups}
                              for n, r in payload["results"].items()}
        write_json(out, payload)
    log.info("written to %s: %s", out, json.dumps(payload["summary"]))
    return payload


# --- part 3: scaling ------------------------------------------------------------------------------------------


def parse_size(text: str) -> dict[str, int]:
    """``"256x6"`` (hidden x layers; heads of 32 dimensions up to hidden 256, of 64 above) or ``"256x6x4"``
    (x heads) -> the scratch model's overrides; MLP width 3 x hidden, as many key/value heads as heads."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
        hidden, layers = parts[0], parts[1]
        heads = parts[2] if len(parts) == 3 else max(1, hidden // (32 if hidden <= 256 else 64))
        if len(parts) > 3:
            raise ValueError
    except (ValueError, IndexError):
        raise SystemExit(f"--sizes item {text!r}: give HIDDENxLAYERS or HIDDENxLAYERSxHEADS, e.g. 256x6") from None
    if min(hidden, layers, heads) < 1 or hidden % heads:
        raise SystemExit(f"--sizes item {text!r}: the heads ({heads}) must divide the hidden size ({hidden})")
    return {"hidden_size": hidden, "num_layers": layers, "num_heads": heads, "num_kv_heads": heads,
            "intermediate_size": 3 * hidden}


def config_value(config: str, section: str, key: str) -> Any:
    from abcgen.training.config import read_yaml

    return read_yaml(ROOT / config)[section][key]


def budget(args: argparse.Namespace, config: str, steps: int | None) -> tuple[int, int]:
    """(max_steps, warmup_steps) of a stage: the config's (or ``steps``) times ``--max-steps-scale``, at least
    2 steps, the warm-up scaled alike and kept below the step count."""
    full = steps or int(config_value(config, "optim", "max_steps"))
    scaled = max(2, round(full * args.max_steps_scale))
    warmup = round(int(config_value(config, "optim", "warmup_steps")) * scaled / full)
    return scaled, max(0, min(warmup, scaled - 1))


def count_parameters(folder: Path) -> dict[str, int]:
    """Parameters in a saved model folder's safetensors weights (the merged model; adapters are not at the
    top level), and how many of them are not the token embeddings / output head."""
    from safetensors import safe_open

    total = embedding = 0
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"no *.safetensors weights in {folder}: cannot count its parameters")
    for path in files:
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118  -- safe_open is not a mapping
                count = 1
                for dim in weights.get_slice(name).get_shape():
                    count *= dim
                total += count
                embedding += count if "embed_tokens" in name or "lm_head" in name else 0
    return {"total": total, "non_embedding": total - embedding}


def train_stage(args: argparse.Namespace, config: str, out: Path, overrides: list[str], steps: int | None,
                log_path: Path, *, reuse: bool) -> dict[str, Any]:
    """One ``train/finetune.py`` run as a subprocess (the command a user types); its summary and wall time.
    With ``reuse``, a stage already finished at the same step budget (``final/training_summary.json``) is kept."""
    summary_path = out / "final" / "training_summary.json"
    max_steps, warmup = budget(args, config, steps)
    if reuse and summary_path.is_file():
        reuse = json.loads(summary_path.read_text(encoding="utf-8")).get("steps") == max_steps
    command = [sys.executable, "train/finetune.py", "--config", config, *overrides,
               "--checkpoint.output_dir", str(out), "--checkpoint.overwrite", "true",
               "--optim.max_steps", str(max_steps), "--optim.warmup_steps", str(warmup),
               "--checkpoint.save_every", str(max_steps), "--logging.eval_every", str(max_steps),
               "--logging.num_samples", "0", "--logging.tensorboard", "false"]
    wall = None
    if not (reuse and summary_path.is_file()):
        log.info("train: %s (log: %s)", " ".join(command[1:]), log_path)
        started = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as handle:
            result = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, check=False,
                                    env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"training failed ({result.returncode}): {' '.join(command)}; see {log_path}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return {"command": " ".join(command[1:]), "max_steps": max_steps, "warmup_steps": warmup,
            "wall_seconds": None if wall is None else round(wall, 1), "train_seconds": summary.get("seconds"),
            "tokens_seen": summary.get("tokens_seen"), "steps": summary.get("steps"),
            "final_loss": summary.get("final_loss"), "validation": summary.get("eval") or None,
            "parameters_in_training": summary.get("parameters"), "log": str(log_path)}


def run_scaling(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    sizes = {text: parse_size(text) for text in args.sizes.split(",") if text.strip()}
    work = args.work / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "description": "base model from scratch (quickstart-base.yaml) + LoRA stage (quickstart-lora.yaml) per size, "
                       "then abcgen evaluate with plain constrained decoding (no guidance, theory prior or unison "
                       "penalty: the model's own adherence); parameters counted from the saved weights",
        "command": "python benchmarks/adherence.py " + " ".join(sys.argv[1:]),
        "environment": env,
        "settings": {"sizes": sizes, "base_config": BASE_CONFIG, "lora_config": LORA_CONFIG,
                     "base_corpus": str(args.base_corpus or config_value(BASE_CONFIG, "data", "corpus")),
                     "data": str(args.data), "tokenizer": str(args.tokenizer or config_value(BASE_CONFIG, "model",
                                                                                              "tokenizer")),
                     "max_steps_scale": args.max_steps_scale, "num_samples_per_seed": args.num_samples,
                     "seeds": args.seeds, "perplexity_tunes": args.perplexity_tunes},
        "results": {},
    }
    out = args.out_dir / "adherence_scaling.json"
    if args.merge and out.is_file():  # another training budget beside the rows already measured
        earlier = json.loads(out.read_text(encoding="utf-8"))
        payload["results"] = earlier.get("results", {})
        payload["commands"] = [*earlier.get("commands", [earlier.get("command")]), payload["command"]]
    for text, shape in sizes.items():
        folder = work / f"h{shape['hidden_size']}x{shape['num_layers']}x{shape['num_heads']}"
        folder.mkdir(parents=True, exist_ok=True)
        base_overrides = [item for k, v in shape.items() for item in (f"--model.scratch.{k}", str(v))]
        if args.base_corpus:
            base_overrides += ["--data.corpus", str(args.base_corpus)]
        if args.tokenizer:
            base_overrides += ["--model.tokenizer", str(args.tokenizer)]
        log.info("size %s: %s", text, shape)
        base = train_stage(args, BASE_CONFIG, folder / "base", base_overrides, args.base_steps, folder / "base.log",
                           reuse=args.reuse)
        lora = train_stage(args, LORA_CONFIG, folder / "lora",  # a new base is a new LoRA stage
                           ["--model.name_or_path", str(folder / "base" / "final"), "--data.corpus", str(args.data)],
                           args.lora_steps, folder / "lora.log", reuse=args.reuse and base["wall_seconds"] is None)
        report, wall = evaluate(folder / "lora" / "final", args.data, folder / "eval", args,
                                perplexity_tunes=args.perplexity_tunes)
        evaluation = collect(report)
        evaluation["wall_seconds"] = round(wall, 1)
        evaluation["report"] = str(folder / "eval" / "report.md")
        row_name = text if args.lora_steps is None else f"{text}, LoRA {lora['max_steps']} steps"
        payload["results"][row_name] = {
            "shape": shape, "parameters": count_parameters(folder / "base" / "final"),
            "parameters_after_lora": count_parameters(folder / "lora" / "final"),
            "base": base, "lora": lora,
            "heldout_perplexity": report.get("perplexity"),
            "evaluation": evaluation,
        }
        payload["table"] = scaling_table(payload["results"])
        write_json(out, payload)
        log.info("size %s done: %s", row_name, json.dumps({k: payload["results"][row_name][k] for k in ("parameters",)}))
    log.info("written to %s\n%s", out, payload.get("table", ""))
    return payload


def scaling_table(results: dict[str, Any]) -> str:
    head = ["size", "parameters", "non-embedding", "base tokens", "base s", "LoRA tokens", "LoRA s",
            "val. ppl (LoRA)", "test ppl", "key %", "rhythm %", "overlap", "valid %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def gen(row: dict[str, Any], name: str, digits: int) -> str:
        v = ((row["evaluation"]["metrics"].get(name) or {}).get("generated") or {}).get("value")
        return "–" if v is None else f"{v:.{digits}f}"

    def seconds(stage: dict[str, Any]) -> str:  # wall time of the subprocess; a reused stage: its training time
        return f"{stage['wall_seconds']:.0f}" if stage["wall_seconds"] is not None else f"{stage['train_seconds']} (reused)"

    for size, row in results.items():
        ppl = (row.get("heldout_perplexity") or {}).get("perplexity")
        val = (row["lora"].get("validation") or {}).get("eval_perplexity")
        lines.append(" | ".join([
            f"| {size}", f"{row['parameters']['total']:,}", f"{row['parameters']['non_embedding']:,}",
            f"{row['base']['tokens_seen']:,}", seconds(row["base"]), f"{row['lora']['tokens_seen']:,}", seconds(row["lora"]),
            "–" if val is None else f"{val:.2f}", "–" if ppl is None else f"{ppl:.2f}",
            gen(row, "key_adherence_ks", 1), gen(row, "rhythm_adherence", 1), gen(row, "overlap_mean", 3),
            gen(row, "strict_validity", 1)]) + " |")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", action="store_true", help="part 1: the decoding grid (adherence.json)")
    parser.add_argument("--openings", action="store_true", help="part 2: openings at fixed seeds "
                                                                "(adherence_openings.json)")
    parser.add_argument("--scaling", action="store_true", help="part 3: train and evaluate several model sizes "
                                                               "(adherence_scaling.json; slow)")
    parser.add_argument("--model", type=Path, default=ROOT / "runs/quickstart/lora/final", help="model folder "
                        "(grid, openings)")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/quickstart/corpus-finetune",
                        help="corpus the evaluations draw conditions and real tunes from (and the LoRA stage's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/abcgen-adherence"),
                        help="where report folders (grid/<setting>/, scaling/<size>/) and training runs go")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks/results", help="where the JSONs go")
    parser.add_argument("--num-samples", type=int, default=16, help="generated tunes per seed, per evaluation")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds 0..N-1, per evaluation")
    parser.add_argument("--perplexity-tunes", type=int, default=50, help="held-out tunes for the perplexity "
                        "diagnostic (first grid setting; each scaling model); 0 = skip")
    parser.add_argument("--grammar", choices=("legacy", "idiom"), default=None, help="default: the pipeline's")
    parser.add_argument("--no-abc2midi", action="store_true", help="skip the abc2midi check (faster)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 1),
                        help="torch threads here and OMP_NUM_THREADS of the training runs (default: $OMP_NUM_THREADS)")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--grid-settings", default="1:0,1:1,1:2,2:0,2:1,2:2",
                      help="GUIDANCE:PRIOR[:RHYTHM[:UNISON[:INTERVAL[:OPENING]]]] items (guidance scale, 1 = off; "
                           "then the theory prior, rhythm prior, unison penalty, interval prior and opening prior, "
                           "0 = off and when left out)")
    grid.add_argument("--collect-only", action="store_true", help="read the report folders of an earlier --grid run")
    openings = parser.add_argument_group("openings")
    openings.add_argument("--opening-settings", default="1:0,1:1,2:0,2:1",
                          help="items as --grid-settings: GUIDANCE:PRIOR[:RHYTHM[:UNISON[:INTERVAL[:OPENING]]]]")
    openings.add_argument("--opening-seeds", type=int, default=8, help="fixed seeds per request")
    openings.add_argument("--opening-seed-start", type=int, default=0, help="the first seed")
    scaling = parser.add_argument_group("scaling")
    scaling.add_argument("--sizes", default="128x4,256x6,512x6", help="HIDDENxLAYERS[xHEADS], comma-separated")
    scaling.add_argument("--base-steps", type=int, default=None, help=f"base stage steps (default: {BASE_CONFIG}'s)")
    scaling.add_argument("--lora-steps", type=int, default=None, help=f"LoRA stage steps (default: {LORA_CONFIG}'s)")
    scaling.add_argument("--max-steps-scale", type=float, default=1.0, help="multiply every step budget (smoke runs)")
    scaling.add_argument("--base-corpus", type=Path, default=None, help=f"default: {BASE_CONFIG}'s data.corpus")
    scaling.add_argument("--tokenizer", type=Path, default=None, help=f"default: {BASE_CONFIG}'s model.tokenizer")
    scaling.add_argument("--reuse", action="store_true", help="keep training stages already finished in --work")
    scaling.add_argument("--merge", action="store_true", help="add the rows to the --out-dir's adherence_scaling.json "
                         "instead of replacing it (a row with --lora-steps is named 'SIZE, LoRA N steps')")
    args = parser.parse_args(argv)
    if not (args.grid or args.openings or args.scaling):
        args.grid = args.openings = True
    if min(args.num_samples, args.seeds, args.opening_seeds, args.threads) < 1 or args.perplexity_tunes < 0:
        parser.error("--num-samples, --seeds, --opening-seeds and --threads must be at least 1, --perplexity-tunes >= 0")
    if args.max_steps_scale <= 0 or any(s is not None and s < 2 for s in (args.base_steps, args.lora_steps)):
        parser.error("--max-steps-scale must be above 0 and --base-steps/--lora-steps at least 2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if (args.grid and not args.collect_only) or args.openings:
        for path, what in ((args.model, "--model"), (args.data, "--data")):
            if not path.exists():
                parser.error(f"{what} {path} does not exist")
    import torch

    torch.set_num_threads(args.threads)
    args.work = args.work.resolve()
    env = environment(args.threads)
    if args.grid:
        run_grid(args, env)
    if args.openings:
        run_openings(args, env)
    if args.scaling:
        run_scaling(args, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
