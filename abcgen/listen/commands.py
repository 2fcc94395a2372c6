"""The ``abcgen listen`` and ``abcgen demo`` command lines (arguments here; the work is imported when run)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _prepare(args: argparse.Namespace) -> int:
    from abcgen.listen.prepare import PrepareSettings, duration_summary, prepare_study

    generated = {"generated": args.generated}
    for i, path in enumerate(args.generated_2 or [], start=2):
        generated[f"generated-{i}"] = path
    study = prepare_study(PrepareSettings(generated=generated, real=args.real, out=args.out, bars=args.bars,
                                          attention=args.attention, ratings=not args.no_ratings,
                                          max_tunes=args.max_tunes, seed=args.seed, soundfont=args.soundfont),
                          overwrite=args.overwrite)
    print(f"study written to {args.out}: {duration_summary(study)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from abcgen.listen.serve import ListenServer

    server = ListenServer(args.study, args.host, args.port)
    print(f"listening test of {args.study} at {server.url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _analyse(args: argparse.Namespace) -> int:
    from abcgen.listen.analyse import analyse_study

    results = analyse_study(args.study, args.out, overwrite=args.overwrite)
    out = args.out or Path(args.study) / "analysis"
    for cell in results["preference"]["all"].values():
        if cell["n"]:
            print(f"{cell['system']:<14} {cell['question']:<6} real chosen {cell['mean']:.2f} "
                  f"[{cell['low']:.2f}, {cell['high']:.2f}] ({cell['k']}/{cell['n']})")
    print(f"{results['raters_kept']} of {results['raters']} raters kept ({results['raters_failed_attention']} failed "
          f"an attention check); report written to {Path(out) / 'report.md'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from abcgen.listen.export import export_study, parse_export_formats

    written = export_study(args.study, args.out, parse_export_formats(args.to), overwrite=args.overwrite)
    print("exported: " + ", ".join(f"{fmt} -> {path}" for fmt, path in written.items()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from abcgen.demo import run_demo

    run_demo(args.model, args.host, args.port, soundfont=args.soundfont)
    return 0


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    """``abcgen listen prepare|serve|analyse|export``."""
    actions = parser.add_subparsers(dest="action", required=True)
    prep = actions.add_parser("prepare", help="render generated and real tunes and write a blind study")
    prep.add_argument("--generated", type=Path, required=True, help="ABC file of generated tunes")
    prep.add_argument("--generated-2", type=Path, action="append", default=None,
                      help="ABC file of another system's tunes (repeatable: generated-2, generated-3, ...)")
    prep.add_argument("--real", type=Path, required=True, help="ABC file of real (human-written) tunes")
    prep.add_argument("--out", type=Path, required=True, help="study folder")
    prep.add_argument("--bars", type=int, default=8, help="bars of each tune played (default: %(default)s)")
    prep.add_argument("--attention", type=int, default=2, help="attention checks: a real tune against itself")
    prep.add_argument("--no-ratings", action="store_true", help="A/B trials only, no 1-5 rating trials")
    prep.add_argument("--max-tunes", type=int, default=None, help="first N tunes of each file (default: all)")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default: Debian's FluidR3_GM)")
    prep.add_argument("--overwrite", action="store_true", help="replace a study already in --out")
    prep.set_defaults(func=_prepare)

    serve = actions.add_parser("serve", help="serve the rater pages; answers go to STUDY/answers.sqlite")
    serve.add_argument("study", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to let other machines in")
    serve.add_argument("--port", type=int, default=8000, help="0 = any free port (printed)")
    serve.set_defaults(func=_serve)

    analyse = actions.add_parser("analyse", help="preference rates and ratings with credible intervals, report.md")
    analyse.add_argument("study", type=Path)
    analyse.add_argument("--out", type=Path, default=None, help="default: STUDY/analysis")
    analyse.add_argument("--overwrite", action="store_true", help="replace an earlier analysis")
    analyse.set_defaults(func=_analyse)

    export = actions.add_parser("export", help="write the study as webMUSHRA / BeaqleJS configurations")
    export.add_argument("study", type=Path)
    export.add_argument("--to", default="webmushra,beaqlejs", help="comma-separated: webmushra, beaqlejs")
    export.add_argument("--out", type=Path, default=None, help="default: STUDY/export")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    export.set_defaults(func=_export)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """``abcgen demo --model DIR``."""
    parser.add_argument("--model", required=True, help="model folder (train/finetune.py's final/) or hub id")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to let other machines in")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default: Debian's FluidR3_GM)")
    parser.set_defaults(func=_demo)
