"""The ``abcgen`` command line.

    abcgen data build --source music21:all --out corpus/
    abcgen tokenizer train-base --data corpus/ --out base-tokenizer/   # offline: a byte-level BPE base
    abcgen tokenizer build --base MODEL_OR_PATH --data corpus/ --out tokenizer/
    abcgen check TUNE.abc          # normalise, lex and bar-check tunes; non-zero exit on a broken tune
    abcgen publish --model DIR --repo-id OWNER/NAME --report REPORT_DIR   # or --local-dir DIR: no push

Every command logs to stderr and exits with status 2 on bad input, with the reason on one line (its
traceback only with -v). A command that writes a folder (--out, --local-dir) checks it before the work,
refuses a used one without --overwrite, and writes the new one beside it, swapped in only when complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from abcgen.errors import AbcgenError, ConfigError

log = logging.getLogger("abcgen")


def _shifts(text: str) -> tuple[int, ...]:
    """``"-2,2"`` -> (-2, 2); ``"all"`` -> every shift -5..6 except 0."""
    if text == "all":
        return tuple(s for s in range(-5, 7) if s)
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--transpose-augment {text!r}: give semitones like -2,2 or 'all'") from exc


def _whole_number(minimum: int, example: str):  # noqa: ANN202
    """An argparse type: a whole number of at least ``minimum`` (``--num 0`` is a mistake, not a request)."""
    floor = "above 0" if minimum == 1 else f"{minimum} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give one {floor}, e.g. {example}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {floor}")
        return value

    return parse


_positive_int = _whole_number(1, "4")
_non_negative_int = _whole_number(0, "0")


def _bounded_float(accept, must: str, give: str):  # noqa: ANN001, ANN202
    """An argparse type: a number that ``accept`` takes; the messages say what it ``must`` be and what to give."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: {give}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {must}")
        return value

    return parse


# a share (--validation-fraction 0.05); a temperature or timeout; nucleus sampling's probability mass
_fraction = _bounded_float(lambda v: 0 <= v < 1, "at least 0 and below 1, e.g. 0.05", "give a share like 0.05")
_positive_float = _bounded_float(lambda v: 0 < v < float("inf"), "a finite number above 0", "give one above 0")
_top_p = _bounded_float(lambda v: 0 < v <= 1, "above 0 and at most 1, e.g. 0.95",
                        "give a probability in (0, 1], e.g. 0.95")
_theory_prior = _bounded_float(lambda v: 0 <= v < float("inf"), "a finite number of 0 or more, e.g. 1",
                               "give one of 0 or more, e.g. 1 (0 = off)")
_UNISON_HELP = ("logits taken off a note that repeats the melody note before it (small models repeat notes "
                "far more than folk tunes do): 0 = off; default: the pipeline's (abcgen.generation.arguments."
                "DEFAULT_UNISON_PENALTY); a grammar rule, not with --unconstrained")
_RHYTHM_HELP = ("weigh every note by how much more often the training corpus's tunes of the requested --rhythm "
                "write its length (as a share of the bar, after the length before) than its tunes at large, and a "
                "broken-rhythm sign by how much more often they swing (theory_profiles.json; nothing without a "
                "rhythm): 0 = off, 1 = as the corpus; default: the pipeline's (abcgen.generation.arguments."
                "DEFAULT_RHYTHM_PRIOR where the model has length profiles); a grammar rule, not with --unconstrained")
_INTERVAL_HELP = ("weigh every melodic step (in steps of the staff, after the step before it) by how much more "
                  "often the training corpus's tunes of the requested --rhythm take it than its tunes at large "
                  "(theory_profiles.json; nothing without a rhythm): 0 = off, 1 = as the corpus; default: the "
                  "pipeline's (abcgen.generation.arguments.DEFAULT_INTERVAL_PRIOR where the model has interval "
                  "profiles); a grammar rule, not with --unconstrained")
_OPENING_HELP = ("in the pickup and the first bar, weigh every note by how much more of the training corpus's "
                 "openings in the requested mode its scale degree takes than of its whole tunes (real tunes state "
                 "their key there; theory_profiles.json): 0 = off, 1 = as the corpus; default: the pipeline's "
                 "(abcgen.generation.arguments.DEFAULT_OPENING_PRIOR where the model has opening profiles); a "
                 "grammar rule, not with --unconstrained")
_guidance_scale = _bounded_float(lambda v: 0 <= v < float("inf"), "a finite number of 0 or more, e.g. 2",
                                 "give one of 0 or more, e.g. 2 (1 = no guidance)")


