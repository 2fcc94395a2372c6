"""``abcgen evaluate``: generate from a model folder, score against the held-out split, write the report.

    abcgen evaluate --model runs/quickstart/lora/final --data runs/quickstart/corpus-finetune \\
        --split test --num-samples 100 --seeds 3 --out runs/quickstart/eval

``--grammar legacy|idiom``, ``--guidance-scale S``, ``--theory-prior P`` and ``--rhythm-prior R`` (``GenerationSettings``)
choose the pipeline's grammar, classifier-free guidance and theory prior for every generated tune; the report's header
and ``decoding`` record them, so runs with and without compare side by side (``benchmarks/adherence.py``).

Steps: load the corpus and the model's pipeline -> for each seed, draw conditions from the split's
labels and generate (progress bar) -> draw as many real tunes from the split -> ``evaluate_texts`` (every
metric on both sets, bootstrap intervals, real-vs-real floor) -> held-out perplexity (a diagnostic) ->
``report.json``, ``report.md``, PNG plots, and the generated tunes as ``generated.abc``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from abcgen.atomic import atomic_output_dir, check_apart, check_output_dir
from abcgen.corpus.build import load_corpus
from abcgen.corpus.sources import read_text
from abcgen.errors import AbcgenError, ConfigError
from abcgen.evaluation.generate import (
    GenerationSettings,
    Request,
    draw_requests,
    eligible_rows,
    generate_for_requests,
)
from abcgen.evaluation.plots import write_plots
from abcgen.evaluation.report import SCHEMA_VERSION, EvaluationInputs, evaluate_texts, write_report
from abcgen.generation.arguments import default_unison_penalty
from abcgen.generation.gan import generate_abc
from abcgen.generation.guidance import check_guidance
from abcgen.generation.pipeline import TASK, load_control_vocabulary, trained_conditions
from abcgen.generation.sampling import check_sample
from abcgen.model_folder import check_model_folder, model_fingerprint, model_representation
from abcgen.models.gan import MusicGAN, is_gan_folder
from abcgen.notation.tune import split_tunes
from abcgen.training.data import build_examples
from abcgen.training.loss import token_sum_cross_entropy

log = logging.getLogger(__name__)


@dataclass
class EvaluationSettings:
    """What ``evaluate_model`` measures, beside how it samples (``GenerationSettings``)."""

    split: str = "test"  # the held-out split the real tunes and the conditions come from
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    num_real: int | None = None  # real tunes compared; None = as many as generated (capped by the split)
    perplexity_tunes: int = 200  # held-out tunes for the perplexity diagnostic; 0 = skip it
    n_resamples: int = 1000  # bootstrap resamples
    abc2midi: bool = True
    num_saved_samples: int = 8  # generated tunes kept in report.json (all are in generated.abc)
    seed: int = 0  # draws the real tunes and the bootstrap


class GanAsPipeline:
    """A ``MusicGAN`` folder behind the pipeline's call signature, so the GAN is evaluated by the same code.

    It honours key, meter, rhythm and bars; it writes ``L:1/8`` whatever unit length was asked (the rhythm
    is the same), and sampling settings (temperature, top-p, constrained) do not apply to it."""

    def __init__(self, folder: str | Path) -> None:
        self.model = MusicGAN.from_pretrained(folder)

    def __call__(self, *, key: str | None = None, meter: str | None = None, rhythm: str | None = None,
                 bars: int | None = None, num_return_sequences: int = 1, seed: int | None = 0,
                 **_not_applicable: Any) -> list[dict[str, Any]]:
        tunes = generate_abc(self.model, {"key": key, "meter": meter, "rhythm": rhythm}, num_return_sequences,
                             seed or 0, bars=bars)
        out = []
        for abc in tunes:
            check = check_sample(abc)
            out.append({"abc": abc, "valid": check.valid, "problems": check.problems})
        return out


def load_splits(corpus_dir: str | Path, split: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(held-out rows of ``split``, training rows) of a corpus folder; ConfigError for an unknown split."""
    corpus = load_corpus(corpus_dir)
    if split not in corpus:
        raise ConfigError(f"--split {split!r} is not a split of {corpus_dir}: it has {', '.join(corpus)}")
    train = [dict(row) for row in corpus["train"]] if "train" in corpus else []
    return [dict(row) for row in corpus[split]], train


