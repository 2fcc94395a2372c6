"""Render ABC tunes to MIDI, audio and sheet music.

    abcgen render TUNE.abc --to mid,wav,svg,png [--out FOLDER] [--soundfont FILE.sf2]

    from abcgen.render import render_abc
    paths = render_abc(abc_text, "out/tune", ("mid", "wav", "flac", "svg", "png"))  # {"mid": Path(...), ...}

Formats (:data:`FORMATS`) and the tool behind each:

* ``mid`` -- abc2midi (Debian ``abcmidi``) on the tune as written, so ``%%MIDI`` directives are honoured.
* ``wav``, ``flac``, ``ogg`` -- the MIDI played by fluidsynth (Debian ``fluidsynth``) with a General MIDI
  soundfont: ``soundfont=``/``--soundfont``, else ``$ABCGEN_SOUNDFONT``, else Debian's
  ``fluid-soundfont-gm`` (``/usr/share/sounds/sf2/default-GM.sf2`` or ``FluidR3_GM.sf2``). ``flac`` is
  lossless, ``ogg`` Ogg Vorbis; both are written by fluidsynth's libsndfile, no other encoder is needed.
* ``svg`` -- verovio (PyPI ``verovio``) on the *normalised* tune (comments, lyrics and directives
  dropped; an ABC that cannot be read raises :class:`~abcgen.errors.AbcParseError` saying where).
  A single-voice tune is read by verovio's own ABC importer; a multi-voice tune goes through MusicXML
  (abctoolkit's abc2xml), since verovio's ABC importer reads one voice only. The whole score is laid out
  on one tall page. verovio runs in a child process: its ABC importer aborts the process on some
  malformed input, which must not take the caller down.
* ``png`` -- the SVG rasterised by cairosvg (PyPI ``cairosvg``, which needs Debian ``libcairo2``) on a
  white background.

A missing tool raises :class:`~abcgen.errors.ToolNotFoundError` naming the package to install, checked
before anything is written; a tool that fails raises :class:`~abcgen.errors.ConversionError` naming the
tune and the tail of the tool's output; an unknown format raises :class:`~abcgen.errors.ConfigError`
listing the valid ones.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from abcgen.errors import AbcgenError, AbcParseError, ConfigError, ConversionError, ToolNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_FORMATS",
    "DEFAULT_FORMATS",
    "DEFAULT_GAIN",
    "FORMATS",
    "SOUNDFONT_CANDIDATES",
    "add_render_arguments",
    "find_soundfont",
    "parse_formats",
    "render_abc",
    "render_command",
    "render_file",
]

FORMATS: tuple[str, ...] = ("mid", "wav", "flac", "ogg", "svg", "png")
DEFAULT_FORMATS: tuple[str, ...] = ("mid", "wav", "svg", "png")
# Our format name -> fluidsynth's ``-T`` file type (libsndfile's names).
AUDIO_FORMATS: dict[str, str] = {"wav": "wav", "flac": "flac", "ogg": "oga"}
_ALIASES = {"midi": "mid", "oga": "ogg", "vorbis": "ogg"}

# Debian's fluid-soundfont-gm (default-GM.sf2 is the alternatives link, FluidR3_GM.sf2 the file), then
# the places other distributions use.
SOUNDFONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
)
SOUNDFONT_ENV = "ABCGEN_SOUNDFONT"

_FLUIDSYNTH_INSTALL = "apt-get install fluidsynth fluid-soundfont-gm"
_FLUIDSYNTH_FATAL_RE = re.compile(r"not a SoundFont or MIDI file|[Ff]ailed to load|[Cc]ouldn't load|No such file")
_TOOL_TIMEOUT_S = 300  # a tune renders in well under a second; a hang means a pathological input
_MIN_RATE, _MAX_RATE = 8000, 96000  # fluidsynth's synth.sample-rate range
# fluidsynth's master gain: its default 0.2 leaves a solo tune peaking near -25 dBFS; 0.5 keeps a
# four-part chorale (peak about -6 dBFS) clear of clipping.
DEFAULT_GAIN = 0.5

# verovio layout: the whole score on one page (adjustPageHeight trims it to the music); pages beyond the
# 60000-unit maximum are stacked into one SVG.
_VEROVIO_OPTIONS: dict[str, object] = {
    "pageHeight": 60000,
    "adjustPageHeight": True,
    "footer": "none",
    "breaks": "auto",
}

# The child process that runs verovio: reads {"data", "input", "options"} JSON on stdin, writes
# {"pages": [...], "log": "..."} JSON on stdout (verovio's own messages go to stderr); exit 1 when verovio
# cannot load the input.
_VEROVIO_CHILD = r"""
import json, sys
import verovio
request = json.load(sys.stdin)
verovio.enableLog(verovio.LOG_WARNING)
tk = verovio.toolkit()
tk.setOptions(dict(request["options"], inputFrom=request["input"]))
ok = tk.loadData(request["data"])
pages = [tk.renderToSVG(i) for i in range(1, tk.getPageCount() + 1)] if ok else []
json.dump({"ok": bool(ok), "pages": pages, "log": tk.getLog()}, sys.stdout)
sys.exit(0 if ok and pages else 1)
"""


# --- formats and tools ------------------------------------------------------------------------------


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"mid,wav"`` or ``["mid", "wav"]`` -> ("mid", "wav"): lower-cased, de-duplicated, in order.

    Raises ConfigError for an unknown format (listing the valid ones) or an empty list."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    result: list[str] = []
    for item in items:
        name = str(item).strip().lower().lstrip(".")
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in FORMATS:
            close = difflib.get_close_matches(name, FORMATS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown render format {item!r}{hint}; valid formats: {', '.join(FORMATS)}")
        if name not in result:
            result.append(name)
    if not result:
        raise ConfigError(f"no render format given; valid formats: {', '.join(FORMATS)}")
    return tuple(result)


def _which(program: str, install: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise ToolNotFoundError(f"{program} not found on PATH; install it with: {install}")
    return path


def find_soundfont(soundfont: str | os.PathLike[str] | None = None) -> Path:
    """The General MIDI soundfont to play with: ``soundfont`` if given, else ``$ABCGEN_SOUNDFONT``, else the
    first of :data:`SOUNDFONT_CANDIDATES` that exists.

    A given path that is not a file is a ConfigError; no soundfont at all is a ToolNotFoundError."""
    for given, where in ((soundfont, "soundfont"), (os.environ.get(SOUNDFONT_ENV) or None, SOUNDFONT_ENV)):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"{where} {str(path)!r} is not a file; give a .sf2/.sf3 General MIDI soundfont")
            if not _is_soundfont(path):
                raise ConfigError(f"{where} {str(path)!r} is not a SoundFont (no RIFF sfbk header); give a "
                                  ".sf2/.sf3 General MIDI soundfont")
            return path
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ToolNotFoundError(
        f"no General MIDI soundfont found (looked for {', '.join(SOUNDFONT_CANDIDATES)}); install one with: "
        f"apt-get install fluid-soundfont-gm, or pass a .sf2 file with --soundfont / soundfont="
    )


def _is_soundfont(path: Path) -> bool:
    """Whether ``path`` starts like a SoundFont (a RIFF file of form ``sfbk``): fluidsynth renders silence,
    with exit status 0, from a file that is not one."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