def _data_profiles(args: argparse.Namespace) -> int:
    from abcgen.corpus.build import load_corpus
    from abcgen.grammar.melody import measure_profiles
    from abcgen.model_profiles import PROFILES_FILE, write_model_profiles

    if not args.model.is_dir():
        raise ConfigError(f"--model {str(args.model)!r} is not a folder: give the model folder (train/finetune.py's "
                          "final/)")
    target = args.model / PROFILES_FILE
    if target.exists() and not args.overwrite:
        raise ConfigError(f"{target} exists: add --overwrite to replace it")
    corpus = load_corpus(args.data)
    if "train" not in corpus:
        raise ConfigError(f"--data {str(args.data)!r} has no train split: give the corpus the model was trained on")
    train = corpus["train"]
    profiles = measure_profiles(list(train["abc"]), list(train["rhythm"]) if "rhythm" in train.column_names else None)
    modes, rhythms = profiles["modes"], profiles["rhythms"]
    write_model_profiles(args.model, **profiles, corpus=str(args.data))
    print(f"theory profiles of {len(modes)} modes ({sum(e['tunes'] for e in modes.values())} tunes), "
          f"{len(rhythms)} rhythms, {len(profiles['intervals'])} interval profiles and the openings of "
          f"{len(profiles['openings'])} modes written to {target}")
    return 0


def _data_build(args: argparse.Namespace) -> int:
    from abcgen.corpus.build import BuildConfig, build_corpus, format_report

    config = BuildConfig(
        sources=args.source,
        out=args.out,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        remi=args.remi,
        transpose_augment=args.transpose_augment,
        bar_check=args.bar_check,
        workers=args.workers,
        min_label_count=args.min_label_count,
    )
    report = build_corpus(config, progress=not args.quiet, overwrite=args.overwrite)
    print(format_report(report))
    print(f"corpus written to {config.out} (report: {config.out / 'report.json'})")
    return 0


def _tokenizer_build(args: argparse.Namespace) -> int:
    from abcgen.tokenization.build import tokenizer_build_command

    report = tokenizer_build_command(
        args.base, args.data, args.out, units_spec=args.units, allow_round_trip_failures=args.allow_round_trip_failures,
        overwrite=args.overwrite,
    )
    rows = [(split, report[split]) for split in ("train", "validation", "test") if split in report]
    print(f"{'split':<11} {'tunes':>6} {'music tok/tune':>15} {'base tok/tune':>14} {'round-trip fails':>17}")
    for split, r in rows:
        print(f"{split:<11} {r['num_tunes']:>6} {r['music']['mean']:>15.1f} {r['base']['mean']:>14.1f} "
              f"{r['num_round_trip_failures']:>17}")
    print(f"tokenizer written to {args.out}")
    return 0


def _tokenizer_train_base(args: argparse.Namespace) -> int:
    from abcgen.tokenization.base_bpe import train_base_from_corpus

    tokenizer = train_base_from_corpus(args.data, args.out, vocab_size=args.vocab_size, overwrite=args.overwrite)
    print(f"byte-level BPE base tokenizer of {len(tokenizer)} tokens written to {args.out}")
    return 0


