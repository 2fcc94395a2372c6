"""``abcgen evaluate`` for a REMI model: generate MIDI for conditions drawn from the held-out split and score
it against the real pieces of that split, note by note (``abcgen.evaluation.midi``), with the same tiers as
the ABC report (validity, overlap, descriptors, copies, adherence) and the held-out perplexity per note.

A request is drawn from a held-out row, as for ABC: its key (and the other trained conditions), its meter,
its instruments (the programs of its REMI text) and its number of bars (capped at ``max_bars``). The real
pieces are the held-out rows' own REMI decoded to MIDI; the training rows' are the reference for copies.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abcgen.atomic import atomic_output_dir, check_apart, check_output_dir
from abcgen.errors import ConfigError, ConversionError
from abcgen.evaluation.midi import evaluate_midi, format_midi_report
from abcgen.generation.midi_pipeline import load_midi_pipeline, remi_bars, remi_midi_bytes, remi_programs
from abcgen.generation.model_files import load_control_vocabulary, trained_conditions

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_TRAIN_FOR_COPIES = 3000  # training pieces the copy search compares with (a seeded sample beyond that)


def remi_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with REMI text in one meter (what a request can be drawn from and a real piece decoded from)."""
    out = []
    for row in rows:
        text = str(row.get("remi") or "")
        meters = {t for t in text.split() if t.startswith("TimeSig_")}
        if text and len(meters) == 1:
            out.append(row)
    return out


def remi_splits(corpus_dir: str | Path, split: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(held-out rows, training rows) of a corpus that have REMI text in one meter; ``ConfigError`` when the
    held-out split has none (a corpus built without ``--remi``)."""
    from abcgen.evaluation.run import load_splits

    held_out, train = load_splits(corpus_dir, split)
    held_out, train = remi_rows(held_out), remi_rows(train)
    if not held_out:
        raise ConfigError(f"split {split!r} of {corpus_dir} has no REMI text: build the corpus with "
                          "`abcgen data build --remi`")
    return held_out, train


def remi_request(row: dict[str, Any], trained: Sequence[str], max_bars: int, vocabulary: Any = None) -> dict[str, Any]:
    """What a held-out row asks of the pipeline: its trained conditions (those whose label the model's
    ``vocabulary`` has; a rare label folded into "other" is left out), meter, programs and bars."""
    text = str(row["remi"])
    meter = next(t[8:] for t in text.split() if t.startswith("TimeSig_"))

    def known(name: str) -> bool:
        value = row.get(name)
        return bool(value) and value != "other" and (vocabulary is None or value in vocabulary.values.get(name, ()))

    request: dict[str, Any] = {name: row[name] for name in trained
                               if name not in ("meter", "bars", "unit_length", "form") and known(name)}
    request.update(meter=meter, programs=remi_programs(text), bars=min(remi_bars(text), max_bars))
    return request


def midi_of_rows(rows: Sequence[dict[str, Any]]) -> list[bytes]:
    """The MIDI of rows' REMI text (rows that do not decode are left out and logged)."""
    out = []
    for row in rows:
        try:
            out.append(remi_midi_bytes(str(row["remi"])))
        except ConversionError as exc:
            log.warning("real piece %r left out: %s", row.get("title"), exc)
    return out


def generate_remi(pipe: Any, rows: Sequence[dict[str, Any]], trained: Sequence[str], *, num: int, seed: int,
                  max_bars: int, constrained: bool = True, temperature: float = 1.0,
                  top_p: float = 0.95) -> list[dict[str, Any]]:
    """``num`` pieces for requests drawn (with ``seed``) from ``rows``; each result with its ``request``."""
    rng = random.Random(seed)
    results = []
    for i in range(num):
        request = remi_request(rng.choice(list(rows)), trained, max_bars, pipe.vocabulary)
        piece = pipe(**request, seed=seed * 100_003 + i, constrained=constrained, temperature=temperature,
                     top_p=top_p)[0]
        results.append({**piece, "request": request})
    return results


def evaluate_remi_model(model_dir: str | Path, corpus_dir: str | Path, out: str | Path, *, split: str = "test",
                        num_samples: int = 100, seeds: Sequence[int] = (0, 1, 2), max_bars: int = 16,
                        perplexity_tunes: int = 200, n_resamples: int = 1000, constrained: bool = True,
                        overwrite: bool = False) -> dict[str, Any]:
    """Generate from a REMI model and score against ``corpus_dir``'s ``split``; writes ``report.json``,
    ``report.md`` and ``midi/piece_NNN.mid`` to ``out`` (whole or not at all); returns the report."""
    from abcgen.evaluation.run import heldout_perplexity

    started = time.perf_counter()
    held_out, train = remi_splits(corpus_dir, split)
    check_output_dir(out, overwrite=overwrite)
    check_apart(out, [("--model", model_dir), ("--data", corpus_dir)])
    pipe = load_midi_pipeline(model_dir)
    trained = trained_conditions(model_dir)
    results = []
    for seed in seeds:
        results += generate_remi(pipe, held_out, trained, num=num_samples, seed=seed, max_bars=max_bars,
                                 constrained=constrained)
    generation_seconds = time.perf_counter() - started
    rng = random.Random(0)
    real_rows = rng.sample(held_out, min(len(held_out), len(results)))
    train_sample = rng.sample(train, min(len(train), MAX_TRAIN_FOR_COPIES))
    requests = [{**r["request"], "programs": ",".join(map(str, r["request"]["programs"]))} for r in results]
    # the real pieces' own key labels: REMI's MIDI carries no key signature to read the ceiling from
    real_asked = [{"key": row["key"], **{k: v for k, v in remi_request(row, (), max_bars).items() if k == "meter"}}
                  for row in real_rows]
    scored = evaluate_midi([r["midi"] for r in results], requests, midi_of_rows(real_rows),
                           train=midi_of_rows(train_sample), real_requests=real_asked, n_resamples=n_resamples)
    perplexity = heldout_perplexity(pipe.model, pipe.tokenizer, load_control_vocabulary(model_dir),
                                    held_out[:perplexity_tunes], tuple(trained),
                                    min(int(getattr(pipe.model.config, "max_position_embeddings", 1024)), 4096),
                                    representation="remi") if perplexity_tunes else None
    report = {
        "schema_version": SCHEMA_VERSION,
        "representation": "remi",
        "model": {"path": str(model_dir), "trained_conditions": list(trained)},
        "data": {"corpus": str(corpus_dir), "split": split, "num_real": len(real_rows), "num_train": len(train)},
        "decoding": {"num_samples": num_samples, "seeds": list(seeds), "max_bars": max_bars,
                     "constrained": constrained},
        **scored,
        "valid": sum(r["valid"] for r in results),
        "num_generated": len(results),
        "tokens_per_piece": sum(r["num_tokens"] for r in results) / len(results),
        "perplexity": perplexity,
        "seconds": {"generation": round(generation_seconds, 1), "total": round(time.perf_counter() - started, 1)},
        "pieces_per_second": round(len(results) / max(generation_seconds, 1e-9), 3),
        "samples": [{"remi": r["remi"], "request": r["request"], "valid": r["valid"]} for r in results[:8]],
    }
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "midi").mkdir()
        for i, result in enumerate(results):
            if result["midi"]:
                (tmp / "midi" / f"piece_{i:03d}.mid").write_bytes(result["midi"])
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(f"# Evaluation of {model_dir} (REMI)\n\n{format_midi_report(scored)}\n",
                                       encoding="utf-8")
    log.info("evaluation of %s written to %s (%.0f s)", model_dir, out, time.perf_counter() - started)
    return report


