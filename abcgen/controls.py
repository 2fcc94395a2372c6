"""Conditions ("controls") a tune can be generated under: the registry, and the vocabulary of their values.

A control is a (name, value) pair such as ``("rhythm", "jig")``. Each becomes one added token
``<rhythm=jig>`` (spaces in values become ``_``). The corpus builder counts the values it sees and writes
``control_vocabulary.json``; the tokenizer turns every value into a token; the pipeline checks requested
conditions against the same file. Values are spelt by the corpus labeller
(``abcgen.corpus.labels.normalise_label``); a look-up goes through the same function.

**The registry** (``CONDITIONS``, ``register``): each condition is declared once, as a ``Condition`` --
its corpus column, how a row and a request become its label, how the pipeline and the CLI accept it,
how evaluation draws it from a real tune and which metric scores adherence. The corpus columns, the
control vocabulary, the prompt prefix order, the pipeline's arguments, the ``abcgen generate`` flags,
evaluation's draws and the model card all read it (``conditions()``, ``condition_names()``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abcgen.corpus.labels import normalise_label
from abcgen.errors import ConfigError
from abcgen.versioned import read_versioned, write_versioned

SCHEMA_VERSION = 1
FILENAME = "control_vocabulary.json"

# Values with fewer occurrences than this in the training split are folded into "other" so that the
# tokenizer does not grow a token per typo (Essen's free-text genres would add ~2,000 tokens).
DEFAULT_MIN_COUNT = 5
OTHER = "other"


def control_token(name: str, value: str) -> str:
    """The token text of one condition: ``control_token("key", "D major") == "<key=D_major>"``."""
    return f"<{name}={str(value).replace(' ', '_')}>"


def bars_bucket(num_bars: int) -> str:
    """Bar counts are conditioned in buckets (8, 16, 24, 32, 48, 64, more) -- exact counts are sparse."""
    for edge in (8, 16, 24, 32, 48, 64):
        if num_bars <= edge:
            return str(edge)
    return "more"


# --- the registry --------------------------------------------------------------------------------------

# How evaluation draws a condition from a real tune (``abcgen.evaluation.generate.draw_requests``):
DRAW_HEADER = "header"  # always asked when the tune has it (the pipeline writes it into the header)
DRAW_CAPPED = "capped"  # an integer column, asked capped at ``max_bars`` (the bar count)
DRAW_LABEL = "label"  # asked when the model was trained with it and knows the value
DRAW_NEVER = "never"


@dataclass(frozen=True)
class Condition:
    """One condition, declared once. ``name`` is its control-token name and pipeline argument.

    * ``column``: the corpus column its label is read from (``num_bars`` for ``bars``).
    * ``derive``: ``Tune -> value`` for a column the corpus builder does not fill itself (a new condition);
      the built-in columns come from ``abcgen.corpus.labels.header_labels`` and ``corpus.build.tune_row``.
    * ``from_row``: corpus row -> label (``""`` = none); default: the column's text.
    * ``normalise``: a value -> its corpus spelling (``slipjig`` -> ``slip jig``); default
      ``normalise_label(name, value)``.
    * ``from_request``: a pipeline argument as a user spells it -> label (``key="D"`` -> ``D major``);
      default ``normalise``.
    * ``structural``: the pipeline writes it into the header or enforces it with the constraint, so a
      model trained without its token still honours it.
    * ``arg_type``/``help``/``example``: how the pipeline checks it and ``abcgen generate`` offers it
      (``--unit-length`` for ``unit_length``).
    * ``draw``: how evaluation asks for it (``DRAW_*``); ``adherence``: the report metric that scores it.
    * ``whole_tune``: describes a whole tune, so the VAE's bar segments leave it out.
    * ``summary``: counted in the corpus summary's label table.
    """

    name: str
    column: str = ""
    help: str = ""
    example: str = ""
    arg_type: type = str
    structural: bool = False
    draw: str = DRAW_LABEL
    adherence: str = ""
    whole_tune: bool = False
    summary: bool = True
    derive: Callable[[Any], object] | None = None
    from_row: Callable[[Mapping[str, object]], str] | None = None
    normalise: Callable[[object], str] | None = None
    from_request: Callable[[object], str] | None = None

    @property
    def flag(self) -> str:
        """The ``abcgen generate`` option: ``--unit-length``."""
        return "--" + self.name.replace("_", "-")

    @property
    def corpus_column(self) -> str:
        return self.column or self.name

    def label_of_row(self, row: Mapping[str, object]) -> str:
        if self.from_row is not None:
            return self.from_row(row)
        value = row.get(self.corpus_column)
        return "" if value in (None, "") else str(value)

    def spell(self, value: object) -> str:
        return self.normalise(value) if self.normalise is not None else normalise_label(self.name, value)

    def label_of_request(self, value: object) -> str:
        return self.from_request(value) if self.from_request is not None else self.spell(value)


def _bars_of_row(row: Mapping[str, object]) -> str:
    num_bars = int(row.get("num_bars") or 0)  # type: ignore[call-overload]
    return bars_bucket(num_bars) if num_bars else ""


def _key_label(value: object) -> str:
    from abcgen.notation.keys import parse_key

    return parse_key(str(value)).label


# The built-in conditions, in the order their tokens appear in a prompt prefix.
_BUILTIN = (
    Condition("key", help="key, e.g. D, Ador, 'E minor'", example="D", structural=True, draw=DRAW_HEADER,
              adherence="key_adherence", from_request=_key_label),
    Condition("meter", help="meter, e.g. 6/8, 4/4, C", example="6/8", structural=True, draw=DRAW_HEADER,
              adherence="meter_adherence"),
    Condition("unit_length", help="unit note length (L:), e.g. 1/8", example="1/8", structural=True,
              draw=DRAW_HEADER, summary=False),
    Condition("rhythm", help="tune type, e.g. jig, reel, waltz", example="jig", adherence="rhythm_adherence"),
    Condition("origin", help="origin, e.g. ireland", example="Ireland", adherence="origin_adherence"),
    Condition("composer", help="composer, e.g. traditional", example="Bach"),
    Condition("form", help="section letters, e.g. AABB", example="AABB", structural=True,
              adherence="form_adherence", whole_tune=True),
    Condition("bars", column="num_bars", help="number of bars of the tune", example="16", arg_type=int,
              structural=True, draw=DRAW_CAPPED, adherence="bars_adherence", whole_tune=True, summary=False,
              from_row=_bars_of_row, from_request=lambda value: bars_bucket(int(value))),  # type: ignore[call-overload]
    Condition("tempo", help="tempo class: slow, moderate or fast", example="fast"),
)

CONDITIONS: dict[str, Condition] = {c.name: c for c in _BUILTIN}

# The built-in names in prefix order (a constant for defaults; ``condition_names()`` includes registered ones).
CONTROL_NAMES: tuple[str, ...] = tuple(CONDITIONS)


def conditions() -> tuple[Condition, ...]:
    """Every registered condition, in prefix order."""
    return tuple(CONDITIONS.values())


def condition_names() -> tuple[str, ...]:
    """The names of every registered condition, in prefix order."""
    return tuple(CONDITIONS)


def get_condition(name: str) -> Condition:
    """The registered condition ``name``; ``ConfigError`` listing the valid ones otherwise."""
    if name not in CONDITIONS:
        raise ConfigError(f"unknown condition {name!r}; valid conditions: {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


def register(condition: Condition) -> Condition:
    """Add a condition (after the built-in ones in prefix order). Everything that reads the registry picks
    it up: corpus column, vocabulary, pipeline argument, CLI flag, evaluation draw, card."""
    if condition.name in CONDITIONS:
        raise ConfigError(f"condition {condition.name!r} is already registered")
    if not condition.name.isidentifier():
        raise ConfigError(f"condition name {condition.name!r} must be a Python identifier (it is a pipeline argument)")
    CONDITIONS[condition.name] = condition
    return condition


def unregister(name: str) -> None:
    """Remove a registered (not built-in) condition."""
    if name in CONTROL_NAMES:
        raise ConfigError(f"condition {name!r} is built in and cannot be removed")
    CONDITIONS.pop(name, None)


@contextmanager
def registered(condition: Condition) -> Iterator[Condition]:
    """``register`` for the duration of a ``with`` block (tests, experiments)."""
    register(condition)
    try:
        yield condition
    finally:
        unregister(condition.name)


@dataclass
class ControlVocabulary:
    """Valid values of each condition with their training counts, and the combinations seen.

    ``values[name][value] = count`` in the training split. ``combinations`` counts the
    (key, meter, rhythm) triples seen, so a caller can warn on a combination never trained on.
    """

    values: dict[str, dict[str, int]] = field(default_factory=dict)
    combinations: dict[str, int] = field(default_factory=dict)
    min_count: int = DEFAULT_MIN_COUNT

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, object]], min_count: int = DEFAULT_MIN_COUNT) -> ControlVocabulary:
        """Count condition values over corpus rows (dicts with the corpus columns)."""
        counters: dict[str, Counter[str]] = {name: Counter() for name in condition_names()}
        combos: Counter[str] = Counter()
        for row in rows:
            labels = row_controls(row)
            for name, value in labels.items():
                counters[name][value] += 1
            combos["|".join(labels.get(n, "") for n in ("key", "meter", "rhythm"))] += 1
        values: dict[str, dict[str, int]] = {}
        for name, counter in counters.items():
            kept: dict[str, int] = {}
            other = 0
            for value, count in counter.most_common():
                if count >= min_count:
                    kept[value] = count
                else:
                    other += count
            if other:
                kept[OTHER] = kept.get(OTHER, 0) + other
            values[name] = kept
        return cls(values=values, combinations=dict(combos.most_common()), min_count=min_count)

    def normalise(self, name: str, value: str) -> str:
        """Map a value to the vocabulary (rare values -> ``other``); raise on an unknown condition. A value is
        first spelt as the corpus spells it (``slipjig`` -> ``slip jig``: ``corpus.labels.normalise_label``)."""
        if name not in self.values:
            raise ConfigError(f"unknown condition {name!r}; valid conditions: {', '.join(self.values)}")
        if value in self.values[name]:
            return value
        label = CONDITIONS[name].spell(value) if name in CONDITIONS else normalise_label(name, value)
        return label if label in self.values[name] else OTHER

    def tokens(self) -> list[str]:
        """Every control token, in a stable order (condition order, then by count)."""
        return [control_token(name, value) for name in condition_names() for value in self.values.get(name, {})]

    def prefix(self, labels: Mapping[str, str]) -> str:
        """The control prefix of a tune: its tokens in registry order, then a newline."""
        parts = [control_token(name, self.normalise(name, labels[name])) for name in condition_names()
                 if labels.get(name)]
        return "".join(parts) + "\n"

    def save(self, folder: str | Path) -> Path:
        """Write ``control_vocabulary.json`` into ``folder``; returns its path."""
        path = Path(folder) / FILENAME
        payload = {"min_count": self.min_count, "values": self.values, "combinations": self.combinations}
        return write_versioned(path, "control vocabulary", SCHEMA_VERSION, payload)

    @classmethod
    def load(cls, folder_or_file: str | Path) -> ControlVocabulary:
        """Read a vocabulary from a folder (corpus, tokenizer or model) or the file itself."""
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / FILENAME
        payload = read_versioned(path, "control vocabulary", SCHEMA_VERSION,
                                 fix="rebuild the corpus with `abcgen data build`")
        return cls(values=payload["values"], combinations=payload["combinations"], min_count=payload["min_count"])


def row_controls(row: Mapping[str, object]) -> dict[str, str]:
    """The condition labels of one corpus row (empty values are left out)."""
    labels: dict[str, str] = {}
    for condition in conditions():
        label = condition.label_of_row(row)
        if label:
            labels[condition.name] = label
    return labels