def _conditions(text: str) -> dict[str, str]:
    """``"rhythm=jig;key=D major"`` -> {"rhythm": "jig", "key": "D major"}."""
    pairs = [p for p in text.split(";") if p.strip()]
    if any("=" not in p for p in pairs):
        raise argparse.ArgumentTypeError(f"--conditions {text!r}: give name=value pairs separated by ';'")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def _sample(args: argparse.Namespace) -> int:
    import torch

    from abcgen.generation.sampling import sample_to_folder

    torch.set_num_threads(max(1, args.threads))
    summary = sample_to_folder(args.model, args.out, args.conditions, num=args.num, max_new_tokens=args.max_new_tokens,
                               seed=args.seed, midi=args.midi, overwrite=args.overwrite)
    print(f"{summary['passed_bar_check']} of {summary['num']} sampled tunes pass the bar check; written to {args.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from abcgen.models.gan import is_gan_folder

    if is_gan_folder(args.model):  # a piano-roll MusicGAN (model.architecture=gan): no tokenizer, no pipeline
        from abcgen.generation.gan import run_generate_command

        if args.guidance_scale != 1:  # refused, not ignored, as run_generate_command refuses what a GAN cannot do
            raise ConfigError(f"{args.model} is a MusicGAN, which has no control tokens to guide: leave out "
                              f"--guidance-scale {args.guidance_scale:g}")
        for flag, value in (("--theory-prior", args.theory_prior), ("--rhythm-prior", args.rhythm_prior),
                            ("--unison-penalty", args.unison_penalty), ("--interval-prior", args.interval_prior),
                            ("--opening-prior", args.opening_prior), ("--title", args.title),
                            ("--endings", args.endings)):
            if value:
                raise ConfigError(f"{args.model} is a MusicGAN, which samples no ABC tokens: leave out {flag}")

        return run_generate_command(args)
    from abcgen.model_folder import model_representation

    if Path(args.model).is_dir() and model_representation(args.model) == "remi":
        return _generate_midi(args)
    if args.melody or args.programs or args.bpm is not None:
        raise ConfigError(f"--melody, --programs and --bpm are for REMI models (they write MIDI); {args.model} writes "
                          "ABC: leave them out")
    import torch

    from abcgen.generation.arguments import parse_idioms_option
    from abcgen.generation.pipeline import generate_to_folder

    torch.set_num_threads(max(1, args.threads))
    from abcgen.controls import conditions as registered_conditions

    conditions = {c.name: getattr(args, c.name) for c in registered_conditions()}  # one flag each
    summary = generate_to_folder(
        args.model, args.out, args.prompt, render=args.render, overwrite=args.overwrite,
        **{k: v for k, v in conditions.items() if v is not None}, num_return_sequences=args.num,
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed,
        constrained=not args.unconstrained, pickup=args.pickup, voices=args.voices, grammar=args.grammar,
        cadence=args.cadence, idioms=parse_idioms_option(args.idioms), guidance_scale=args.guidance_scale,
        theory_prior=args.theory_prior, rhythm_prior=args.rhythm_prior, unison_penalty=args.unison_penalty,
        interval_prior=args.interval_prior, opening_prior=args.opening_prior, title=args.title,
        endings=args.endings)
    print(f"{summary['valid']} of {summary['num']} tunes valid; written to {args.out}")
    return 0


def _generate_midi(args: argparse.Namespace) -> int:
    """``abcgen generate`` for a REMI model (``data.representation: remi``): MIDI pieces, piano rolls, audio."""
    import torch

    from abcgen.controls import conditions as registered_conditions
    from abcgen.generation.midi_pipeline import generate_midi_to_folder

    for flag, value in (("--pickup", args.pickup), ("--voices", args.voices != 1), ("--cadence", args.cadence),
                        ("--idioms", args.idioms), ("--theory-prior", args.theory_prior),
                        ("--rhythm-prior", args.rhythm_prior), ("--unison-penalty", args.unison_penalty),
                        ("--interval-prior", args.interval_prior), ("--opening-prior", args.opening_prior),
                        ("--title", args.title),
                        ("--endings", args.endings)):
        if value:
            raise ConfigError(f"{args.model} is a REMI model (it writes MIDI): {flag} is an ABC option; leave it "
                              "out (--programs names the instruments, --melody a melody to accompany)")
    programs = None
    if args.programs:
        try:
            programs = [int(p) for p in args.programs.split(",")]
        except ValueError:
            raise ConfigError(f"--programs {args.programs!r}: give General MIDI programs separated by commas, "
                              "e.g. 0,32,40") from None
    render = tuple(fmt for fmt in args.render.split(",") if fmt) if args.render else ("png",)
    torch.set_num_threads(max(1, args.threads))
    conditions = {c.name: getattr(args, c.name) for c in registered_conditions()}
    for path in (args.prompt, args.melody):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{str(path)!r} is not a file: give a .mid or an .abc file")

    def read(path: Path | None) -> bytes | str | None:
        if path is None:
            return None
        return path.read_bytes() if path.suffix.lower() in (".mid", ".midi") else path.read_text(encoding="utf-8")

    summary = generate_midi_to_folder(
        args.model, args.out, read(args.prompt), melody=read(args.melody), render=render, overwrite=args.overwrite,
        **{k: v for k, v in conditions.items() if v is not None}, programs=programs, bpm=args.bpm,
        num_return_sequences=args.num, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, seed=args.seed, constrained=not args.unconstrained,
        guidance_scale=args.guidance_scale)
    print(f"{summary['valid']} of {summary['num']} pieces valid; written to {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from abcgen.corpus.sources import read_text
    from abcgen.notation.checks import check_tune
    from abcgen.notation.tune import normalise_tune, split_tunes

    for path in args.files:  # every path named exists before any is checked: a typo is not a broken tune
        if not Path(path).exists():
            raise ConfigError(f"{path!r} does not exist: give ABC files to check")
        if Path(path).is_dir():
            raise ConfigError(f"{path!r} is a folder: give the ABC files in it, e.g. {str(Path(path) / '*.abc')!r}")
    bad = 0
    results = []
    for path in args.files:
        text, reason = read_text(Path(path))  # UTF-8, else Latin-1; None for empty/binary/missing files
        if text is None:
            results.append({"file": path, "tune_index": None, "x": None, "problems": [reason]})
            bad += 1
            continue
        for raw in split_tunes(text):
            entry = {"file": path, "tune_index": raw.index, "x": raw.x, "problems": []}
            try:
                check = check_tune(normalise_tune(raw.text))
                entry["problems"] = check.problems
                entry["num_bars"] = check.report.num_bars
            except AbcgenError as exc:
                entry["problems"] = [str(exc)]
            bad += bool(entry["problems"])
            results.append(entry)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for entry in results:
            status = "ok" if not entry["problems"] else "; ".join(entry["problems"])
            print(f"{entry['file']} tune {entry['tune_index']} (X:{entry['x']}): {status}")
    return 1 if bad else 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from abcgen.evaluation.generate import GenerationSettings
    from abcgen.evaluation.run import EvaluationSettings, evaluate_abc_files, evaluate_model

    if sum((args.model is not None, bool(args.abc), bool(args.midi))) != 1:
        raise AbcgenError("give one of --model DIR (generate and score), --abc FILE... or --midi FILE... (score "
                          "existing tunes or MIDI pieces), not both")
    generation = GenerationSettings(num_samples=args.num_samples, seeds=tuple(range(args.seeds)),
                                    temperature=args.temperature, top_p=args.top_p,
                                    max_new_tokens=args.max_new_tokens, constrained=not args.unconstrained,
                                    max_bars=args.max_bars, grammar=args.grammar, guidance_scale=args.guidance_scale,
                                    theory_prior=args.theory_prior, rhythm_prior=args.rhythm_prior,
                                    unison_penalty=args.unison_penalty, interval_prior=args.interval_prior,
                                    opening_prior=args.opening_prior)
    generation.check()  # the pipeline's own checks of the decoding options, before any work
    if (args.abc or args.midi) and (args.grammar is not None or generation.guided or generation.theory_prior
                     or generation.rhythm_prior is not None or generation.unison_penalty is not None
                     or generation.interval_prior is not None or generation.opening_prior is not None):
        raise ConfigError("--grammar, --guidance-scale, --theory-prior, --rhythm-prior, --unison-penalty, "
                          "--interval-prior and --opening-prior shape what --model "
                          "generates; with --abc or --midi nothing is generated: leave them out")
    torch.set_num_threads(max(1, args.threads))
    settings = EvaluationSettings(
        split=args.split, num_real=args.num_real, perplexity_tunes=args.perplexity_tunes,
        n_resamples=args.bootstrap, abc2midi=not args.no_abc2midi, generation=generation,
    )
    if args.model is not None:
        report = evaluate_model(args.model, args.data, args.out, settings, progress=not args.quiet,
                                overwrite=args.overwrite)
    elif args.midi:
        from abcgen.evaluation.remi_run import evaluate_midi_files

        report = evaluate_midi_files(args.midi, args.data, args.out, split=args.split, n_resamples=args.bootstrap,
                                     overwrite=args.overwrite)
    else:
        report = evaluate_abc_files(args.abc, args.data, args.out, settings, overwrite=args.overwrite)
    by_name = {m["name"]: m for m in report["metrics"]}
    for name in ("strict_validity", "bar_alignment_error", "overlap_mean", "copy_rate", "key_adherence_ks",
                 "meter_adherence"):
        if name in by_name:
            m = by_name[name]
            gen, real = (m["generated"] or {}).get("value"), (m["real"] or {}).get("value")
            print(f"{name:<22} generated {gen if gen is None else round(gen, 3)!s:>8}   "
                  f"real {real if real is None else round(real, 3)!s:>8}")
    print(f"report written to {Path(args.out) / 'report.md'}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from abcgen.hub import publish

    result = publish(args.model, args.repo_id, private=args.private, adapter_only=args.adapter_only,
                     report_dir=args.report, no_eval=args.no_eval, local_dir=args.local_dir, license=args.license,
                     datasets=args.dataset or (), timeout_s=args.timeout, overwrite=args.overwrite)
    if result.local_dir is not None:
        print(f"{len(result.files)} files of {result.repo_id} written to {result.local_dir} (not pushed)")
    else:
        print(f"{len(result.files)} files published to {result.repo_id} in one commit: {result.commit_url}")
    return 0


def _interpolate(args: argparse.Namespace) -> int:
    import torch

    from abcgen.generation.latent import interpolate_to_folder

    torch.set_num_threads(max(1, args.threads))
    summary = interpolate_to_folder(args.model, args.a, args.b, args.out, steps=args.steps, seed=args.seed,
                                    constrained=not args.unconstrained, max_new_tokens=args.max_new_tokens,
                                    overwrite=args.overwrite)
    print(f"{summary['valid']} of {summary['num']} interpolated tunes valid; written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``abcgen`` parser: one function per command adds its arguments, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="abcgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_data_commands(commands)
    _add_tokenizer_commands(commands)
    _add_sample_command(commands)
    _add_generate_command(commands)

    from abcgen.render import add_render_arguments

    add_render_arguments(commands.add_parser("render", help="render ABC tunes to mid, wav, flac, ogg, svg, png"))

    from abcgen.listen.commands import add_demo_arguments, add_listen_arguments

    add_demo_arguments(commands.add_parser("demo", help="a local web page (Gradio) to generate, see and hear tunes"))
    add_listen_arguments(commands.add_parser("listen", help="a blind listening test: prepare, serve, analyse, export"))

    _add_check_command(commands)
    _add_evaluate_command(commands)
    _add_publish_command(commands)
    _add_interpolate_command(commands)
    return parser


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    """``abcgen data build``: the corpus and its options (sources, splits, augmentation, checks)."""
    data = commands.add_parser("data", help="corpus commands").add_subparsers(dest="action", required=True)
    build = data.add_parser("build", help="build a corpus (DatasetDict + report.json + control_vocabulary.json)")
    build.add_argument("--source", nargs="+", required=True,
                       help="files, folders or music21:NAME (essenFolksong, oneills1850, airdsAirs, ryansMammoth, "
                            "miscFolk, bach, all)")
    build.add_argument("--out", type=Path, required=True, help="output folder")
    build.add_argument("--overwrite", action="store_true", help="replace an existing corpus in --out (the new one is written beside it and swapped in only when complete)")
    build.add_argument("--validation-fraction", type=_fraction, default=0.05)
    build.add_argument("--test-fraction", type=_fraction, default=0.05)
    build.add_argument("--split-seed", type=int, default=0, help="salt of the deterministic split hash")
    build.add_argument("--remi", action="store_true",
                       help="also write the remi column: miditok REMI text via abc2midi, a program per track "
                            "(melody 40, chorale voices 40-43, chord accompaniment 0 and bass 32), ABC bars on "
                            "REMI bars; report.json counts each tune's round trip as exact, not exact (why) or "
                            "failed (why) (needs abc2midi; ~30 ms a tune)")
    build.add_argument("--transpose-augment", type=_shifts, default=(),
                       help="semitone shifts added to train only, e.g. -2,2 or 'all'")
    build.add_argument("--bar-check", choices=("reject", "flag", "off"), default="reject",
                       help="reject tunes with bar-length problems (default), keep and count them, or skip the check")
    build.add_argument("--workers", type=_non_negative_int, default=0, help="processes (0 = all cores)")
    build.add_argument("--min-label-count", type=_positive_int, default=5,
                       help="rarer condition values become 'other'")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_data_build)
    profiles = data.add_parser("profiles", help="write a model folder's theory_profiles.json (the theory prior's "
                               "pitch-class profile per mode and note lengths per rhythm) from the train split of "
                               "the corpus it was trained on")
    profiles.add_argument("--data", type=Path, required=True, help="corpus folder (abcgen data build)")
    profiles.add_argument("--model", type=Path, required=True, help="model folder to write theory_profiles.json into")
    profiles.add_argument("--overwrite", action="store_true", help="replace an existing theory_profiles.json")
    profiles.set_defaults(func=_data_profiles)


def _add_tokenizer_commands(commands: argparse._SubParsersAction) -> None:
    """``abcgen tokenizer build`` (extend a base tokenizer) and ``abcgen tokenizer train-base``."""
    tok = commands.add_parser("tokenizer", help="tokenizer commands").add_subparsers(dest="action", required=True)
    tbuild = tok.add_parser("build", help="extend a Hugging Face tokenizer with music and control tokens")
    tbuild.add_argument("--base", required=True, help="hub id or folder of the base tokenizer")
    tbuild.add_argument("--data", type=Path, required=True, help="corpus folder from 'abcgen data build'")
    tbuild.add_argument("--out", type=Path, required=True, help="output tokenizer folder")
    tbuild.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer in --out (the new one is written beside it and swapped in only when complete)")
    tbuild.add_argument("--units", default=None,
                        help="unit spec: omit to count units on the corpus, 'shipped' for abcgen/assets/abc_units.json, "
                             "or a spec file")
    tbuild.add_argument("--allow-round-trip-failures", action="store_true",
                        help="write the tokenizer even if some tunes do not decode back exactly")
    tbuild.set_defaults(func=_tokenizer_build)

    tbase = tok.add_parser("train-base", help="train a byte-level BPE base tokenizer on a corpus (offline runs, "
                                              "models trained from scratch)")
    tbase.add_argument("--data", type=Path, required=True, help="corpus folder from 'abcgen data build'")
    tbase.add_argument("--out", type=Path, required=True, help="output tokenizer folder")
    tbase.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer in --out (the new one is written beside it and swapped in only when complete)")
    tbase.add_argument("--vocab-size", type=_positive_int, default=2048)
    tbase.set_defaults(func=_tokenizer_train_base)


def _add_sample_command(commands: argparse._SubParsersAction) -> None:
    """``abcgen sample``: plain sampling from a model folder."""
    sample = commands.add_parser("sample", help="sample conditioned tunes from a trained model folder (plain "
                                                "sampling; writes .abc, .mid and samples.json)")
    sample.add_argument("--model", type=Path, required=True, help="a folder written by train/finetune.py (final/)")
    sample.add_argument("--conditions", type=_conditions, default={}, help='e.g. "rhythm=jig;key=D major;meter=6/8"')
    sample.add_argument("--num", type=int, default=4)
    sample.add_argument("--max-new-tokens", type=int, default=384)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--threads", type=int, default=1)
    sample.add_argument("--midi", action="store_true", help="also write MIDI through abc2midi")
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--overwrite", action="store_true", help="replace a used --out folder (it is swapped for the new one only once everything is written)")
    sample.set_defaults(func=_sample)


def _add_generate_command(commands: argparse._SubParsersAction) -> None:
    """``abcgen generate``: the pipeline's conditions, decoding settings and rendering."""
    gen = commands.add_parser("generate", help="generate conditioned tunes through the abc-generation pipeline "
                              "(MIDI through midi-generation for a REMI model)")
    gen.add_argument("--model", required=True, help="model folder (train/finetune.py final/) or hub id")
    from abcgen.controls import conditions as registered_conditions

    for condition in registered_conditions():  # the condition registry: one flag per condition
        gen.add_argument(condition.flag, type=condition.arg_type, default=None, help=condition.help)
    gen.add_argument("--pickup", default=None, help="length of a pickup bar as a fraction of a whole note, e.g. 1/8")
    gen.add_argument("--prompt", type=Path, default=None, help="an ABC file with the opening bars to continue (a "
                     "REMI model also takes a .mid file)")
    gen.add_argument("--melody", type=Path, default=None, help="REMI models: a melody (.abc or .mid) to accompany "
                     "with the --programs instruments")
    gen.add_argument("--programs", default=None, help="REMI models: the instruments, General MIDI programs "
                     "separated by commas, e.g. 0,32,40 (piano, bass, violin); default 40")
    gen.add_argument("--bpm", type=float, default=None, help="REMI models: the tempo in quarter notes a minute")
    gen.add_argument("--voices", type=int, default=1, help="voices kept in step bar by bar (V:1 .. V:n)")
    gen.add_argument("--num", type=int, default=4)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--max-new-tokens", type=int, default=None, help="default: enough for the requested bars")
    gen.add_argument("--guidance-scale", type=_guidance_scale, default=1.0, help="classifier-free guidance on the "
                     "conditions: 1 = off (the model as trained), above 1 (e.g. 2) follows them more strongly, 0 "
                     "ignores them; each step runs twice the rows (benchmarks/guidance.py); one voice, not for "
                     "MusicVAE or MusicGAN folders")
    gen.add_argument("--theory-prior", type=_theory_prior, default=None, help="weigh every note by the training "
                     "corpus's pitch profile of the requested mode (theory_profiles.json): 0 = off, 1 = the profile "
                     "as it is, 2 = twice as sharp (default: the pipeline's, abcgen.generation.arguments."
                     "DEFAULT_THEORY_PRIOR where the model has the file); a grammar rule, not "
                     "with --unconstrained")
    gen.add_argument("--rhythm-prior", type=_theory_prior, default=None, help=_RHYTHM_HELP)
    gen.add_argument("--unison-penalty", type=_theory_prior, default=None, help=_UNISON_HELP)
    gen.add_argument("--interval-prior", type=_theory_prior, default=None, help=_INTERVAL_HELP)
    gen.add_argument("--opening-prior", type=_theory_prior, default=None, help=_OPENING_HELP)
    gen.add_argument("--title", default=None, help="the T: of the tunes (default: e.g. 'Jig in D major')")
    gen.add_argument("--endings", action=argparse.BooleanOptionalAction, default=None, help="with --form: "
                     "repeated parts end with first and second endings (default: as often as the model's corpus "
                     "writes them)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--unconstrained", action="store_true", help="switch constrained decoding off")
    gen.add_argument("--grammar", default="idiom", help="idiom (default): the folk idiom of the model's corpus "
                     "(broken rhythm, triplets, ornaments, chords), beams, a cadence, recurring phrases; legacy: "
                     "plain notes and bar lines")
    gen.add_argument("--cadence", default=None, help="with --grammar idiom: forced (default: the tune ends on "
                     "the tonic) or weighted (a bonus for ending there)")
    gen.add_argument("--idioms", default=None, help="with --grammar idiom: comma-separated idioms to allow "
                     "(default: those of the model's training corpus)")
    gen.add_argument("--render", default="", help="also render: comma-separated mid,wav,flac,ogg,svg,png (REMI "
                     "models: png piano roll, wav; default png)")
    gen.add_argument("--threads", type=int, default=1)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--overwrite", action="store_true", help="replace a used --out folder (it is swapped for the new one only once everything is written)")
    gen.set_defaults(func=_generate)


def _add_check_command(commands: argparse._SubParsersAction) -> None:
    """``abcgen check``: normalise, lex and bar-check ABC files."""
    check = commands.add_parser("check", help="normalise, lex and bar-check the tunes of ABC files")
    check.add_argument("files", nargs="+")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_check)


def _add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    """``abcgen evaluate``: what is generated, what it is compared with, and where the report goes."""
    ev = commands.add_parser("evaluate", help="generate from a model and score it against real held-out tunes "
                                              "(report.json, report.md, plots)")
    ev.add_argument("--model", type=Path, default=None, help="model folder (train/finetune.py's final/)")
    ev.add_argument("--abc", type=Path, nargs="+", default=None,
                    help="instead of --model: score the tunes of these ABC files (any generator)")
    ev.add_argument("--midi", type=Path, nargs="+", default=None,
                    help="instead of --model: score these MIDI files (any generator) from their notes against the "
                         "corpus's REMI pieces (a corpus built with --remi)")
    ev.add_argument("--data", type=Path, required=True, help="corpus folder (abcgen data build)")
    ev.add_argument("--split", default="test", help="held-out split: real tunes and the conditions asked for")
    ev.add_argument("--num-samples", type=_positive_int, default=100, help="generated tunes per seed")
    ev.add_argument("--seeds", type=_positive_int, default=3,
                    help="sampling seeds 0..N-1 (at least 3 for a published number)")
    ev.add_argument("--num-real", type=_positive_int, default=None,
                    help="real tunes compared (default: as many as generated)")
    ev.add_argument("--temperature", type=_positive_float, default=1.0)
    ev.add_argument("--top-p", type=_top_p, default=0.95)
    ev.add_argument("--max-new-tokens", type=_positive_int, default=None,
                    help="default: the pipeline's budget for the bars")
    ev.add_argument("--max-bars", type=_positive_int, default=32, help="cap on the bar counts copied from real tunes")
    ev.add_argument("--unconstrained", action="store_true", help="sample without constrained decoding")
    # checked by the pipeline's own checks (GenerationSettings.check), not argparse choices: one home each
    ev.add_argument("--grammar", default=None, help="legacy: plain notes and bar lines; idiom: the folk idiom of "
                    "the model's corpus, beams, the cadence on the tonic, recurring bars (default: the pipeline's "
                    "default grammar)")
    ev.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance on the conditions: "
                    "1 = off, above 1 (e.g. 2) follows them more strongly; multi-voice rows are asked for one voice")
    ev.add_argument("--theory-prior", type=float, default=None, help="weigh every note by the training corpus's "
                    "pitch profile of the requested mode: 0 = off, 1 = the profile as it is (default: the pipeline's, "
                    "abcgen.generation.arguments.DEFAULT_THEORY_PRIOR where the model has theory_profiles.json)")
    ev.add_argument("--rhythm-prior", type=_theory_prior, default=None, help=_RHYTHM_HELP)
    ev.add_argument("--interval-prior", type=_theory_prior, default=None, help=_INTERVAL_HELP)
    ev.add_argument("--opening-prior", type=_theory_prior, default=None, help=_OPENING_HELP)
    ev.add_argument("--unison-penalty", type=_theory_prior, default=None, help=_UNISON_HELP)
    ev.add_argument("--perplexity-tunes", type=_non_negative_int, default=200,
                    help="held-out tunes for perplexity; 0 = skip")
    ev.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples for the 95%% intervals")
    ev.add_argument("--no-abc2midi", action="store_true", help="skip the abc2midi check (strict validity then "
                                                                "uses abcgen's checker only)")
    ev.add_argument("--threads", type=_positive_int, default=1)
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--out", type=Path, required=True, help="report folder")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing report folder in --out (the new one is written beside it and swapped in only when complete)")
    ev.set_defaults(func=_evaluate)


