"""Musical units: which pieces of ABC become single tokens, counted from a corpus.

The unit is one *lexer event text* of a kind that carries music on its own: a note with its accidental,
octave marks and duration (``^c'3/2``), a rest with its duration (``z2``), a bar line (``|:``, ``:|2``),
an ending, a tuplet (``(3``), broken rhythm (``>>``), a decoration (``!trill!``), a chord symbol
(``"Am"``) or an inline field (``[K:G]``). Chords (``[CEG]2``) and grace groups (``{gag}``) are left
out: they combine other units, so they are rarely repeated as a whole.

Only units of two characters or more become added tokens. A one-character unit (``A``, ``|``, ``z``)
is already a single token of any byte-level base vocabulary, and an *added* token is matched anywhere in
the text -- ``e`` as an added token would also cut every ``e`` out of ``T:Reel`` and ``O:Irland``. The
tokenizer instead isolates music units in body lines with a pre-tokenizer (see ``extend.py``), so a
one-character unit still ends up as one base token.

Measured on the embedded corpus (12,747 normalised tunes from music21's oneills1850, ryansMammoth,
airdsAirs, miscFolk and essenFolksong; 2,185,551 body characters; ``abcgen/assets/abc_units.json``):
721 distinct multi-character candidates cover 41.6 % of body characters. Keeping those seen at least
20 times gives 293 units (256 notes, 10 bar lines, 12 chord symbols, 7 rests, 4 inline fields, 2 endings,
1 tuplet, 1 broken rhythm) covering 41.3 % of body characters and 99.5 % of candidate occurrences;
``min_count`` 5 would give 442 units for +0.2 points, 100 gives 162 units for -0.9 points. The cap of
1,024 does not bind on this corpus; it guards against a large or noisy corpus. The rest of the body is
one-character units (single notes, ``|``, spaces), which the pre-tokenizer isolates.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from abcgen.errors import AbcParseError, ConfigError
from abcgen.notation import events as ev
from abcgen.notation.tune import normalise_abc, parse_tune, split_tunes
from abcgen.versioned import read_versioned, write_versioned

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SPEC_FILENAME = "abc_units.json"
# The shipped default spec is package data (``abcgen/assets/``), so a wheel install has it too;
# ``regenerate_default_spec`` rewrites it.
DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[1] / "assets" / SPEC_FILENAME

# Event kinds whose texts may become units (see the module docstring for what is left out and why).
UNIT_KINDS: tuple[str, ...] = (
    ev.NOTE,
    ev.REST,
    ev.BAR,
    ev.ENDING,
    ev.TUPLET,
    ev.BROKEN,
    ev.DECORATION,
    ev.CHORD_SYMBOL,
    ev.FIELD,
)

# A unit must occur this often in the training bodies: below it the model sees too few examples for a
# fresh embedding to learn anything, and the base tokenizer's pieces are a better start.
DEFAULT_MIN_COUNT = 20
# Upper bound on the number of unit tokens: each costs an embedding row (and an output row when untied).
DEFAULT_MAX_UNITS = 1024

# The music21 collections the shipped spec is counted from (the embedded corpus, ABC files only).
EMBEDDED_COLLECTIONS: tuple[str, ...] = ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk", "essenFolksong")

EventTexts = Callable[[str], Sequence[tuple[str, str]]]


@dataclass(frozen=True)
class Unit:
    """One unit token: its exact text, the lexer event kind and its count in the counted bodies."""

    text: str
    kind: str
    count: int


@dataclass
class UnitCounts:
    """Raw counts over tune bodies: ``counts[(kind, text)]`` plus character totals for coverage."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    num_tunes: int = 0
    num_skipped: int = 0  # tunes the lexer rejected (their bodies are not counted)
    body_chars: int = 0

    def add(self, other: UnitCounts) -> None:
        """Merge another count into this one (for counting in chunks)."""
        self.counts.update(other.counts)
        self.num_tunes += other.num_tunes
        self.num_skipped += other.num_skipped
        self.body_chars += other.body_chars


