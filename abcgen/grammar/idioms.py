"""Which folk idioms a corpus uses, so the grammar allows what the model was trained on.

``idioms_in_corpus(texts)`` lexes every tune with the project's lexer and gives, per idiom rule of the
grammar, the share of tunes that use the construct at least once: ``broken`` (``A>B``), ``tuplets``
(``(3ABc``), ``ties`` (``A2-A``), ``grace`` (``{g}A``), ``decorations`` (``~A``, ``.A``, ``!trill!A``),
``slurs`` (``(AB)``), ``chord_symbols`` (quoted chord names ``"Am"``; fingerings such as ``"4"`` do not
count) and ``chords`` (``[ceg]``), and one structure (``STRUCTURES``): ``endings`` (first and second
endings, ``|1 ... :|2``), which the pipeline writes in a ``form`` where the corpus uses them (at least
``MIN_ENDINGS_SHARE`` of its tunes). ``idioms_from_shares`` turns the idiom shares into the set
``AbcConstraint(idioms=...)`` takes: the idioms used by at least ``MIN_IDIOM_SHARE`` of the tunes (one tune
in a hundred: below that an idiom is the odd exception of a collection, not its style).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from abcgen.errors import AbcParseError
from abcgen.grammar.vocabulary import CHORD_NAME_RE
from abcgen.notation import events as ev

logger = logging.getLogger(__name__)

IDIOMS = ("broken", "tuplets", "ties", "grace", "decorations", "slurs", "chord_symbols", "chords")
STRUCTURES = ("endings",)
MIN_IDIOM_SHARE = 0.01
MIN_ENDINGS_SHARE = 0.05

_KIND_IDIOM = {ev.BROKEN: "broken", ev.TUPLET: "tuplets", ev.TIE: "ties", ev.GRACE: "grace",
               ev.DECORATION: "decorations", ev.SLUR_OPEN: "slurs", ev.CHORD: "chords"}


def tune_idioms(abc: str) -> set[str]:
    """The idioms one tune uses (raises ``AbcParseError`` for a tune the lexer rejects)."""
    return tune_constructs(abc) & set(IDIOMS)


def tune_constructs(abc: str) -> set[str]:
    """The idioms one tune uses, and the ``STRUCTURES`` (``"endings"`` when it has first/second endings)."""
    from abcgen.notation.tune import parse_tune  # the tune parser is only needed here

    used: set[str] = set()
    for event in parse_tune(abc).events():
        name = _KIND_IDIOM.get(event.kind)
        if name is not None:
            used.add(name)
        elif event.kind == ev.CHORD_SYMBOL and CHORD_NAME_RE.fullmatch(event.text[1:-1]):
            used.add("chord_symbols")
        elif event.kind == ev.ENDING or (event.kind == ev.BAR and any(c.isdigit() for c in event.text)):
            used.add("endings")
    return used


def idioms_in_corpus(texts: Iterable[str]) -> dict[str, float]:
    """Per idiom, the share of the tunes in ``texts`` (whole tunes, header and body) that use it; tunes
    the lexer rejects are skipped (and counted in the log)."""
    counts = dict.fromkeys((*IDIOMS, *STRUCTURES), 0)
    tunes = skipped = 0
    for abc in texts:
        try:
            used = tune_constructs(abc)
        except AbcParseError:
            skipped += 1
            continue
        tunes += 1
        for name in used:
            counts[name] += 1
    if skipped:
        logger.info("idioms_in_corpus: %d tunes the lexer rejects were skipped", skipped)
    return {name: round(count / tunes, 4) if tunes else 0.0 for name, count in counts.items()}


def idioms_from_shares(shares: Mapping[str, float], min_share: float = MIN_IDIOM_SHARE) -> set[str]:
    """The idioms with a share of at least ``min_share`` (structures such as ``endings`` are not idioms
    and are left out; other names not in ``IDIOMS`` are kept, so the grammar refuses them by name)."""
    return {name for name, share in shares.items() if share >= min_share and name not in STRUCTURES}


__all__ = ["IDIOMS", "MIN_ENDINGS_SHARE", "MIN_IDIOM_SHARE", "STRUCTURES", "idioms_from_shares", "idioms_in_corpus",
           "tune_constructs", "tune_idioms"]