@functools.lru_cache(maxsize=8)
def _fluidsynth_file_types(fluidsynth: str) -> frozenset[str]:
    """The ``-T`` file types this fluidsynth can write (``fluidsynth -T help``)."""
    try:
        result = subprocess.run([fluidsynth, "-T", "help"], capture_output=True, text=True, errors="replace",
                                timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"'([a-z0-9]+)'", result.stdout + result.stderr))


def _require_python_package(module: str, pip_name: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ToolNotFoundError(f"the Python package {pip_name} is missing; install it with: pip install {pip_name}")


def _import_cairosvg():  # noqa: ANN202 -- the cairosvg module
    _require_python_package("cairosvg", "cairosvg")
    try:
        import cairosvg
    except OSError as exc:  # cairocffi finds no libcairo
        raise ToolNotFoundError(
            f"cairosvg cannot load the cairo library ({exc}); install it with: apt-get install libcairo2"
        ) from exc
    return cairosvg


def _check_tools(formats: Sequence[str], soundfont: str | os.PathLike[str] | None) -> Path | None:
    """Raise ToolNotFoundError for the first missing tool the formats need; return the soundfont (or
    None when no audio format is asked for)."""
    if set(formats) & {"mid", *AUDIO_FORMATS}:
        _which("abc2midi", "apt-get install abcmidi")
    found: Path | None = None
    audio = [f for f in formats if f in AUDIO_FORMATS]
    if audio:
        fluidsynth = _which("fluidsynth", _FLUIDSYNTH_INSTALL)
        found = find_soundfont(soundfont)
        types = _fluidsynth_file_types(fluidsynth)
        for fmt in audio:
            if types and AUDIO_FORMATS[fmt] not in types:
                raise ToolNotFoundError(
                    f"this fluidsynth ({fluidsynth}) cannot write {fmt} (its libsndfile lacks it; it writes: "
                    f"{', '.join(sorted(types))}); install Debian's build with: {_FLUIDSYNTH_INSTALL}, "
                    f"or choose another audio format"
                )
    if set(formats) & {"svg", "png"}:
        _require_python_package("verovio", "verovio")
    if "png" in formats:
        _import_cairosvg()
    return found


def _tail(text: str, lines: int = 8, chars: int = 1500) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-chars:] or "no output"