def _add_publish_command(commands: argparse._SubParsersAction) -> None:
    """``abcgen publish``: the model, its report, and where the repository goes (Hub or a folder)."""
    pub = commands.add_parser("publish", help="assemble a model repository (weights, tokenizer, card, evaluation) "
                                              "and push it to the Hugging Face Hub in one commit")
    pub.add_argument("--model", type=Path, required=True, help="model folder (train/finetune.py's final/)")
    pub.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    pub.add_argument("--report", type=Path, default=None, help="report folder of 'abcgen evaluate' for this model")
    pub.add_argument("--no-eval", action="store_true", help="publish without an evaluation report (the card says so)")
    pub.add_argument("--private", action="store_true", help="create the repository private")
    pub.add_argument("--adapter-only", action="store_true",
                     help="publish the LoRA adapter (adapter/) instead of the merged weights")
    pub.add_argument("--local-dir", type=Path, default=None, help="write the repository to this folder; do not push")
    pub.add_argument("--overwrite", action="store_true",
                     help="replace a repository an earlier publish wrote to --local-dir (a folder publish did not "
                          "write is never replaced)")
    pub.add_argument("--license", default="apache-2.0", help="license id for the card's metadata")
    pub.add_argument("--dataset", action="append", default=None,
                     help="dataset id for the card's metadata (repeatable; default: the training corpus's sources)")
    pub.add_argument("--timeout", type=_positive_float, default=60.0,
                     help="seconds to wait for each network operation")
    pub.set_defaults(func=_publish)


