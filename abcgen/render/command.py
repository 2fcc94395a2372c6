"""``abcgen render FILES --to FORMATS``: the arguments and the command (also ``python -m abcgen.render``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from abcgen.render.api import (
    DEFAULT_FORMATS,
    FORMATS,
    check_output_folder,
    check_render_request,
    parse_formats,
    read_tunes,
    render_file,
)
from abcgen.render.audio import (
    AUDIO_MAX_SECONDS,
    AUDIO_WARN_SECONDS,
    DEFAULT_GAIN,
    SOUNDFONT_ENV,
    check_max_audio,
)


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``abcgen render`` arguments (``files``, ``--to``, ``--out``, ``--soundfont``, ``--sample-rate``,
    ``--gain``) and ``func=render_command``."""
    parser.add_argument("files", nargs="+", help="ABC files (every tune of each is rendered)")
    parser.add_argument("--to", default=",".join(DEFAULT_FORMATS),
                        help=f"comma-separated formats out of {','.join(FORMATS)} (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: next to each file)")
    parser.add_argument("--soundfont", default=None,
                        help=f"General MIDI .sf2 for audio (default: ${SOUNDFONT_ENV}, else Debian's "
                             "fluid-soundfont-gm)")
    parser.add_argument("--sample-rate", type=int, default=44100, help="audio sample rate in Hz")
    parser.add_argument("--gain", type=float, default=DEFAULT_GAIN, help="fluidsynth master gain (default: %(default)s)")
    parser.add_argument("--max-audio-seconds", type=float, default=AUDIO_MAX_SECONDS,
                        help="refuse audio of a tune longer than this (a warning is logged above "
                             f"{AUDIO_WARN_SECONDS:g} s); 0 = no limit (default: %(default)g)")
    parser.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    """``abcgen render``: render every tune of ``args.files`` to ``args.to``; print one line per tune."""
    formats = parse_formats(args.to if args.to is not None else DEFAULT_FORMATS)
    limit = getattr(args, "max_audio_seconds", AUDIO_MAX_SECONDS)
    limit = None if limit == 0 else limit
    check_max_audio(limit)
    check_render_request(formats, getattr(args, "soundfont", None))
    for file in args.files:  # every input readable before the first is rendered
        read_tunes(Path(file))
    if getattr(args, "out", None) is not None:
        check_output_folder(Path(args.out))
    for file in args.files:
        results = render_file(file, formats, getattr(args, "out", None), soundfont=getattr(args, "soundfont", None),
                              sample_rate=getattr(args, "sample_rate", 44100), gain=getattr(args, "gain", DEFAULT_GAIN),
                              max_audio_seconds=limit)
        for i, paths in enumerate(results, start=1):
            label = file if len(results) == 1 else f"{file} tune {i}"
            print(f"{label}: " + " ".join(str(p) for p in paths.values()))
    return 0
