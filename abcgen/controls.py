"""Conditions ("controls") a tune can be generated under, and the vocabulary of their values.

A control is a (name, value) pair such as ``("rhythm", "jig")``. Each becomes one added token
``<rhythm=jig>`` (spaces in values become ``_``). The corpus builder counts the values it sees and writes
``control_vocabulary.json``; the tokenizer turns every value into a token; the pipeline (later) checks
requested conditions against the same file. Values are normalised by the corpus labeller, never here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from abcgen.errors import ConfigError

SCHEMA_VERSION = 1
FILENAME = "control_vocabulary.json"

# The conditions, in the order their tokens appear in a prompt prefix.
CONTROL_NAMES: tuple[str, ...] = ("key", "meter", "unit_length", "rhythm", "origin", "composer", "form", "bars", "tempo")

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
        counters: dict[str, Counter[str]] = {name: Counter() for name in CONTROL_NAMES}
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
        """Map a value to the vocabulary (rare values -> ``other``); raise on an unknown condition."""
        if name not in self.values:
            raise ConfigError(f"unknown condition {name!r}; valid conditions: {', '.join(self.values)}")
        return value if value in self.values[name] else OTHER

    def tokens(self) -> list[str]:
        """Every control token, in a stable order (condition order, then by count)."""
        return [control_token(name, value) for name in CONTROL_NAMES for value in self.values.get(name, {})]

    def prefix(self, labels: Mapping[str, str]) -> str:
        """The control prefix of a tune: its tokens in ``CONTROL_NAMES`` order, then a newline."""
        parts = [control_token(name, self.normalise(name, labels[name])) for name in CONTROL_NAMES if labels.get(name)]
        return "".join(parts) + "\n"

    def save(self, folder: str | Path) -> Path:
        """Write ``control_vocabulary.json`` into ``folder``; returns its path."""
        path = Path(folder) / FILENAME
        payload = {"schema_version": SCHEMA_VERSION, "min_count": self.min_count, "values": self.values,
                   "combinations": self.combinations}
        path.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder_or_file: str | Path) -> ControlVocabulary:
        """Read a vocabulary from a folder (corpus, tokenizer or model) or the file itself."""
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / FILENAME
        payload = json.loads(path.read_text(encoding="utf-8"))
        version = payload.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"{path}: control vocabulary schema_version {version!r}, this abcgen reads {SCHEMA_VERSION}")
        return cls(values=payload["values"], combinations=payload["combinations"], min_count=payload["min_count"])


def row_controls(row: Mapping[str, object]) -> dict[str, str]:
    """The condition labels of one corpus row (empty values are left out)."""
    labels: dict[str, str] = {}
    for name in CONTROL_NAMES:
        if name == "bars":
            num_bars = int(row.get("num_bars") or 0)
            if num_bars:
                labels["bars"] = bars_bucket(num_bars)
            continue
        value = row.get(name)
        if value not in (None, ""):
            labels[name] = str(value)
    return labels