def _tune_name(abc: str) -> str:
    x = re.search(r"^X:[ \t]*(.*)$", abc, re.MULTILINE)
    title = re.search(r"^T:[ \t]*(.*)$", abc, re.MULTILINE)
    parts = [f"X:{x.group(1).strip()}" if x else "", title.group(1).strip() if title else ""]
    return " ".join(p for p in parts if p) or "untitled tune"


# --- the renderers ----------------------------------------------------------------------------------


def _render_midi(abc: str, out: Path, name: str) -> None:
    from abcgen.notation.remi import abc_to_midi

    try:
        abc_to_midi(abc, out)  # it logs abc2midi's recoverable Error/Warning lines at debug level
    except ConversionError as exc:
        raise ConversionError(f"MIDI for tune {name!r}: {exc}") from exc


def _render_audio(midi: Path, out: Path, fmt: str, soundfont: Path, sample_rate: int, gain: float,
                  name: str) -> None:
    fluidsynth = _which("fluidsynth", _FLUIDSYNTH_INSTALL)
    out.unlink(missing_ok=True)
    command = [fluidsynth, "-ni", "-F", str(out), "-T", AUDIO_FORMATS[fmt], "-r", str(sample_rate),
               "-g", f"{gain:g}", str(soundfont), str(midi)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace",
                                timeout=_TOOL_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"fluidsynth did not finish {fmt} for tune {name!r} within {_TOOL_TIMEOUT_S} s") from exc
    output = result.stdout + result.stderr
    # fluidsynth exits 0 and writes silence when it cannot load the soundfont or read the MIDI file.
    fatal = [line for line in output.splitlines() if _FLUIDSYNTH_FATAL_RE.search(line)]
    if result.returncode != 0 or fatal or not out.is_file() or out.stat().st_size <= 64:
        raise ConversionError(
            f"fluidsynth failed to write {fmt} for tune {name!r} (exit status {result.returncode}): {_tail(output)}"
        )
    for line in output.splitlines():
        if "error" in line.lower():
            logger.warning("fluidsynth (%s, %s): %s", name, fmt, line.strip())
    logger.debug("fluidsynth (%s, %s): %s", name, fmt, _tail(output))


def _is_multi_voice(tune) -> bool:  # noqa: ANN001 -- abcgen.notation.tune.Tune
    from abcgen.notation.bars import events_by_voice

    return len(events_by_voice(tune.events())) > 1


