"""``svg``: the normalised tune engraved by verovio (in a child process); ``png``: that SVG rasterised by
cairosvg (see :mod:`abcgen.render`)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from abcgen._extras import require
from abcgen.errors import AbcParseError, ConversionError, ToolNotFoundError
from abcgen.notation.bars import events_by_voice
from abcgen.notation.events import CHORD, NOTE
from abcgen.notation.musicxml import abc_to_musicxml
from abcgen.notation.tune import normalise_tune
from abcgen.render._tools import TOOL_TIMEOUT_S, tail
from abcgen.render.verovio_fixes import EngravingInput, engraved_measures, engraving_input

logger = logging.getLogger(__name__)

# verovio layout: the whole score on one page (adjustPageHeight trims it to the music); pages beyond the
# 60000-unit maximum are stacked into one SVG. Systems follow the ABC's lines, as a musician wrote them
# (4 bars a line in most tunes): "smart" breaks take an encoded system break when the system is at least
# breaksSmartSb full, so 0 takes every one, and still break a line too long for the page ("line" and
# "encoded" would squeeze a 16-bar line into one system; "auto", the default, ignores the ABC's lines).
_VEROVIO_OPTIONS: dict[str, object] = {
    "pageHeight": 60000,
    "adjustPageHeight": True,
    "footer": "none",
    "breaks": "smart",
    "breaksSmartSb": 0.0,
}

# The child process that runs verovio (see its docstring), run by path: "-P" keeps its own folder off
# sys.path (abcgen/render/ holds modules named like others, e.g. midi.py, audio.py).
_VEROVIO_CHILD = Path(__file__).with_name("_verovio_child.py")

_SVG_SIZE_RE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)(?:px)?"[^>]*?\bheight="([\d.]+)(?:px)?"')


def _import_cairosvg():  # noqa: ANN202 -- the cairosvg module
    require("cairosvg", extra="render")
    try:
        import cairosvg
    except OSError as exc:  # cairocffi finds no libcairo
        raise ToolNotFoundError(
            f"cairosvg cannot load the cairo library ({exc}); install it with: apt-get install libcairo2"
        ) from exc
    return cairosvg


def check_sheet_tools(formats: Sequence[str]) -> None:
    """Raise ToolNotFoundError (naming the extra or the Debian package) when verovio, or cairosvg and its
    cairo library, are missing for the sheet-music formats among ``formats``."""
    if set(formats) & {"svg", "png"}:
        require("verovio", extra="render")
    if "png" in formats:
        _import_cairosvg()


def _is_multi_voice(tune) -> bool:  # noqa: ANN001 -- abcgen.notation.tune.Tune
    return len(events_by_voice(tune.events())) > 1


def _run_verovio(data: str, input_from: str, name: str, fix: EngravingInput | None = None) -> list[str]:
    """verovio's SVG pages of ``data`` (``input_from``: "abc" or "musicxml"), engraved in a child process;
    ``fix`` adds the MEI its ABC importer cannot read (endings, key changes; see verovio_fixes)."""
    request = json.dumps({"data": data, "input": input_from, "options": _VEROVIO_OPTIONS,
                          "inserts": fix.inserts if fix else [], "measures": fix.measures if fix else None})
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    try:
        result = subprocess.run([sys.executable, "-P", str(_VEROVIO_CHILD)], input=request, capture_output=True,
                                text=True, errors="replace", timeout=TOOL_TIMEOUT_S, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"verovio did not engrave tune {name!r} within {TOOL_TIMEOUT_S} s") from exc
    try:
        reply = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        reply = {}
    log = str(reply.get("log", ""))
    pages = [p for p in reply.get("pages", []) if isinstance(p, str)]
    if result.returncode != 0 or not pages:
        detail = tail(f"{log}\n{result.stderr}")
        raise ConversionError(
            f"verovio could not engrave tune {name!r} from {input_from} (exit status {result.returncode}): {detail}"
        )
    if (log + result.stderr).strip():
        logger.debug("verovio (%s): %s", name, tail(f"{log}\n{result.stderr}"))
    if fix and fix.inserts and reply.get("measures") == fix.measures and not reply.get("inserted"):
        logger.warning("sheet music of tune %r: verovio refused the endings and key changes added to it; they "
                       "are not drawn", name)
    return pages


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


def render_svg(abc: str, name: str, title: str | None = None) -> str:
    """The tune engraved by verovio, as SVG text (see the :mod:`abcgen.render` docstring); ``title`` is
    drawn as the title of a tune without ``T:`` (the renderer passes the output file's stem)."""
    tune = normalise_tune(abc, name=name)  # AbcParseError, saying where, for ABC that cannot be read
    if not any(event.kind in (NOTE, CHORD) for event in tune.events()):
        dropped = "; ".join(tune.dropped)[-300:]
        raise AbcParseError(
            "no notes left to engrave once the tune is normalised"
            + (f" (dropped as not music: {dropped})" if dropped else ""),
            tune=name,
        )
    if _is_multi_voice(tune):
        text = tune.to_abc()
        if title and not tune.title:
            text = re.sub(r"^(X:[^\n]*\n)", lambda m: f"{m.group(1)}T:{title}\n", text, count=1)
        try:
            xml = abc_to_musicxml(text)
        except ConversionError as exc:
            raise ConversionError(f"sheet music for tune {name!r}: {exc}") from exc
        return _stack_pages(_run_verovio(xml, "musicxml", name))
    # verovio's own ABC importer, on ABC respelled where it misreads the tune (verovio_fixes)
    fix = engraving_input(tune, title)
    svg = _stack_pages(_run_verovio(fix.abc, "abc", name, fix))
    engraved = engraved_measures(svg)
    if engraved != fix.measures:  # a misreading verovio_fixes does not know of
        logger.warning("sheet music of tune %r has %d measures where the ABC has %d bars%s", name, engraved,
                       fix.measures, "; its endings and key changes are not drawn" if fix.inserts else "")
    return svg


def render_png(svg: str, out: Path, name: str) -> None:
    """Rasterise ``svg`` to ``out`` on a white background; ConversionError naming the tune on failure."""
    cairosvg = _import_cairosvg()
    try:
        cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(out), background_color="white")
    except Exception as exc:  # cairosvg raises assorted parser/cairo errors
        raise ConversionError(f"cairosvg could not rasterise tune {name!r}: {type(exc).__name__}: {exc}") from exc