def draw_real(held_out: list[dict[str, Any]], num_generated: int, settings: EvaluationSettings
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The real tunes compared (as many as generated unless ``num_real``) and the tunes whose two halves
    make the real-vs-real floor (twice as many), drawn with ``settings.seed``."""
    rng = random.Random(settings.seed)
    num_real = min(len(held_out), settings.num_real or num_generated)
    return rng.sample(held_out, num_real), rng.sample(held_out, min(len(held_out), 2 * num_real))


@torch.no_grad()
def heldout_perplexity(model: Any, tokenizer: Any, vocabulary: Any, rows: list[dict[str, Any]],
                       conditions: tuple[str, ...], max_length: int, representation: str = "abc") -> dict[str, float]:
    """Perplexity of the tune tokens of held-out tunes, each built exactly as a training example (control
    prefix of the trained conditions, no dropout); token-weighted over all tunes.

    With REMI text in the rows (the ``remi`` column), also per *note*: ``nll_per_note`` is the summed loss
    over the notes the tunes play (their ``Pitch_`` tokens: every track, repeats played out) and
    ``perplexity_per_note`` its exponential, a number an ABC and a REMI model of the same tunes share
    (their tokens are not comparable)."""
    examples, _ = build_examples(rows, tokenizer, vocabulary, max_length=max_length, loss_on="tune",
                                 conditions=conditions, condition_dropout=0.0, seed=0,
                                 representation=representation)
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    for example in examples:
        ids = torch.tensor([example.input_ids], device=model.device)
        labels = torch.tensor([example.labels], device=model.device)
        loss, count = token_sum_cross_entropy(model(input_ids=ids).logits, labels)
        total, tokens = total + float(loss), tokens + int(count)
    model.train(was_training)
    loss = total / max(tokens, 1)
    out = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens, "tunes": len(rows),
           "examples": len(examples)}
    notes = sum(str(row.get("remi") or "").count("Pitch_") for row in rows)
    if notes and all(row.get("remi") for row in rows):
        out["notes"] = notes
        out["nll_per_note"] = total / notes
        out["perplexity_per_note"] = math.exp(min(total / notes, 50.0))
    return out


def write_outputs(report: dict[str, Any], out: str | Path, *, overwrite: bool,
                  generated: list[str] | None = None) -> None:
    """The report folder, written whole or not at all: plots, ``generated.abc``, ``report.json`` and
    ``report.md`` go into a temporary sibling renamed to ``out`` (an earlier report stays until then)."""
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        report["plots"] = write_plots(report, tmp)
        if generated is not None:
            (tmp / "generated.abc").write_text("\n".join(t.rstrip() + "\n" for t in generated), encoding="utf-8")
        write_report(report, tmp)


def evaluate_model(model_dir: str | Path, corpus_dir: str | Path, out: str | Path,
                   settings: EvaluationSettings | None = None, *, progress: bool = True,
                   overwrite: bool = False) -> dict[str, Any]:
    """Generate from ``model_dir``, score against ``corpus_dir``'s held-out split, write the report to ``out``
    (a used ``out`` is refused before any work unless ``overwrite``; it is replaced only at the end)."""
    settings = settings or EvaluationSettings()
    started = time.perf_counter()
    model_dir, corpus_dir = Path(model_dir), Path(corpus_dir)
    if model_dir.is_dir() and model_representation(model_dir) == "remi":  # a model that writes MIDI
        from abcgen.evaluation.remi_run import evaluate_remi_model

        g = settings.generation
        return evaluate_remi_model(model_dir, corpus_dir, out, split=settings.split, num_samples=g.num_samples,
                                   seeds=g.seeds, max_bars=g.max_bars, perplexity_tunes=settings.perplexity_tunes,
                                   n_resamples=settings.n_resamples, constrained=g.constrained, overwrite=overwrite)
    settings.generation.check()
    is_gan = is_gan_folder(model_dir)
    if is_gan:
        _refuse_token_options_for_gan(model_dir, settings.generation)
    missing = [] if is_gan else check_model_folder(model_dir)
    if missing:
        raise ConfigError(f"model folder {str(model_dir)!r} cannot be evaluated: " + "; ".join(missing))
    held_out, train_rows = load_splits(corpus_dir, settings.split)
    check_output_dir(out, overwrite=overwrite)  # inputs, then the output: all before the slow generation
    check_apart(out, [("--model", model_dir), ("--data", corpus_dir)])
    vocabulary = load_control_vocabulary(model_dir)
    trained, pipe = _load_generator(model_dir, is_gan)
    gen_settings = settings.generation
    if not is_gan:  # the model's part of the guidance check (a MusicVAE cannot be guided), before generating
        check_guidance(pipe.model, gen_settings.guidance_scale)
        if gen_settings.theory_prior is None:  # the pipeline's default for this model, recorded in the report
            gen_settings.theory_prior = pipe.default_theory_prior(gen_settings.constrained)
        if gen_settings.rhythm_prior is None:
            gen_settings.rhythm_prior = pipe.default_rhythm_prior(gen_settings.constrained)
        if gen_settings.interval_prior is None:
            gen_settings.interval_prior = pipe.default_interval_prior(gen_settings.constrained)
        if gen_settings.opening_prior is None:
            gen_settings.opening_prior = pipe.default_opening_prior(gen_settings.constrained)
        if gen_settings.unison_penalty is None and not is_gan:
            gen_settings.unison_penalty = default_unison_penalty(gen_settings.constrained)

    generated = _generate_all(pipe, held_out, vocabulary, trained, gen_settings, progress=progress)
    texts, requests = generated.texts, generated.requests
    generation_seconds = time.perf_counter() - started

    real_rows, floor_rows = draw_real(held_out, len(texts), settings)
    num_real = len(real_rows)
    scored = evaluate_texts(
        EvaluationInputs(
            generated=texts, real=[r["abc"] for r in real_rows], train=[r["abc"] for r in train_rows],
            requests=[r.conditions for r in requests], seeds=generated.seeds, real_labels=real_rows,
            train_labels=train_rows, floor_real=[r["abc"] for r in floor_rows],
        ),
        n_resamples=settings.n_resamples, seed=settings.seed, abc2midi=settings.abc2midi, progress=progress,
    )
    perplexity = _perplexity_diagnostic(pipe, is_gan, vocabulary, held_out, trained, settings)
    report = {
        "schema_version": SCHEMA_VERSION,
        "model": {"path": str(model_dir), "fingerprint": model_fingerprint(model_dir),
                  "trained_conditions": list(trained)},
        "data": {"corpus": str(corpus_dir), "split": settings.split, "num_real": num_real,
                 "num_train": len(train_rows), "num_split": len(held_out),
                 "num_eligible_for_conditions": len(eligible_rows(held_out, vocabulary, trained))},
        # a GAN samples a latent, not tokens: temperature, top-p and constrained decoding do not apply
        "decoding": {**gen_settings.as_dict(), "family": "gan", "temperature": None, "top_p": None,
                     "constrained": None, "max_new_tokens": None, "grammar": None, "guidance_scale": None,
                     "theory_prior": None, "rhythm_prior": None, "unison_penalty": None,
                     "interval_prior": None, "opening_prior": None}
        if is_gan else gen_settings.as_dict(),
        "conditions_skipped": _skipped_conditions(requests),
        **scored,
        "perplexity": perplexity,
        "samples": [{"abc": r["abc"], "conditions": r["request"].conditions, "valid": r["valid"]}
                    for r in generated.results[: settings.num_saved_samples]],
        "seconds": {"generation": round(generation_seconds, 1),
                    "total": round(time.perf_counter() - started, 1)},
        "tunes_per_second": round(len(texts) / max(generation_seconds, 1e-9), 3),
    }
    write_outputs(report, out, overwrite=overwrite, generated=texts)
    log.info("evaluation of %s written to %s (%.0f s)", model_dir, out, time.perf_counter() - started)
    return report


def _refuse_token_options_for_gan(model_dir: Path, gen_settings: GenerationSettings) -> None:
    """A MusicGAN samples a latent, not tokens: a grammar or guidance asked for it is refused, not ignored."""
    for flag, value, asked in (("--grammar", gen_settings.grammar, gen_settings.grammar is not None),
                               ("--guidance-scale", f"{gen_settings.guidance_scale:g}", gen_settings.guided),
                               ("--theory-prior", f"{gen_settings.theory_prior or 0:g}", bool(gen_settings.theory_prior)),
                               ("--rhythm-prior", f"{gen_settings.rhythm_prior or 0:g}", bool(gen_settings.rhythm_prior)),
                               ("--unison-penalty", f"{gen_settings.unison_penalty or 0:g}",
                                bool(gen_settings.unison_penalty)),
                               ("--interval-prior", f"{gen_settings.interval_prior or 0:g}",
                                bool(gen_settings.interval_prior)),
                               ("--opening-prior", f"{gen_settings.opening_prior or 0:g}",
                                bool(gen_settings.opening_prior))):
        if asked:
            raise ConfigError(f"{model_dir} is a MusicGAN, which samples no tokens (no grammar, no control tokens "
                              f"to guide): leave out {flag} {value}")


def _load_generator(model_dir: Path, is_gan: bool) -> tuple[tuple[str, ...], Any]:
    """The conditions the model was trained with, and what generates from it: the ``abc-generation``
    pipeline, or a GAN behind the pipeline's call signature (``GanAsPipeline``)."""
    from transformers import pipeline


    if is_gan:
        return ("key", "meter", "rhythm"), GanAsPipeline(model_dir)  # the GAN's condition embeddings
    return trained_conditions(model_dir), pipeline(TASK, model=str(model_dir))


@dataclass
class _Generated:
    """Every generated tune, seed after seed: its text, what it was asked for, its seed, the full result."""

    texts: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


def _generate_all(pipe: Any, held_out: list[dict[str, Any]], vocabulary: Any, trained: tuple[str, ...],
                  gen_settings: GenerationSettings, *, progress: bool) -> _Generated:
    """For each sampling seed: draw conditions from the held-out split's labels and generate a tune for each."""
    generated = _Generated()
    for seed in gen_settings.seeds:
        drawn = draw_requests(held_out, vocabulary, trained, gen_settings.num_samples, seed,
                              max_bars=gen_settings.max_bars, voices_from_data=gen_settings.voices_from_data,
                              guided=gen_settings.guided)
        for result in generate_for_requests(pipe, drawn, gen_settings, seed, progress=progress):
            generated.results.append(result)
            generated.texts.append(result["abc"])
            generated.requests.append(result["request"])
            generated.seeds.append(seed)
    return generated


def _perplexity_diagnostic(pipe: Any, is_gan: bool, vocabulary: Any, held_out: list[dict[str, Any]],
                           trained: tuple[str, ...], settings: EvaluationSettings) -> dict[str, float] | None:
    """Held-out perplexity of the first ``settings.perplexity_tunes`` tunes (a diagnostic, not a quality
    score); ``None`` when skipped or when the model has no token likelihood."""
    # A GAN assigns no likelihood to tokens; a VAE's decoder without the tune's own latent scores a random
    # prior draw, which is not its likelihood (its reconstruction is in training_summary.json).
    is_vae = not is_gan and getattr(pipe.model.config, "model_type", "") == "abcgen_vae"
    if not settings.perplexity_tunes or is_gan or is_vae:
        return None
    model = pipe.model
    max_length = int(getattr(model.config, "max_position_embeddings", 1024) or 1024)
    return heldout_perplexity(model, pipe.tokenizer, vocabulary, held_out[: settings.perplexity_tunes], trained,
                              min(max_length, 1024))


def _skipped_conditions(requests: list[Request]) -> dict[str, int]:
    """How often each condition was left out of a request (``Request.skipped``), by name."""
    skipped: dict[str, int] = {}
    for request in requests:
        for name in request.skipped:
            skipped[name] = skipped.get(name, 0) + 1
    return skipped


def evaluate_abc_files(paths: list[Path], corpus_dir: str | Path, out: str | Path,
                       settings: EvaluationSettings | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Score tunes written by any generator (ABC files, one or many tunes each) against a corpus split,
    without a model: every metric except adherence (nothing records what was asked) and perplexity."""
    settings = settings or EvaluationSettings()
    texts: list[str] = []
    for path in paths:
        text, reason = read_text(Path(path))
        if text is None:
            raise AbcgenError(f"cannot read {path}: {reason}")
        texts += [t.text for t in split_tunes(text)]
    if not texts:
        raise AbcgenError(f"no tunes (X: or K: lines) in {', '.join(map(str, paths))}")
    held_out, train_rows = load_splits(corpus_dir, settings.split)
    check_output_dir(out, overwrite=overwrite)
    check_apart(out, [("--data", corpus_dir), *(("--abc", path) for path in paths)])
    real_rows, floor_rows = draw_real(held_out, len(texts), settings)
    num_real = len(real_rows)
    scored = evaluate_texts(EvaluationInputs(generated=texts, real=[r["abc"] for r in real_rows],
                                             train=[r["abc"] for r in train_rows],
                                             floor_real=[r["abc"] for r in floor_rows]),
                            n_resamples=settings.n_resamples, seed=settings.seed, abc2midi=settings.abc2midi)
    report = {"schema_version": SCHEMA_VERSION, "model": {"path": None, "files": [str(p) for p in paths]},
              "data": {"corpus": str(corpus_dir), "split": settings.split, "num_real": num_real,
                       "num_train": len(train_rows), "num_split": len(held_out)},
              "decoding": None, **scored, "perplexity": None, "samples": []}
    write_outputs(report, out, overwrite=overwrite)
    return report