def _add_interpolate_command(commands: argparse._SubParsersAction) -> None:
    """``abcgen interpolate``: a MusicVAE's latent path between two tunes."""
    interp = commands.add_parser("interpolate", help="tunes along the latent path between two tunes (a MusicVAE "
                                                     "folder, model.architecture=vae); writes .abc files and summary.json")
    interp.add_argument("a", type=Path, help="ABC file of the first tune (its first tune if it holds several)")
    interp.add_argument("b", type=Path, help="ABC file of the second tune, in the same meter")
    interp.add_argument("--model", type=Path, required=True, help="the VAE's folder (train/finetune.py's final/)")
    interp.add_argument("--steps", type=int, default=5, help="tunes on the path, both ends included (>= 2)")
    interp.add_argument("--seed", type=int, default=0)
    interp.add_argument("--max-new-tokens", type=int, default=None, help="default: twice the longer tune's tokens")
    interp.add_argument("--unconstrained", action="store_true", help="switch constrained decoding off")
    interp.add_argument("--threads", type=int, default=1)
    interp.add_argument("--out", type=Path, required=True)
    interp.add_argument("--overwrite", action="store_true", help="replace a used --out folder (it is swapped for the new one only once everything is written)")
    interp.set_defaults(func=_interpolate)


# File-system errors that a mistyped or inaccessible path causes; shown as one line when the path is one the
# user gave (or lies under or above one), as a traceback otherwise (then it is abcgen's bug).
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)
_PATH_FIXES = {
    FileNotFoundError: "does not exist: check the path",
    IsADirectoryError: "is a folder where a file was expected: give a file",
    NotADirectoryError: "is (or lies under) a file where a folder was expected: give a folder path",
    PermissionError: "cannot be read or written (permission denied): choose a path you can use, or fix its "
                     "permissions",
    FileExistsError: "already exists as a file: give a folder path or remove the file",
}