def _run_verovio(data: str, input_from: str, name: str) -> list[str]:
    request = json.dumps({"data": data, "input": input_from, "options": _VEROVIO_OPTIONS})
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    try:
        result = subprocess.run([sys.executable, "-c", _VEROVIO_CHILD], input=request, capture_output=True,
                                text=True, errors="replace", timeout=_TOOL_TIMEOUT_S, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"verovio did not engrave tune {name!r} within {_TOOL_TIMEOUT_S} s") from exc
    try:
        reply = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        reply = {}
    log = str(reply.get("log", ""))
    pages = [p for p in reply.get("pages", []) if isinstance(p, str)]
    if result.returncode != 0 or not pages:
        detail = _tail(f"{log}\n{result.stderr}")
        raise ConversionError(
            f"verovio could not engrave tune {name!r} from {input_from} (exit status {result.returncode}): {detail}"
        )
    if (log + result.stderr).strip():
        logger.debug("verovio (%s): %s", name, _tail(f"{log}\n{result.stderr}"))
    return pages


_SVG_SIZE_RE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)(?:px)?"[^>]*?\bheight="([\d.]+)(?:px)?"')


def _stack_pages(pages: list[str]) -> str:
    """Several verovio SVG pages as one SVG, one below the other (nested ``<svg>`` elements)."""
    if len(pages) == 1:
        return pages[0]
    parts, y, width = [], 0.0, 0.0
    for page in pages:
        size = _SVG_SIZE_RE.search(page)
        if size is None:
            raise ConversionError("verovio wrote an SVG page without width/height")
        w, h = float(size.group(1)), float(size.group(2))
        parts.append(re.sub(r"^\s*<svg\b", f'<svg x="0" y="{y:g}"', page, count=1))
        y += h
        width = max(width, w)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1" '
            f'width="{width:g}px" height="{y:g}px">\n' + "\n".join(parts) + "\n</svg>\n")


def _render_svg(abc: str, name: str) -> str:
    """The tune engraved by verovio, as SVG text (see the module docstring)."""
    from abcgen.notation.events import CHORD, NOTE
    from abcgen.notation.musicxml import abc_to_musicxml
    from abcgen.notation.tune import normalise_tune

    tune = normalise_tune(abc, name=name)  # AbcParseError, saying where, for ABC that cannot be read
    if not any(event.kind in (NOTE, CHORD) for event in tune.events()):
        dropped = "; ".join(tune.dropped)[-300:]
        raise AbcParseError(
            "no notes left to engrave once the tune is normalised"
            + (f" (dropped as not music: {dropped})" if dropped else ""),
            tune=name,
        )
    text = tune.to_abc()
    if _is_multi_voice(tune):
        try:
            xml = abc_to_musicxml(text)
        except ConversionError as exc:
            raise ConversionError(f"sheet music for tune {name!r}: {exc}") from exc
        pages = _run_verovio(xml, "musicxml", name)
    else:
        pages = _run_verovio(text, "abc", name)
    return _stack_pages(pages)


def _render_png(svg: str, out: Path, name: str) -> None:
    cairosvg = _import_cairosvg()
    try:
        cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(out), background_color="white")
    except Exception as exc:  # cairosvg raises assorted parser/cairo errors
        raise ConversionError(f"cairosvg could not rasterise tune {name!r}: {type(exc).__name__}: {exc}") from exc


# --- the API ----------------------------------------------------------------------------------------


