"""Render one tune (:func:`render_abc`) or every tune of a file (:func:`render_file`): the formats asked
for, every tool they need checked before any work, the outputs staged and renamed into place together."""

from __future__ import annotations

import difflib
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from abcgen.corpus.sources import read_text
from abcgen.errors import AbcParseError, ConfigError
from abcgen.notation.tune import split_tunes
from abcgen.render import audio, midi, sheet
from abcgen.render._tools import which

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("mid", "wav", "flac", "ogg", "svg", "png")
DEFAULT_FORMATS: tuple[str, ...] = ("mid", "wav", "svg", "png")
_ALIASES = {"midi": "mid", "oga": "ogg", "vorbis": "ogg"}


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


def _check_tools(formats: Sequence[str], soundfont: str | os.PathLike[str] | None) -> Path | None:
    """Raise ToolNotFoundError for the first missing tool the formats need; return the soundfont (or
    None when no audio format is asked for)."""
    if set(formats) & {"mid", *audio.AUDIO_FORMATS}:
        which("abc2midi", midi.ABC2MIDI_INSTALL)
    found: Path | None = None
    wanted_audio = [f for f in formats if f in audio.AUDIO_FORMATS]
    if wanted_audio:
        found = audio.check_audio_tools(wanted_audio, soundfont)
    sheet.check_sheet_tools(formats)
    return found


def check_render_request(formats: str | Sequence[str], soundfont: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The formats as :func:`parse_formats` reads them, with every tool they need checked: what a caller
    (``abcgen generate --render``) checks before doing any work."""
    wanted = parse_formats(formats)
    _check_tools(wanted, soundfont)
    return wanted


def check_output_folder(folder: Path) -> None:
    """Refuse, before rendering, a folder that is a file or cannot be created or written."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {str(folder)!r} is a file, not a folder: give a folder for the rendered files")
    probe = folder.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write rendered files to {str(folder)!r}: {str(probe)!r} is not a writable "
                          "folder; give another --out")


def _staging(path: Path) -> Path:
    """The hidden sibling a rendered file is written to before it is renamed into place."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _tune_name(abc: str) -> str:
    x = re.search(r"^X:[ \t]*(.*)$", abc, re.MULTILINE)
    title = re.search(r"^T:[ \t]*(.*)$", abc, re.MULTILINE)
    parts = [f"X:{x.group(1).strip()}" if x else "", title.group(1).strip() if title else ""]
    return " ".join(p for p in parts if p) or "untitled tune"


def render_abc(
    abc: str,
    out_stem: str | os.PathLike[str],
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    *,
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
    gain: float = audio.DEFAULT_GAIN,
    name: str | None = None,
    max_audio_seconds: float | None = audio.AUDIO_MAX_SECONDS,
) -> dict[str, Path]:
    """Render one ABC tune to ``out_stem.<format>`` for each format; return {format: path} in order.

    ``out_stem`` is a path without suffix (``out/tune`` -> ``out/tune.mid``, ...); its folder is created.
    ``gain`` is fluidsynth's master gain (linear, 0-10; its own default 0.2 is quiet). ``name`` labels the
    tune in error messages (default: its ``X:`` and ``T:``). Text with several tunes is an AbcParseError:
    use :func:`render_file`, or :func:`abcgen.notation.tune.split_tunes` first. Audio longer than
    ``max_audio_seconds`` (None = no limit) is refused (see the :mod:`abcgen.render` docstring). Every file
    is renamed into place only once all formats have rendered.
    """
    wanted = parse_formats(formats)
    audio.check_audio_settings(sample_rate, gain)
    audio.check_max_audio(max_audio_seconds)
    if not isinstance(abc, str):
        raise ConfigError(f"abc {type(abc).__name__}: give the tune as ABC text (a str)")
    found_soundfont = _check_tools(wanted, soundfont)
    tunes = split_tunes(abc)
    name = name or _tune_name(abc)
    if len(tunes) > 1:
        raise AbcParseError(f"the text holds {len(tunes)} tunes; render_abc renders one (use render_file)", tune=name)
    if not tunes:
        raise AbcParseError("no tune found (a tune needs a K: line)", tune=name)
    abc = tunes[0].text
    stem = Path(out_stem)
    check_output_folder(stem.parent)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in wanted}
    staged = {fmt: _staging(path) for fmt, path in paths.items()}
    try:
        with tempfile.TemporaryDirectory(prefix="abcgen-render-") as tmp:
            midi_path: Path | None = None
            if "mid" in wanted or any(f in audio.AUDIO_FORMATS for f in wanted):
                midi_path = staged.get("mid") or Path(tmp) / "tune.mid"
                _timed(name, "mid", midi.render_midi, abc, midi_path, name)
                if any(f in audio.AUDIO_FORMATS for f in wanted):
                    audio.check_audio_length(midi.midi_seconds(midi_path), name, max_audio_seconds)
            svg: str | None = None
            for fmt in wanted:
                out = staged[fmt]
                if fmt in audio.AUDIO_FORMATS:
                    assert midi_path is not None and found_soundfont is not None
                    _timed(name, fmt, audio.render_audio, midi_path, out, fmt, found_soundfont, sample_rate, gain,
                           name)
                elif fmt in ("svg", "png") and svg is None:
                    svg = _timed(name, "svg", sheet.render_svg, abc, name, stem.name)
                if fmt == "svg":
                    out.write_text(svg, encoding="utf-8")
                elif fmt == "png":
                    _timed(name, "png", sheet.render_png, svg, out, name)
        for fmt in wanted:  # every format rendered: now replace the outputs
            os.replace(staged[fmt], paths[fmt])
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    return dict(paths)


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
    gain: float = audio.DEFAULT_GAIN,
    max_audio_seconds: float | None = audio.AUDIO_MAX_SECONDS,
) -> list[dict[str, Path]]:
    """Render every tune of an ABC file; return one {format: path} per tune, in file order.

    Outputs go to ``out_dir`` (default: the file's folder) as ``STEM.<format>`` for a one-tune file and
    ``STEM_01.<format>``, ``STEM_02.<format>``, ... for a file of several tunes. Stops at the first
    tune that fails, with an error naming the file and the tune.
    """
    source = Path(path)
    wanted = parse_formats(formats)
    audio.check_max_audio(max_audio_seconds)
    _check_tools(wanted, soundfont)
    tunes = read_tunes(source)
    folder = Path(out_dir) if out_dir is not None else source.parent
    check_output_folder(folder)
    width = max(2, len(str(len(tunes))))
    results = []
    for i, tune in enumerate(tunes, start=1):
        stem = source.stem if len(tunes) == 1 else f"{source.stem}_{i:0{width}d}"
        name = f"{source.name} tune {i} ({_tune_name(tune.text)})"
        results.append(render_abc(tune.text, folder / stem, wanted, soundfont=soundfont,
                                  sample_rate=sample_rate, gain=gain, name=name, max_audio_seconds=max_audio_seconds))
    return results


def read_tunes(source: Path) -> list:
    """The tunes of an ABC file; ``ConfigError`` for a missing or unreadable file (naming it),
    ``AbcParseError`` for a file without a tune."""
    if not source.is_file():
        raise ConfigError(f"ABC file {str(source)!r} does not exist (or is not a file): give the path of an .abc file")
    text, reason = read_text(source)
    if text is None:
        raise ConfigError(f"cannot read ABC file {str(source)!r} ({reason}): give an ABC text file")
    tunes = split_tunes(text)
    if not tunes:
        raise AbcParseError(f"{source}: no ABC tune found (a tune needs a K: line)")
    return tunes