def _user_paths(args: argparse.Namespace) -> list[Path]:
    """Every path-like argument value of the command (``--out``, ``--data``, positional files, ...)."""
    paths: list[Path] = []
    for name, value in vars(args).items():
        if name in ("func", "command", "action"):
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, Path) or (isinstance(item, str) and item and "\n" not in item):
                paths.append(Path(item).absolute())
    return paths


def user_path_error(exc: OSError, args: argparse.Namespace) -> str | None:
    """The one-line message for a file-system error on a path the user gave, or None (not a user path)."""
    given = _user_paths(args)
    for filename in (exc.filename, exc.filename2):
        if filename is None or isinstance(filename, int):
            continue
        path = Path(os.fsdecode(filename)).absolute()
        if any(path == p or p in path.parents or path in p.parents for p in given):
            fix = next((text for kind, text in _PATH_FIXES.items() if isinstance(exc, kind)), "cannot be used")
            return f"{str(path)!r} {fix}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done, 1 what the command reports as failed (``check``: a broken tune),
    2 bad input -- one line on stderr naming the value and the fix (its traceback only with ``-v``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except AbcgenError as exc:
        log.error("%s", " ".join(str(exc).split("\n")), exc_info=args.verbose)  # one line, even for a chord "[A\nB]"
        return 2
    except _PATH_ERRORS as exc:
        message = user_path_error(exc, args)
        if message is None:
            raise  # not a path the user gave: a bug in abcgen, keep its traceback
        log.error("%s", message, exc_info=args.verbose)
        return 2


if __name__ == "__main__":
    sys.exit(main())
