"""The child process that runs verovio for :mod:`abcgen.render.sheet`.

Run as a script (``python -P this_file``; it imports nothing of abcgen, so the package's imports are not
paid again). It reads ``{"data", "input", "options", "inserts", "measures"}`` JSON on stdin and writes
``{"ok", "pages", "log", "measures", "inserted"}`` JSON on stdout (verovio's own messages go to stderr);
exit status 1 when verovio cannot load the input. verovio runs in a child process because its ABC importer
aborts the process on some malformed input, which must not take the caller down.

``inserts`` (``[[measure, "before" | "after", text], ...]``) is MEI text to put around the engraved
measures (0-based, in order) after verovio has read the input: the first and second endings and the key
changes its ABC importer does not draw (see :mod:`abcgen.render.verovio_fixes`). They are applied only when
verovio engraved exactly ``measures`` measures, so that they land where the ABC puts them; the reply says
whether they were (``inserted``) and how many measures there were.
"""

from __future__ import annotations

import json
import re
import sys

_MEASURE_START_RE = re.compile(r"<measure\b")
_MEASURE_END = "</measure>"
# A system break right after a measure: "smart" breaks take an <sb> only when a measure is the last thing
# before it, so an </ending> written after a measure goes after its <sb> (still inside the ending).
_SB_AFTER_RE = re.compile(r"\s*<sb\b[^>]*/>")


def measure_spans(mei: str) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of each ``<measure>`` element of an MEI document, in order (measures do
    not nest)."""
    spans = []
    for m in _MEASURE_START_RE.finditer(mei):
        tag_end = mei.index(">", m.start())
        if mei[tag_end - 1] == "/":  # <measure ... /> (verovio writes none, but it is valid MEI)
            spans.append((m.start(), tag_end + 1))
        else:
            spans.append((m.start(), mei.index(_MEASURE_END, tag_end) + len(_MEASURE_END)))
    return spans


def insert_at_measures(mei: str, inserts: list[list], spans: list[tuple[int, int]]) -> str:
    """``mei`` with each ``[measure, "before" | "after", text]`` of ``inserts`` put just before the start
    tag, or just after the end tag (and a system break right after it), of that measure; texts at the same
    place keep their order."""
    places = []
    for order, (measure, where, text) in enumerate(inserts):
        start, end = spans[measure]
        if where == "after" and (sb := _SB_AFTER_RE.match(mei, end)):
            end = sb.end()
        places.append((start if where == "before" else end, order, text))
    pieces, done = [], 0
    for offset, _, text in sorted(places):
        pieces += [mei[done:offset], text]
        done = offset
    return "".join(pieces) + mei[done:]


def main() -> int:
    import verovio

    request = json.load(sys.stdin)
    verovio.enableLog(verovio.LOG_WARNING)
    tk = verovio.toolkit()
    tk.setOptions(dict(request["options"], inputFrom=request["input"]))
    ok = bool(tk.loadData(request["data"]))
    inserts, measures, inserted = request.get("inserts") or [], None, False
    if ok and inserts:
        mei = tk.getMEI()
        spans = measure_spans(mei)
        measures = len(spans)
        if measures == request.get("measures"):
            tk.setOptions({"inputFrom": "mei"})
            inserted = bool(tk.loadData(insert_at_measures(mei, inserts, spans)))
            ok = inserted or bool(tk.loadData(mei))  # MEI verovio refuses: engrave what it read
    pages = [tk.renderToSVG(i) for i in range(1, tk.getPageCount() + 1)] if ok else []
    json.dump({"ok": ok, "pages": pages, "log": tk.getLog(), "measures": measures, "inserted": inserted}, sys.stdout)
    return 0 if ok and pages else 1


if __name__ == "__main__":
    sys.exit(main())
