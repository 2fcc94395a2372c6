"""MusicXML <-> ABC conversion through abctoolkit's bundled xml2abc / abc2xml.

``xml2abc`` is written as a command-line script: its conversion code reads the module global ``abcOut``
(the output object the script's ``__main__`` block creates) and writes progress to stderr. We build that
object ourselves, point its output at a ``StringIO`` and hold a lock while converting, so the module can
be used in-process (about 10 ms a chorale instead of ~150 ms for a Python subprocess).

The ABC we return is *normalised* for language-model training:

* unit length fixed to ``L:1/8`` (``-d 8``) so every tune counts in the same units;
* one line per voice (``-x`` plus an unlimited line width), so a voice body is ``V:n`` + one line;
* the header keeps only ``X: T: C: L: M: Q:`` and the ``V:`` definitions, moved *before* ``K:`` so that
  ``K:`` is the last header line (the validity checks downstream expect that; ABC 2.1 allows ``V:`` in
  the header);
* bars separated by exactly one space (see :func:`abcgen.notation.voices.split_bar_texts`);
* ``%N`` bar-number comments, other ``%`` comments, ``%%`` directives (``%%score`` is layout only),
  ``I:`` fields and ``w:``/``W:`` lyric lines are removed (lyrics break abctoolkit's multi-voice code and
  carry no musical content for us).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading
import warnings
import xml.etree.ElementTree as ET
import zipfile
from types import SimpleNamespace

from abcgen.errors import ConversionError
from abcgen.notation.voices import split_bar_texts, strip_abc_comment

logger = logging.getLogger(__name__)

__all__ = ["abc_to_musicxml", "clean_xml2abc_output", "musicxml_to_abc"]

# xml2abc keeps its state in module globals; two threads converting at once would corrupt each other.
_XML2ABC_LOCK = threading.Lock()

# Header fields we keep (besides V:, handled separately). Everything else xml2abc writes is layout.
_KEPT_HEADER_FIELDS = ("X:", "T:", "C:", "L:", "M:", "Q:", "K:")

# Lines too wide to wrap: -n with this value means "never break a voice line".
_NO_LINE_LIMIT = 10**9


def _xml2abc_options(unit_denominator: int) -> SimpleNamespace:
    """The option object xml2abc's ``__main__`` would build from ``-d D -x -n <huge>``.

    ``c=0`` (credit filter) keeps credit texts only when the score has no title: the chorales' credit
    lines ("Harmonized by J.S. Bach", copyright notices) are noise for a model.
    """
    return SimpleNamespace(
        u=False,  # do not unfold repeats: keep the bar structure of the score
        m=0,  # no %%MIDI directives
        c=0,
        d=unit_denominator,
        n=_NO_LINE_LIMIT,
        b=0,
        o="",
        v=0,
        x=True,  # ignore the score's own system breaks
        p=[],
        j=False,
        t=False,
        s=False,
        v1=False,
        ped=True,
        stm=False,
        i=False,
    )


def _describe(source: str | os.PathLike[str] | bytes) -> str:
    """A short name for ``source`` in error messages."""
    if isinstance(source, bytes):
        return f"<{len(source)} bytes of MusicXML>"
    return os.fspath(source)


def _read_musicxml_bytes(source: str | os.PathLike[str] | bytes) -> bytes:
    """Return the uncompressed MusicXML document of ``source`` (a path or the file's bytes).

    ``.mxl`` archives are recognised by their zip signature rather than their extension, so bytes work
    too. The root file is taken from ``META-INF/container.xml`` when present (the standard way), else
    the first ``.xml``/``.musicxml`` member outside ``META-INF`` (what xml2abc itself does).
    """
    name = _describe(source)
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ConversionError(f"cannot read MusicXML file {name}: {exc}") from exc
    if not data.strip():
        raise ConversionError(f"MusicXML input {name} is empty")
    if not data.startswith(b"PK"):
        return _require_partwise(data, name)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.namelist()
            root: str | None = None
            if "META-INF/container.xml" in members:
                container = ET.fromstring(archive.read("META-INF/container.xml"))
                for element in container.iter():
                    if element.tag.endswith("rootfile") and element.get("full-path"):
                        root = element.get("full-path")
                        break
            if root is None or root not in members:
                candidates = [
                    m
                    for m in members
                    if not m.startswith("META-INF") and m.lower().endswith((".xml", ".musicxml"))
                ]
                if not candidates:
                    raise ConversionError(f"compressed MusicXML {name} holds no .xml/.musicxml score")
                root = candidates[0]
            return _require_partwise(archive.read(root), name)
    except (zipfile.BadZipFile, ET.ParseError, KeyError) as exc:
        raise ConversionError(f"cannot unpack compressed MusicXML {name}: {exc}") from exc


def _require_partwise(data: bytes, name: str) -> bytes:
    """``data`` if it looks like a partwise MusicXML score, else ConversionError.

    xml2abc only reads ``<score-partwise>``; on other XML it fails with an unhelpful TypeError, so we
    check the root element's name near the start of the document (after the prolog and DOCTYPE).
    """
    if b"<score-partwise" not in data[:20000]:
        kind = (
            "timewise MusicXML (convert it to partwise first)"
            if b"<score-timewise" in data[:20000]
            else ("not a MusicXML score")
        )
        raise ConversionError(f"{name} is {kind}")
    return data


def clean_xml2abc_output(abc: str) -> str:
    """Normalise xml2abc output into the project's multi-voice form (see the module docstring).

    Result: header (``X:``, ``T:``..., ``C:``..., ``L:``, ``Q:``, ``M:``, ``V:`` definitions, ``K:``)
    followed by ``V:n`` / one body line per voice, all whitespace-stripped, ending with a newline.
    """
    header: list[str] = []
    voice_defs: list[str] = []
    key_line: str | None = None
    body: list[str] = []
    defined: set[str] = set()
    in_body = False
    for raw in abc.splitlines():
        line = raw.rstrip()
        if line.startswith("%%"):
            continue  # layout directives (%%score, %%pagewidth, ...)
        line = strip_abc_comment(line).strip()
        if not line:
            continue
        if re.match(r"^[wW]:", line) or line.startswith("I:"):
            continue  # lyrics; I:repbra and other instructions are layout only
        if line.startswith("V:"):
            voice_id = line[2:].split()[0] if line[2:].split() else ""
            if in_body or voice_id in defined:
                # xml2abc writes all definitions first; a V: line naming a defined voice starts the body.
                in_body = True
                body.append(f"V:{voice_id}")
            else:
                defined.add(voice_id)
                voice_defs.append(line)
            continue
        if in_body:
            if re.match(r"^[A-Za-z]:", line) and not line.startswith(("K:", "L:", "M:", "Q:")):
                continue  # stray information fields in the body (N:, Z:, ...)
            # One space between bars: xml2abc usually writes "| " but glues "|[M:3/4]" and '||"^text"',
            # and the interleave round trip relies on a single layout.
            body.append(" ".join(split_bar_texts(line)))
            continue
        if line.startswith("K:"):
            key_line = line
        elif line.startswith(_KEPT_HEADER_FIELDS):
            if line not in header:  # xml2abc repeats T: when work and movement title agree
                header.append(line)
        else:
            logger.debug("dropping header line %r", line)
    if key_line is None:
        raise ConversionError("xml2abc output has no K: line")
    if not voice_defs and not body:
        raise ConversionError("xml2abc output has no music")
    return "\n".join([*header, *voice_defs, key_line, *body]) + "\n"


def musicxml_to_abc(source: str | os.PathLike[str] | bytes, *, unit_denominator: int = 8) -> str:
    """Convert a MusicXML score (``.mxl``, ``.musicxml`` or ``.xml`` path, or the file's bytes) to ABC.

    The result is normalised by :func:`clean_xml2abc_output`. ``unit_denominator`` is the ``L:1/D``
    every voice is written in (xml2abc's ``-d``).

    Raises ConversionError (naming the input) when the file cannot be read, is not MusicXML or holds no
    notes.
    """
    from abctoolkit import xml2abc  # imported late: it is heavy and only needed here

    name = _describe(source)
    data = _read_musicxml_bytes(source)
    options = _xml2abc_options(unit_denominator)
    out = io.StringIO()
    messages = io.StringIO()
    with _XML2ABC_LOCK:
        xml2abc.abcOut = xml2abc.ABCoutput("score.abc", "", 0, options)
        xml2abc.abcOut.outfile = out
        parser = xml2abc.Parser(options)
        try:
            with contextlib.redirect_stdout(messages), contextlib.redirect_stderr(messages):
                parser.parse(io.BytesIO(data))
        except Exception as exc:  # xml2abc raises anything from ParseError to IndexError on bad input
            raise ConversionError(f"xml2abc could not convert {name}: {type(exc).__name__}: {exc}") from exc
        finally:
            xml2abc.abcOut = None  # do not keep the last score alive in a module global
    for message in messages.getvalue().splitlines():
        logger.debug("xml2abc (%s): %s", name, message)
    text = out.getvalue()
    if not text.strip():
        raise ConversionError(
            f"xml2abc wrote nothing for {name}: {messages.getvalue().strip() or 'no notes'}"
        )
    try:
        return clean_xml2abc_output(text)
    except ConversionError as exc:
        raise ConversionError(f"{exc} (converting {name})") from exc


def abc_to_musicxml(abc: str) -> str:
    """Convert one ABC tune to a MusicXML document (a string) with abctoolkit's abc2xml.

    abc2xml prints parse errors and returns no document instead of raising; we capture its output and
    raise ConversionError carrying the messages.
    """
    messages = io.StringIO()
    with (
        contextlib.redirect_stdout(messages),
        contextlib.redirect_stderr(messages),
        warnings.catch_warnings(),
    ):
        # abc2xml uses pyparsing's camelCase API, which warns at import and on every call; nothing we can
        # act on. Imported late: building its grammar takes a while and only this function needs it.
        warnings.simplefilter("ignore", DeprecationWarning)
        from abctoolkit import abc2xml

        try:
            docs = abc2xml.getXmlDocs(abc)
        except Exception as exc:  # defensive: getXmlDocs catches most errors itself
            raise ConversionError(f"abc2xml failed: {type(exc).__name__}: {exc}") from exc
    for message in messages.getvalue().splitlines():
        logger.debug("abc2xml: %s", message)
    if not docs:
        detail = messages.getvalue().strip() or "no tune found"
        raise ConversionError(f"abc2xml could not convert the tune: {detail}")
    return abc2xml.fixDoctype(docs[0])