def render_abc(
    abc: str,
    out_stem: str | os.PathLike[str],
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    *,
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
    gain: float = DEFAULT_GAIN,
    name: str | None = None,
) -> dict[str, Path]:
    """Render one ABC tune to ``out_stem.<format>`` for each format; return {format: path} in order.

    ``out_stem`` is a path without suffix (``out/tune`` -> ``out/tune.mid``, ...); its folder is created.
    ``gain`` is fluidsynth's master gain (linear, 0-10; its own default 0.2 is quiet). ``name`` labels the
    tune in error messages (default: its ``X:`` and ``T:``). Text with several tunes is an AbcParseError:
    use :func:`render_file`, or :func:`abcgen.notation.tune.split_tunes` first.
    """
    from abcgen.notation.tune import split_tunes

    wanted = parse_formats(formats)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not _MIN_RATE <= sample_rate <= _MAX_RATE:
        raise ConfigError(f"sample_rate {sample_rate!r}: give an integer from {_MIN_RATE} to {_MAX_RATE} Hz")
    if not isinstance(gain, int | float) or not 0 < gain <= 10:
        raise ConfigError(f"gain {gain!r}: give a number above 0 and at most 10 (fluidsynth's synth.gain)")
    found_soundfont = _check_tools(wanted, soundfont)
    tunes = split_tunes(abc)
    name = name or _tune_name(abc)
    if len(tunes) > 1:
        raise AbcParseError(f"the text holds {len(tunes)} tunes; render_abc renders one (use render_file)", tune=name)
    if not tunes:
        raise AbcParseError("no tune found (a tune needs a K: line)", tune=name)
    abc = tunes[0].text
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in wanted}
    results: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="abcgen-render-") as tmp:
        midi: Path | None = None
        if "mid" in wanted or any(f in AUDIO_FORMATS for f in wanted):
            midi = paths.get("mid") or Path(tmp) / "tune.mid"
            _timed(name, "mid", _render_midi, abc, midi, name)
        svg: str | None = None
        for fmt in wanted:
            out = paths[fmt]
            if fmt in AUDIO_FORMATS:
                assert midi is not None and found_soundfont is not None
                _timed(name, fmt, _render_audio, midi, out, fmt, found_soundfont, sample_rate, gain, name)
            elif fmt in ("svg", "png") and svg is None:
                svg = _timed(name, "svg", _render_svg, abc, name)
            if fmt == "svg":
                out.write_text(svg, encoding="utf-8")
            elif fmt == "png":
                _timed(name, "png", _render_png, svg, out, name)
            results[fmt] = out
    return results


def _timed(name: str, fmt: str, function, *args):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    value = function(*args)
    logger.debug("rendered %s of tune %r in %.2f s", fmt, name, time.perf_counter() - start)
    return value


def render_file(
    path: str | os.PathLike[str],
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
    gain: float = DEFAULT_GAIN,
) -> list[dict[str, Path]]:
    """Render every tune of an ABC file; return one {format: path} per tune, in file order.

    Outputs go to ``out_dir`` (default: the file's folder) as ``STEM.<format>`` for a one-tune file and
    ``STEM_01.<format>``, ``STEM_02.<format>``, ... for a file of several tunes. Stops at the first
    tune that fails, with an error naming the file and the tune.
    """
    from abcgen.notation.tune import split_tunes

    source = Path(path)
    wanted = parse_formats(formats)
    _check_tools(wanted, soundfont)
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(source)!r}: {exc.strerror or exc}") from exc
    tunes = split_tunes(text)
    if not tunes:
        raise AbcParseError(f"{source}: no ABC tune found (a tune needs a K: line)")
    folder = Path(out_dir) if out_dir is not None else source.parent
    width = max(2, len(str(len(tunes))))
    results = []
    for i, tune in enumerate(tunes, start=1):
        stem = source.stem if len(tunes) == 1 else f"{source.stem}_{i:0{width}d}"
        name = f"{source.name} tune {i} ({_tune_name(tune.text)})"
        results.append(render_abc(tune.text, folder / stem, wanted, soundfont=soundfont,
                                  sample_rate=sample_rate, gain=gain, name=name))
    return results


# --- the command line -------------------------------------------------------------------------------


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
    parser.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    """``abcgen render``: render every tune of ``args.files`` to ``args.to``; print one line per tune."""
    formats = parse_formats(args.to if args.to is not None else DEFAULT_FORMATS)
    for file in args.files:
        results = render_file(file, formats, getattr(args, "out", None), soundfont=getattr(args, "soundfont", None),
                              sample_rate=getattr(args, "sample_rate", 44100), gain=getattr(args, "gain", DEFAULT_GAIN))
        for i, paths in enumerate(results, start=1):
            label = file if len(results) == 1 else f"{file} tune {i}"
            print(f"{label}: " + " ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":  # python -m abcgen.render FILES --to ...
    _parser = argparse.ArgumentParser(prog="python -m abcgen.render", description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_render_arguments(_parser)
    _args = _parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        sys.exit(_args.func(_args))
    except AbcgenError as _exc:
        logger.error("%s", _exc)
        sys.exit(2)