@dataclass
class UnitSpec:
    """The versioned list of unit tokens, with how it was chosen (saved as ``abc_units.json``)."""

    units: list[Unit]
    min_count: int = DEFAULT_MIN_COUNT
    max_units: int = DEFAULT_MAX_UNITS
    source: str = ""
    stats: dict[str, float | int] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """The unit token texts, most frequent first."""
        return [unit.text for unit in self.units]

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON; ``path`` may be a folder (then ``abc_units.json`` inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILENAME
        payload = {
            "source": self.source,
            "min_count": self.min_count,
            "max_units": self.max_units,
            "stats": self.stats,
            "units": [asdict(unit) for unit in self.units],
        }
        return write_versioned(path, "unit spec", SCHEMA_VERSION, payload)

    @classmethod
    def load(cls, path: str | Path) -> UnitSpec:
        """Read a spec written by ``save``; a folder means its ``abc_units.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILENAME
        if not path.is_file():
            raise ConfigError(f"unit spec {str(path)!r} does not exist; pass a file written by UnitSpec.save "
                              f"or leave it out to use the shipped {DEFAULT_SPEC_PATH}")
        payload = read_versioned(path, "unit spec", SCHEMA_VERSION,
                                 fix="regenerate it with `python -m abcgen.tokenization.units`")
        return cls(
            units=[Unit(**unit) for unit in payload["units"]],
            min_count=payload.get("min_count", DEFAULT_MIN_COUNT),
            max_units=payload.get("max_units", DEFAULT_MAX_UNITS),
            source=payload.get("source", ""),
            stats=payload.get("stats", {}),
        )


def load_default_spec() -> UnitSpec:
    """The shipped spec ``abcgen/assets/abc_units.json``."""
    return UnitSpec.load(DEFAULT_SPEC_PATH)


def tune_event_texts(abc: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of every body event of one tune, lexed with the tune's own ``L:`` and ``M:``."""
    # Imported here so that reading a spec does not pull in the notation package's parser.

    return [(event.kind, event.text) for event in parse_tune(abc).events()]


def is_candidate(kind: str, text: str) -> bool:
    """Whether an event text may become an added token (see the module docstring for why)."""
    return (
        kind in UNIT_KINDS
        and len(text) >= 2
        # Printable ASCII only: byte-level decoders map Latin-1 characters of added tokens to single
        # bytes, which breaks decoding; and whitespace inside a unit would swallow the spaces around it.
        and all(33 <= ord(ch) < 127 for ch in text)
    )


def count_units(abc_texts: Iterable[str], event_texts: EventTexts = tune_event_texts) -> UnitCounts:
    """Count candidate unit texts over the bodies of whole tunes (header + body, as in the corpus).

    Tunes the lexer rejects are skipped and counted in ``num_skipped`` (the corpus builder already drops
    them, so this only happens on raw input)."""
    counts = UnitCounts()
    for abc in abc_texts:
        try:
            events = event_texts(abc)
        except AbcParseError as exc:
            counts.num_skipped += 1
            logger.debug("skipping a tune the lexer rejects: %s", exc)
            continue
        counts.num_tunes += 1
        for kind, text in events:
            counts.body_chars += len(text)
            if is_candidate(kind, text):
                counts.counts[(kind, text)] += 1
    return counts


def select_units(
    counts: UnitCounts,
    min_count: int = DEFAULT_MIN_COUNT,
    max_units: int = DEFAULT_MAX_UNITS,
    source: str = "",
) -> UnitSpec:
    """Keep the units seen at least ``min_count`` times, most frequent first, at most ``max_units``.

    ``stats`` records the numbers the choice is judged by: how many candidates there were, and what share
    of all body characters the kept units (and all candidates) cover."""
    if min_count < 1 or max_units < 0:
        raise ConfigError(f"min_count={min_count} and max_units={max_units}: need min_count >= 1 and max_units >= 0")
    by_text: Counter[str] = Counter()
    kind_of: dict[str, str] = {}
    for (kind, text), count in counts.counts.items():
        by_text[text] += count
        kind_of.setdefault(text, kind)  # the same text as two kinds is not expected; first kind wins
    ranked = sorted(by_text.items(), key=lambda item: (-item[1], item[0]))  # text breaks ties: stable spec
    kept = [Unit(text, kind_of[text], count) for text, count in ranked if count >= min_count][:max_units]
    candidate_chars = sum(len(text) * count for text, count in by_text.items())
    kept_chars = sum(len(unit.text) * unit.count for unit in kept)
    body_chars = max(counts.body_chars, 1)
    stats: dict[str, float | int] = {
        "num_tunes": counts.num_tunes,
        "num_skipped": counts.num_skipped,
        "body_chars": counts.body_chars,
        "num_candidates": len(by_text),
        "num_units": len(kept),
        "candidate_char_share": round(candidate_chars / body_chars, 4),
        "unit_char_share": round(kept_chars / body_chars, 4),
        "unit_occurrence_share": round(sum(u.count for u in kept) / max(sum(by_text.values()), 1), 4),
    }
    kinds = Counter(unit.kind for unit in kept)
    stats.update({f"num_units_{kind}": num for kind, num in sorted(kinds.items())})
    return UnitSpec(units=kept, min_count=min_count, max_units=max_units, source=source, stats=stats)


def build_unit_spec(
    abc_texts: Iterable[str],
    min_count: int = DEFAULT_MIN_COUNT,
    max_units: int = DEFAULT_MAX_UNITS,
    source: str = "",
) -> UnitSpec:
    """``select_units(count_units(abc_texts), ...)`` -- the spec of a corpus split."""
    return select_units(count_units(abc_texts), min_count=min_count, max_units=max_units, source=source)


def embedded_corpus_tunes(collections: Sequence[str] = EMBEDDED_COLLECTIONS) -> list[str]:
    """Normalised tunes of music21's embedded ABC collections (the lead's normaliser; rejects skipped)."""
    import music21  # heavy import; only needed to regenerate the shipped spec


    root = Path(music21.__file__).parent / "corpus"
    tunes: list[str] = []
    num_rejected = 0
    for name in collections:
        for path in sorted((root / name).glob("*.abc")):
            for tune in split_tunes(path.read_text(encoding="utf-8", errors="replace")):
                try:
                    tunes.append(normalise_abc(tune.text, name=f"{path.name}#{tune.index}"))
                except AbcParseError:
                    num_rejected += 1
    logger.info("embedded corpus: %d tunes normalised, %d rejected by the normaliser", len(tunes), num_rejected)
    return tunes


def regenerate_default_spec(
    path: str | Path = DEFAULT_SPEC_PATH, min_count: int = DEFAULT_MIN_COUNT, max_units: int = DEFAULT_MAX_UNITS
) -> UnitSpec:
    """Recount the units over the embedded corpus and rewrite the shipped spec (about 30 s)."""
    tunes = embedded_corpus_tunes()
    spec = build_unit_spec(tunes, min_count=min_count, max_units=max_units,
                           source="music21 embedded corpus: " + ", ".join(EMBEDDED_COLLECTIONS))
    spec.save(path)
    logger.info("wrote %s: %d units (%s)", path, len(spec.units), spec.stats)
    return spec


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m abcgen.tokenization.units [--out PATH]``: regenerate the shipped unit spec."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default=str(DEFAULT_SPEC_PATH), help="where to write the spec")
    parser.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT, help="keep units seen this often")
    parser.add_argument("--max-units", type=int, default=DEFAULT_MAX_UNITS, help="at most this many units")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    regenerate_default_spec(args.out, min_count=args.min_count, max_units=args.max_units)


if __name__ == "__main__":
    main()