def evaluate_midi_files(paths: Sequence[str | Path], corpus_dir: str | Path, out: str | Path, *,
                        split: str = "test", n_resamples: int = 1000, overwrite: bool = False) -> dict[str, Any]:
    """Score MIDI files written by any generator against the held-out REMI pieces of ``corpus_dir``: every
    tier except adherence (nothing records what was asked) and perplexity. ``report.json`` and ``report.md``
    in ``out``, written whole or not at all."""
    files = [Path(p) for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ConfigError(f"--midi {missing[0]!r} is not a file; give .mid files")
    held_out, train = remi_splits(corpus_dir, split)
    check_output_dir(out, overwrite=overwrite)
    check_apart(out, [("--data", corpus_dir), *(("--midi", p) for p in files)])
    rng = random.Random(0)
    real_rows = rng.sample(held_out, min(len(held_out), len(files)))
    train_sample = rng.sample(train, min(len(train), MAX_TRAIN_FOR_COPIES))
    scored = evaluate_midi([p.read_bytes() for p in files], None, midi_of_rows(real_rows),
                           train=midi_of_rows(train_sample), n_resamples=n_resamples)
    report = {"schema_version": SCHEMA_VERSION, "representation": "midi",
              "model": {"path": None, "files": [str(p) for p in files]},
              "data": {"corpus": str(corpus_dir), "split": split, "num_real": len(real_rows), "num_train": len(train)},
              **scored, "perplexity": None}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(f"# Evaluation of {len(files)} MIDI files\n\n{format_midi_report(scored)}\n",
                                       encoding="utf-8")
    return report


__all__ = ["evaluate_midi_files", "evaluate_remi_model", "generate_remi", "midi_of_rows", "remi_request", "remi_rows"]
